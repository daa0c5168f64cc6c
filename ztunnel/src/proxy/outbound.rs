//! Outbound capture (15001 inside the pod): original destination → [`decide::decide`] → HBONE
//! through the pool (dialled from the pod netns) or plain TCP from the pod netns → splice.

pub mod decide;

use std::net::SocketAddr;
use std::sync::Arc;

use hbone::client::{ConnectRequest, PoolKey};
use hbone::headers::{Authority, Baggage};
use tokio::net::TcpStream;

use super::ProxyContext;
use super::labels::Peers;
use super::stream::splice;
use crate::inpod::manager::PodContext;
use crate::inpod::socket;
use crate::model::Workload;
use crate::telemetry::{
    ConnectionAddrs, ConnectionFailure, FailedConnection, Reporter, ResponseFlag, connection_failed,
};
use decide::{Upstream, decide};

pub(crate) fn baggage_of(w: &Workload) -> Baggage {
    Baggage {
        cluster_id: w.cluster_id.clone(),
        namespace: w.namespace.clone(),
        workload_type: w.workload_type.clone(),
        workload_name: if w.workload_name.is_empty() {
            w.name.clone()
        } else {
            w.workload_name.clone()
        },
        service_name: w.canonical_name.clone(),
        service_version: w.canonical_revision.clone(),
        region: w.locality.region.clone(),
        zone: w.locality.zone.clone(),
    }
}

pub(crate) async fn handle(
    ctx: Arc<ProxyContext>,
    pod: Arc<PodContext>,
    client: TcpStream,
    peer: SocketAddr,
) {
    let dst = match socket::original_dst(&client) {
        Ok(d) => d,
        Err(e) => return tracing::warn!(error = %e, "no original destination; closing"),
    };
    let addrs = ConnectionAddrs {
        src: peer,
        dst,
        dst_hbone: None,
    };
    let fail = |labels, addrs, flag, msg: String| {
        connection_failed(
            &ctx.metrics,
            &FailedConnection { labels, addrs },
            &ConnectionFailure::new(flag, msg),
        );
    };
    let Some((snap, source)) = ctx.wait_for_workload(&pod.info).await else {
        let labels = Peers {
            reporter: Reporter::Source,
            src: None,
            src_identity: None,
            dst: None,
            dst_identity: None,
            service: None,
            mtls: false,
        }
        .labels();
        return fail(
            labels,
            addrs,
            None,
            format!(
                "unknown source workload {}/{}",
                pod.info.namespace, pod.info.name
            ),
        );
    };
    let src_identity = match ctx.pod_identity(&pod.info) {
        Ok(i) => i,
        Err(e) => return tracing::warn!(error = %e, "bad pod identity"),
    };
    let plan = decide(&snap, &source, dst, &ctx.config.network, &mut rand::rng());
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            let labels = Peers {
                reporter: Reporter::Source,
                src: Some(&source),
                src_identity: Some(&src_identity),
                dst: None,
                dst_identity: None,
                service: None,
                mtls: false,
            }
            .labels();
            return fail(labels, addrs, None, e.to_string());
        }
    };
    let dst_identity = plan.dst_workload.as_ref().and_then(|w| w.identity().ok());
    let mtls = matches!(plan.upstream, Upstream::Hbone { .. });
    let labels = Peers {
        reporter: Reporter::Source,
        src: Some(&source),
        src_identity: Some(&src_identity),
        dst: plan.dst_workload.as_deref(),
        dst_identity: if mtls { dst_identity.as_ref() } else { None },
        service: plan.service.as_deref(),
        mtls,
    }
    .labels();
    match plan.upstream {
        Upstream::Hbone {
            hbone_addr,
            authority,
            identities,
        } => {
            let addrs = ConnectionAddrs {
                dst_hbone: Some(hbone_addr),
                ..addrs
            };
            let key = PoolKey::new(src_identity, identities, Some(peer.ip()), hbone_addr);
            let request = ConnectRequest {
                authority: Authority::Addr(authority),
                baggage: Some(baggage_of(&source)),
                forwarded: Some((peer, plan.service.as_ref().map(|s| s.hostname.clone()))),
                extra_headers: http::HeaderMap::new(),
            };
            let upstream = match ctx.pool.connect(&key, &request).await {
                Ok(s) => s,
                Err(e) => {
                    let flag = flag_of(e.response_flag());
                    return fail(labels, addrs, flag, e.to_string());
                }
            };
            splice(&ctx, labels, addrs, client, upstream, None).await;
        }
        Upstream::Tcp { addr } => {
            let upstream =
                match socket::connect(&pod.netns, addr, None, ctx.config.packet_mark).await {
                    Ok(s) => s,
                    Err(e) => {
                        return fail(
                            labels,
                            addrs,
                            Some(ResponseFlag::Connect),
                            format!("connecting {addr}: {e}"),
                        );
                    }
                };
            splice(&ctx, labels, addrs, client, upstream, None).await;
        }
    }
}

/// `response_flags` value of an HBONE client failure.
fn flag_of(flag: &str) -> Option<ResponseFlag> {
    Some(match flag {
        "NETWORK_POLICY" => ResponseFlag::NetworkPolicy,
        "TLS_FAILURE" => ResponseFlag::TlsFailure,
        "H2_HANDSHAKE_FAILURE" => ResponseFlag::H2HandshakeFailure,
        "IDENTITY_ERROR" => ResponseFlag::IdentityError,
        "DENY" => ResponseFlag::Deny,
        _ => ResponseFlag::Connect,
    })
}
