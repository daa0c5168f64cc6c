//! Outbound capture (15001 inside the pod): original destination → [`decide::decide`] → HBONE
//! through the pool (dialled from the pod netns) or plain TCP from the pod netns → splice.

pub mod decide;

use std::net::SocketAddr;
use std::sync::Arc;

use hbone::client::{ConnectRequest, PoolKey};
use hbone::headers::{Authority, Baggage};
use hbone::stream::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::labels::Peers;
use super::stream::{Observed, Side};
use super::{ProxyContext, draining};
use crate::inpod::manager::PodContext;
use crate::inpod::socket;
use crate::model::Workload;
use crate::telemetry::{
    ConnectionAddrs, ConnectionFailure, ConnectionRecorder, FailedConnection, Reporter,
    ResponseFlag, connection_failed,
};
use decide::{Upstream, decide};

/// Accepts until the pod drains or the tunnel shuts down; then open connections get the
/// termination deadline.
pub async fn run(
    ctx: Arc<ProxyContext>,
    pod: Arc<PodContext>,
    listener: TcpListener,
    mut drain: watch::Receiver<bool>,
) {
    let mut global = ctx.shutdown.clone();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let span = tracing::debug_span!("outbound", src.addr = %peer, pod = %pod.info.name);
                    conns.spawn(handle(ctx.clone(), pod.clone(), stream, peer).instrument(span));
                }
                Err(e) => tracing::warn!(error = %e, "outbound accept failed"),
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = draining(&mut drain, &mut global) => break,
        }
    }
    drop(listener);
    let deadline = ctx.config.termination_deadline;
    if tokio::time::timeout(deadline, async {
        while conns.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::info!(pod = %pod.info.name, open = conns.len(), "termination deadline: closing outbound connections");
        conns.abort_all();
    }
}

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

async fn handle(ctx: Arc<ProxyContext>, pod: Arc<PodContext>, client: TcpStream, peer: SocketAddr) {
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
            splice(&ctx, labels, addrs, client, upstream).await;
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
            splice(&ctx, labels, addrs, client, upstream).await;
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

async fn splice<U>(
    ctx: &ProxyContext,
    labels: crate::telemetry::CommonTrafficLabels,
    addrs: ConnectionAddrs,
    client: TcpStream,
    upstream: U,
) where
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let recorder = Arc::new(ConnectionRecorder::new(ctx.metrics.clone(), labels, addrs));
    let mut client = Observed::new(client, recorder.clone(), Side::Client, None);
    let mut upstream = Observed::new(upstream, recorder.clone(), Side::Server, None);
    let result = copy_bidirectional(&mut client, &mut upstream).await;
    drop((client, upstream));
    if let Ok(recorder) = Arc::try_unwrap(recorder) {
        match result {
            Ok(_) => recorder.finish::<ConnectionFailure>(Ok(())),
            Err(e) => recorder.finish(Err(&ConnectionFailure::new(None, e.to_string()))),
        }
    }
}
