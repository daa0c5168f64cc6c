//! One downstream connection, whatever carried it (an HBONE stream or a plain socket): find the
//! listener for the destination port, then serve HTTP/1.1 or HTTP/2 (sniffed) through the
//! pipeline, or proxy opaque bytes to the cluster the listener (or the catch-all route) names.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::watch;

use crate::io::{Rewind, Sniffed, sniff};
use crate::model::action::AttemptOutcome;
use crate::model::{ListenerKind, PathMatch, RouteAction, select};
use crate::pipeline::{self, Downstream, Proxy};
use crate::runtime::Resource;
use crate::state::State;
use crate::telemetry::TrafficLabels;
use crate::upstream::{Io, Target};

/// Budget for a request head (HTTP/1.1).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 PING interval and the time to answer it.
const KEEPALIVE: Duration = Duration::from_secs(20);
/// Concurrent HTTP/2 streams per downstream connection.
const MAX_STREAMS: u32 = 1000;
/// How long a draining HTTP connection may finish its requests.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for a client's first bytes before treating the connection as opaque TCP
/// (a server-first protocol on an HTTP port).
const SNIFF_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `io` until it ends (or `shutdown` drains it). A destination that is an endpoint
/// address (not a Service) is proxied straight to that endpoint.
pub async fn serve(
    proxy: Arc<Proxy>,
    down: Arc<Downstream>,
    io: impl Io,
    mut shutdown: watch::Receiver<bool>,
) {
    let io: Box<dyn Io> = Box::new(io);
    let state = proxy.store.current();
    if let Some(cluster) = state.endpoints.get(&down.destination) {
        // Workload-addressed traffic (a workload waypoint, spec §3.1 step 7): no Service routes
        // apply; the bytes go to that endpoint, carried under the waypoint's identity. L7
        // policies cannot be applied to opaque bytes, so with any in force this fails closed.
        if has_rbac(&state) {
            tracing::warn!(destination = %down.destination, "workload-addressed traffic refused: L7 policies apply to this waypoint");
            return;
        }
        let cluster = cluster.clone();
        return tcp_proxy(
            proxy,
            down.clone(),
            io,
            &cluster,
            Some(down.destination),
            &mut shutdown,
        )
        .await;
    }
    let Some(listener) = state.by_port.get(&down.destination.port()).cloned() else {
        tracing::warn!(destination = %down.destination, "no listener for this port; closing");
        return;
    };
    let cluster = match &listener.kind {
        ListenerKind::Tcp { cluster, .. } => cluster.clone(),
        ListenerKind::Http { .. } => {
            let (sniffed, io) = match sniff(io, SNIFF_TIMEOUT).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "connection ended before any byte");
                    return;
                }
            };
            match sniffed {
                Sniffed::Http1 | Sniffed::Http2 => {
                    return serve_http(proxy, down, io, shutdown).await;
                }
                Sniffed::Closed => return,
                Sniffed::Opaque => {}
            }
            // Opaque bytes would bypass the L7 policies of this port: fail closed.
            if matches!(&listener.kind, ListenerKind::Http { filters, .. } if !filters.is_empty()) {
                tracing::warn!(destination = %down.destination, "non-HTTP bytes on a port with L7 policies; closing");
                return;
            }
            match catch_all_cluster(&state, &down) {
                Some(c) => return tcp_proxy(proxy, down, io, &c, None, &mut shutdown).await,
                None => {
                    tracing::warn!(destination = %down.destination, "opaque bytes and no catch-all route; closing");
                    return;
                }
            }
        }
    };
    tcp_proxy(proxy, down, io, &cluster, None, &mut shutdown).await;
}

async fn serve_http(
    proxy: Arc<Proxy>,
    down: Arc<Downstream>,
    io: Rewind<Box<dyn Io>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service =
        hyper::service::service_fn(move |req| pipeline::handle(proxy.clone(), down.clone(), req));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Slow clients cannot hold a connection open forever: request heads must arrive within
    // HEADER_TIMEOUT; idle HTTP/2 peers are pinged and dropped when they stop answering.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .keep_alive_interval(Some(KEEPALIVE))
        .keep_alive_timeout(KEEPALIVE);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "downstream HTTP connection ended");
            }
        }
        () = crate::io::stopped(&mut shutdown) => {
            // In-flight requests get DRAIN_GRACE; the HBONE server's GOAWAY stops new tunnels.
            let _ = tokio::time::timeout(DRAIN_GRACE, conn).await;
        }
    }
}

/// Whether any listener carries RBAC filters.
fn has_rbac(state: &State) -> bool {
    state
        .by_port
        .values()
        .any(|l| matches!(&l.kind, ListenerKind::Http { filters, .. } if !filters.is_empty()))
}

/// The first cluster of the destination's catch-all route (`prefix: /`), for opaque bytes on
/// an HTTP port.
fn catch_all_cluster(state: &State, down: &Downstream) -> Option<String> {
    let listener = state.by_port.get(&down.destination.port())?;
    let ListenerKind::Http { route_config, .. } = &listener.kind else {
        return None;
    };
    let table = state.config.routes.get(route_config)?;
    let vh = select::virtual_host(table, Some(down.destination), "")?;
    vh.routes
        .iter()
        .rev()
        .find_map(|r| match (&r.matcher.path, &r.action) {
            (PathMatch::Any, RouteAction::Forward(f)) if r.matcher.headers.is_empty() => {
                f.clusters.first().map(|c| c.name.clone())
            }
            _ => None,
        })
}

/// Opaque TCP to one endpoint of `cluster` (the balancer's pick, or the endpoint at `direct`),
/// with Istio's TCP metrics.
async fn tcp_proxy(
    proxy: Arc<Proxy>,
    down: Arc<Downstream>,
    io: impl Io,
    cluster: &str,
    direct: Option<std::net::SocketAddr>,
    shutdown: &mut watch::Receiver<bool>,
) {
    let state = proxy.store.current();
    let Some(cs) = state.clusters.get(cluster).cloned() else {
        tracing::warn!(cluster, "TCP route to an unknown cluster; closing");
        return;
    };
    let picked = match direct {
        Some(addr) => cs.endpoints.iter().position(|e| e.address == addr),
        None => cs.pick(None, &[]),
    };
    let Some(i) = picked else {
        tracing::warn!(cluster, "no healthy upstream for TCP; closing");
        return;
    };
    let ep = cs.endpoints[i].clone();
    let _active = cs.start(i);
    let mut labels = TrafficLabels::default();
    down.source_labels(&mut labels);
    if let Some(id) = &ep.identity {
        labels.destination_principal = id.to_string();
    }
    if let Some(host) = cluster.split('|').nth(3) {
        host.clone_into(&mut labels.destination_service);
    }
    labels.request_protocol = "tcp".into();
    let limit = cs.cluster.circuit_breakers.max_connections;
    let Some(_connection) = cs.runtime.try_acquire(Resource::Connections, limit) else {
        labels.response_flags = "UO".into();
        let labels = labels.finish();
        proxy.metrics.tcp_opened.get_or_create(&labels).inc();
        proxy.metrics.tcp_closed.get_or_create(&labels).inc();
        tracing::warn!(
            cluster,
            limit,
            "TCP upstream: max connections reached; closing"
        );
        return;
    };
    let target = Target {
        endpoint: &ep,
        http2: false,
        cluster: &cs,
        client: down.remote,
    };
    let up = match proxy.upstream.dial(target).await {
        Ok(up) => up,
        Err(e) => {
            if let Some(o) = &cs.cluster.outlier {
                cs.runtime.record(
                    o,
                    &cs.endpoints,
                    i,
                    &AttemptOutcome::ConnectFailure,
                    cluster,
                );
            }
            labels.response_flags = e.response_flag().into();
            let labels = labels.finish();
            proxy.metrics.tcp_opened.get_or_create(&labels).inc();
            proxy.metrics.tcp_closed.get_or_create(&labels).inc();
            tracing::warn!(cluster, error = %e, "TCP upstream failed");
            return;
        }
    };
    if let Some(o) = &cs.cluster.outlier {
        // A connect success resets the host's consecutive failures (Envoy's tcp_proxy reports it).
        cs.runtime
            .record(o, &cs.endpoints, i, &AttemptOutcome::Status(200), cluster);
    }
    let labels = labels.finish();
    proxy.metrics.tcp_opened.get_or_create(&labels).inc();
    let (mut a, mut b) = (io, up);
    let copied = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut a, &mut b) => r.ok(),
        () = crate::io::stopped(shutdown) => None,
    };
    if let Some((from_client, to_client)) = copied {
        proxy
            .metrics
            .tcp_received
            .get_or_create(&labels)
            .inc_by(from_client);
        proxy
            .metrics
            .tcp_sent
            .get_or_create(&labels)
            .inc_by(to_client);
    }
    proxy.metrics.tcp_closed.get_or_create(&labels).inc();
}
