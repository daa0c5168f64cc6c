//! Inbound plaintext capture (15006 inside the pod, spec §3.3): original destination → L4
//! authorization with no source identity → connect to the app spoofing the client's IP → splice.
//! STRICT mTLS is a DENY policy istiod sends, not a special case here.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::ProxyContext;
use super::labels::Peers;
use super::outbound::decide::RESERVED_PORTS;
use super::stream::splice;
use crate::authz::{self, ConnectionInfo, Verdict};
use crate::inpod::manager::PodContext;
use crate::inpod::socket;
use crate::telemetry::{
    ConnectionAddrs, ConnectionFailure, FailedConnection, Reporter, ResponseFlag, connection_failed,
};

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
    if RESERVED_PORTS.contains(&dst.port()) {
        return tracing::info!(dst.addr = %dst, "plaintext connection to a reserved port refused");
    }
    let snap = ctx.store.snapshot();
    let network = &ctx.config.network;
    let src = snap.workload_by_ip(network, peer.ip()).cloned();
    let addrs = ConnectionAddrs {
        src: peer,
        dst,
        dst_hbone: None,
    };
    let Some(local) = snap.workload_by_ip(network, dst.ip()).cloned() else {
        let labels = Peers {
            reporter: Reporter::Destination,
            src: src.as_deref(),
            src_identity: None,
            dst: None,
            dst_identity: None,
            service: None,
            mtls: false,
        }
        .labels();
        connection_failed(
            &ctx.metrics,
            &FailedConnection { labels, addrs },
            &ConnectionFailure::new(
                Some(ResponseFlag::Connect),
                format!("no local workload for {dst}"),
            ),
        );
        return;
    };
    let mut labels = Peers {
        reporter: Reporter::Destination,
        src: src.as_deref(),
        src_identity: None,
        dst: Some(&local),
        dst_identity: None,
        service: None,
        mtls: false,
    }
    .labels();
    labels.destination_principal = local.identity().ok().map(|i| i.to_uri()).into();
    let info = ConnectionInfo {
        src_ip: peer.ip(),
        src_identity: None,
        dst_ip: dst.ip(),
        dst_port: dst.port(),
    };
    let policies = authz::applicable(snap.policies(), &local);
    if let Verdict::Deny { policy } =
        authz::evaluate(policies.into_iter().map(|p| p.as_ref()), &info)
    {
        let why = format!(
            "denied by {}",
            policy.as_deref().unwrap_or("no matching ALLOW policy")
        );
        connection_failed(
            &ctx.metrics,
            &FailedConnection { labels, addrs },
            &ConnectionFailure::new(Some(ResponseFlag::Deny), why),
        );
        return;
    }
    let spoof = ctx.config.enable_orig_src.unwrap_or(true).then_some(peer);
    let app = match socket::connect(&pod.netns, dst, spoof, ctx.config.packet_mark).await {
        Ok(s) => s,
        Err(e) => {
            connection_failed(
                &ctx.metrics,
                &FailedConnection { labels, addrs },
                &ConnectionFailure::new(
                    Some(ResponseFlag::Connect),
                    format!("connecting to {dst}: {e}"),
                ),
            );
            return;
        }
    };
    let guard = ctx.tracker.track(&local.uid, info);
    splice(&ctx, labels, addrs, client, app, Some(guard)).await;
}
