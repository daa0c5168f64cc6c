//! Inbound HBONE (15008 inside the destination pod), per CONNECT stream (spec §3.2): find the
//! local workload, check the authority, map the target port, authorize (spec §5), connect to the
//! app spoofing the client's IP, and hand the connection to the HBONE server to splice.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hbone::ca::BoxFuture;
use hbone::headers::{Authority, names};
use hbone::server::{Accepted, InboundRequest, Rejected};
use http::{HeaderMap, HeaderValue};

use super::ProxyContext;
use super::labels::Peers;
use super::outbound::baggage_of;
use super::outbound::decide::RESERVED_PORTS;
use super::stream::{Observed, Side};
use crate::authz::{self, ConnectionInfo, Verdict};
use crate::inpod::manager::PodContext;
use crate::inpod::socket;
use crate::model::{GatewayAddress, GatewayDestination, Workload};
use crate::state::Snapshot;
use crate::telemetry::{
    ConnectionAddrs, ConnectionFailure, ConnectionRecorder, FailedConnection, Reporter,
    ResponseFlag, connection_failed,
};

/// The HBONE server's handler for one pod.
pub struct InboundHandler {
    ctx: Arc<ProxyContext>,
    pod: Arc<PodContext>,
}

impl InboundHandler {
    pub fn new(ctx: Arc<ProxyContext>, pod: Arc<PodContext>) -> Self {
        Self { ctx, pod }
    }
}

/// What a CONNECT resolves to before authorization.
#[derive(Debug)]
struct Target {
    workload: Arc<Workload>,
    service: Option<Arc<crate::model::Service>>,
    port: u16,
}

/// Whether `gw` resolves to `local` (the waypoint check of spec §3.2 step 2).
fn waypoint_is(snap: &Snapshot, gw: &GatewayAddress, local: &Workload) -> bool {
    match &gw.destination {
        GatewayDestination::Address(a) => local.workload_ips.contains(&a.address),
        GatewayDestination::Hostname(h) => snap.endpoints(h).iter().any(|w| w.uid == local.uid),
    }
}

/// Spec §3.2 steps 1–3: the local workload, the authority check and the target port.
fn resolve(
    snap: &Snapshot,
    network: &str,
    local_ip: IpAddr,
    authority: &Authority,
) -> Result<Target, Rejected> {
    let workload = snap
        .workload_by_ip(network, local_ip)
        .cloned()
        .ok_or_else(|| Rejected::Unavailable(format!("no local workload for {local_ip}")))?;
    let (service, port) = match authority {
        Authority::Addr(addr) => {
            if addr.ip() != local_ip && workload.application_tunnel.is_none() {
                let owner_waypoint = snap
                    .workload_by_ip(network, addr.ip())
                    .and_then(|w| w.waypoint.clone())
                    .or_else(|| {
                        snap.service_by_vip(network, addr.ip(), &workload.namespace)
                            .and_then(|s| s.waypoint.clone())
                    });
                if !owner_waypoint.is_some_and(|gw| waypoint_is(snap, &gw, &workload)) {
                    return Err(Rejected::BadRequest(format!(
                        "authority {addr} is not this workload ({local_ip})"
                    )));
                }
            }
            (None, addr.port())
        }
        Authority::Host { host, port } => {
            let svc = snap
                .service_by_hostname(host, &workload.namespace)
                .cloned()
                .ok_or_else(|| Rejected::Unavailable(format!("unknown service {host}")))?;
            let target = workload
                .target_port(&svc.key(), *port)
                .or_else(|| svc.ports.get(port).copied().filter(|p| *p != 0))
                .ok_or_else(|| {
                    Rejected::Unavailable(format!("no target port for {host}:{port}"))
                })?;
            (Some(svc), target)
        }
    };
    let port = match workload.application_tunnel.and_then(|t| t.port) {
        Some(p) if p != 0 => p,
        _ => port,
    };
    if RESERVED_PORTS.contains(&port) {
        return Err(Rejected::Unavailable(format!(
            "reserved target port {port}"
        )));
    }
    Ok(Target {
        workload,
        service,
        port,
    })
}

impl hbone::server::InboundHandler for InboundHandler {
    fn handle(&self, request: InboundRequest) -> BoxFuture<'_, Result<Accepted, Rejected>> {
        Box::pin(self.handle_request(request))
    }
}

impl InboundHandler {
    async fn handle_request(&self, request: InboundRequest) -> Result<Accepted, Rejected> {
        let ctx = &self.ctx;
        let snap = ctx.store.snapshot();
        let network = &ctx.config.network;
        let local_ip = request.local_addr.ip();
        let src_workload = snap
            .workload_by_ip(network, request.peer_addr.ip())
            .cloned();
        let addrs = |dst: SocketAddr| ConnectionAddrs {
            src: request.peer_addr,
            dst,
            dst_hbone: Some(request.local_addr),
        };
        let peers = |dst: Option<&Workload>, service: Option<&crate::model::Service>| {
            Peers {
                reporter: Reporter::Destination,
                src: src_workload.as_deref(),
                src_identity: request.peer_identity.as_ref(),
                dst,
                dst_identity: None,
                service,
                mtls: true,
            }
            .labels()
        };
        let target = match resolve(&snap, network, local_ip, &request.authority) {
            Ok(t) => t,
            Err(rejected) => {
                let labels = peers(None, None);
                connection_failed(
                    &ctx.metrics,
                    &FailedConnection {
                        labels,
                        addrs: addrs(request.local_addr),
                    },
                    &ConnectionFailure::new(Some(ResponseFlag::Connect), format!("{rejected:?}")),
                );
                return Err(rejected);
            }
        };
        let dst = SocketAddr::new(local_ip, target.port);
        let dst_identity = target.workload.identity().ok();
        let mut labels = peers(Some(&target.workload), target.service.as_deref());
        labels.destination_principal = dst_identity.as_ref().map(|i| i.to_uri()).into();
        let info = ConnectionInfo {
            src_ip: request.peer_addr.ip(),
            src_identity: request.peer_identity.clone(),
            dst_ip: local_ip,
            dst_port: target.port,
        };
        let policies = authz::applicable(snap.policies(), &target.workload);
        if let Verdict::Deny { policy } =
            authz::evaluate(policies.into_iter().map(|p| p.as_ref()), &info)
        {
            let why = format!(
                "denied by {}",
                policy.as_deref().unwrap_or("no matching ALLOW policy")
            );
            connection_failed(
                &ctx.metrics,
                &FailedConnection {
                    labels,
                    addrs: addrs(dst),
                },
                &ConnectionFailure::new(Some(ResponseFlag::Deny), why.clone()),
            );
            return Err(Rejected::Unauthorized(why));
        }
        let spoof = ctx
            .config
            .enable_orig_src
            .unwrap_or(true)
            .then_some(request.peer_addr);
        let app = match socket::connect(&self.pod.netns, dst, spoof, ctx.config.packet_mark).await {
            Ok(s) => s,
            Err(e) => {
                let why = format!("connecting to the app at {dst}: {e}");
                connection_failed(
                    &ctx.metrics,
                    &FailedConnection {
                        labels,
                        addrs: addrs(dst),
                    },
                    &ConnectionFailure::new(Some(ResponseFlag::Connect), why.clone()),
                );
                return Err(Rejected::Unavailable(why));
            }
        };
        let guard = ctx.tracker.track(&target.workload.uid, info);
        let recorder = Arc::new(ConnectionRecorder::new(
            ctx.metrics.clone(),
            labels,
            addrs(dst),
        ));
        let upstream = Observed::new(app, recorder, Side::Server, None).tracked(guard);
        let mut response_headers = HeaderMap::new();
        if ctx.config.enable_response_baggage
            && let Ok(v) = HeaderValue::try_from(baggage_of(&target.workload).to_header())
        {
            response_headers.insert(names::BAGGAGE, v);
        }
        Ok(Accepted {
            upstream: Box::new(upstream),
            response_headers,
        })
    }
}
