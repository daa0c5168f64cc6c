//! The per-pod proxies: outbound capture (15001), inbound HBONE (15008) and inbound plaintext
//! (15006), all listening inside the pod's netns (spec §1, §3).
//!
//! Owns [`ProxyContext`] (what every proxy shares) and [`InPodProxies`], which binds a pod's
//! three listeners and runs them until the pod is drained. Decisions are pure functions in
//! submodules (`outbound::decide`, [`crate::authz`]); the files here move bytes.

pub mod dialer;
pub mod inbound;
pub mod inbound_plaintext;
pub mod labels;
pub mod outbound;
pub mod stream;
pub mod tracker;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hbone::Identity;
use hbone::cert_manager::CertManager;
use hbone::client::Pool;
use hbone::server::{Server, ServerConfig};
use tokio::sync::watch;

use crate::config::Config;
use crate::inpod::manager::{PodContext, PodProxies, RunningPod};
use crate::inpod::socket::{self, PodSocketOptions};
use crate::model::Workload;
use crate::state::{Snapshot, Store};
use crate::telemetry::Metrics;
use dialer::PodNetnsRegistry;
use tracker::ConnectionTracker;

pub const OUTBOUND_PORT: u16 = 15001;
pub const INBOUND_PLAINTEXT_PORT: u16 = 15006;
pub const INBOUND_HBONE_PORT: u16 = 15008;

/// Everything the proxies share.
pub struct ProxyContext {
    pub config: Arc<Config>,
    pub store: Store,
    pub pool: Pool,
    pub certs: CertManager,
    pub metrics: Arc<Metrics>,
    pub tracker: ConnectionTracker,
    pub netns: PodNetnsRegistry,
    /// Global shutdown: listeners stop, connections get the termination deadline.
    pub shutdown: watch::Receiver<bool>,
}

impl ProxyContext {
    /// The workload a ZDS `WorkloadInfo` names, waiting up to 5 s for xDS to deliver it
    /// (spec §3.1 step 2).
    pub async fn wait_for_workload(
        &self,
        info: &proto::istio::workload::zds::WorkloadInfo,
    ) -> Option<(Arc<Snapshot>, Arc<Workload>)> {
        let mut updates = self.store.subscribe();
        let find = |snap: &Arc<Snapshot>| {
            snap.workload_by_info(&info.name, &info.namespace, &info.service_account)
                .cloned()
        };
        let wait = async {
            loop {
                let snap = updates.borrow_and_update().clone();
                if let Some(w) = find(&snap) {
                    return Some((snap, w));
                }
                if updates.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .ok()
            .flatten()
    }

    /// The identity a pod runs as.
    pub fn pod_identity(
        &self,
        info: &proto::istio::workload::zds::WorkloadInfo,
    ) -> Result<Identity, hbone::IdentityError> {
        Identity::new(
            &self.config.trust_domain,
            &info.namespace,
            &info.service_account,
        )
    }

    fn socket_options(&self) -> PodSocketOptions {
        PodSocketOptions {
            mark: self.config.packet_mark,
            reuse_port: self.config.inpod_port_reuse,
        }
    }
}

/// One pod's running proxies and the IPs it registered for dialling.
pub struct InPodProxies {
    ctx: Arc<ProxyContext>,
    registered: std::sync::Mutex<std::collections::HashMap<String, Vec<IpAddr>>>,
}

impl InPodProxies {
    pub fn new(ctx: Arc<ProxyContext>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            registered: Default::default(),
        })
    }

    /// The pod's IPs, read inside its netns (the authoritative source, independent of xDS).
    fn pod_ips(pod: &PodContext) -> Vec<IpAddr> {
        pod.netns
            .run(|| {
                let addrs = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)?;
                Ok(addrs
                    .filter(|a| a.interface_name != "lo")
                    .filter_map(|a| {
                        let s = a.address?;
                        s.as_sockaddr_in()
                            .map(|v4| IpAddr::V4(v4.ip()))
                            .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                    })
                    .filter(|ip| !ip.is_loopback() && !is_link_local(ip))
                    .collect())
            })
            .unwrap_or_default()
    }
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

impl PodProxies for InPodProxies {
    fn start(&self, pod: &PodContext) -> Result<RunningPod, String> {
        let ctx = &self.ctx;
        let identity = ctx
            .pod_identity(&pod.info)
            .map_err(|e| format!("pod identity: {e}"))?;
        let opts = ctx.socket_options();
        let any = |port| SocketAddr::from(([0, 0, 0, 0], port));
        let bind = |port| {
            socket::listen(&pod.netns, any(port), opts)
                .map_err(|e| format!("binding {port} in the pod netns: {e}"))
        };
        let outbound = bind(OUTBOUND_PORT)?;
        let plaintext = bind(INBOUND_PLAINTEXT_PORT)?;
        let hbone = bind(INBOUND_HBONE_PORT)?;
        let ips = Self::pod_ips(pod);
        for ip in &ips {
            ctx.netns.insert(*ip, pod.netns.clone());
        }
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pod.uid.clone(), ips.clone());
        ctx.certs.prefetch(&identity);
        let (drain_tx, drain_rx) = watch::channel(false);
        let pod = Arc::new(pod.clone());
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(accept_loop(
            ctx.clone(),
            pod.clone(),
            outbound,
            drain_rx.clone(),
            "outbound",
            outbound::handle,
        )));
        tasks.push(tokio::spawn(accept_loop(
            ctx.clone(),
            pod.clone(),
            plaintext,
            drain_rx.clone(),
            "inbound",
            inbound_plaintext::handle,
        )));
        let server_config = ServerConfig {
            drain_deadline: ctx.config.termination_deadline,
            ..ServerConfig::default()
        };
        let server = Server::from_listener(
            hbone,
            server_config,
            Arc::new(ctx.certs.server_certificates(identity)),
            Arc::new(inbound::InboundHandler::new(ctx.clone(), pod.clone())),
        );
        tasks.push(tokio::spawn(server.run(drain_rx)));
        tracing::debug!(uid = pod.uid, ips = ?ips, "pod listeners bound");
        Ok(RunningPod::new(drain_tx, tasks))
    }

    fn stopped(&self, pod: &PodContext) {
        let ips = self
            .registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pod.uid)
            .unwrap_or_default();
        for ip in ips {
            self.ctx.netns.remove(ip, &pod.netns);
        }
    }
}

/// Resolves when either the pod drains or the tunnel shuts down.
async fn draining(pod: &mut watch::Receiver<bool>, global: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = pod.wait_for(|d| *d) => {}
        _ = global.wait_for(|d| *d) => {}
    }
}

/// Accepts on one of a pod's plain-TCP listeners (15001, 15006) until the pod drains or the
/// tunnel shuts down, running `handle` per connection; open connections then get the
/// termination deadline and are cut after it.
pub(crate) async fn accept_loop<F, Fut>(
    ctx: Arc<ProxyContext>,
    pod: Arc<PodContext>,
    listener: tokio::net::TcpListener,
    mut drain: watch::Receiver<bool>,
    direction: &'static str,
    handle: F,
) where
    F: Fn(Arc<ProxyContext>, Arc<PodContext>, tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tracing::Instrument;
    let mut global = ctx.shutdown.clone();
    let mut conns = tokio::task::JoinSet::new();
    let mut backoff = hbone::accept::AcceptBackoff::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff.succeeded();
                    // Relayed bytes arrive in pieces (HTTP/2 DATA frames): without this, Nagle holds
                    // each piece after the first until the app's delayed ACK, 40 ms a response.
                    let _ = stream.set_nodelay(true);
                    let span = tracing::debug_span!("conn", direction, src.addr = %peer, pod = %pod.info.name);
                    conns.spawn(handle(ctx.clone(), pod.clone(), stream, peer).instrument(span));
                }
                Err(e) => backoff.after_failure(direction, &e).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = draining(&mut drain, &mut global) => break,
        }
    }
    drop(listener);
    let all_done = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(ctx.config.termination_deadline, all_done)
        .await
        .is_err()
    {
        tracing::info!(direction, pod = %pod.info.name, open = conns.len(), "termination deadline: closing connections");
        conns.abort_all();
    }
}
