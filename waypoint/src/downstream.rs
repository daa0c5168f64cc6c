//! One downstream connection, whatever carried it (an HBONE stream or a plain socket): find the
//! listener for the destination port, then serve HTTP/1.1 or HTTP/2 (sniffed) through the
//! pipeline, or proxy opaque bytes to the cluster the listener (or the catch-all route) names.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::watch;

use crate::io::{Rewind, Sniffed, sniff};
use crate::model::{ListenerKind, PathMatch, RouteAction, select};
use crate::pipeline::{self, Downstream, Proxy};
use crate::state::State;
use crate::telemetry::TrafficLabels;
use crate::upstream::{Io, Target};

/// How long a draining HTTP connection may finish its requests.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for a client's first bytes before treating the connection as opaque TCP
/// (a server-first protocol on an HTTP port).
const SNIFF_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `io` until it ends (or `shutdown` drains it).
pub async fn serve(
    proxy: Arc<Proxy>,
    down: Arc<Downstream>,
    io: impl Io,
    mut shutdown: watch::Receiver<bool>,
) {
    let io: Box<dyn Io> = Box::new(io);
    let state = proxy.store.current();
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
            if sniffed != Sniffed::Opaque {
                return serve_http(proxy, down, io, shutdown).await;
            }
            match catch_all_cluster(&state, &down) {
                Some(c) => return tcp_proxy(proxy, down, io, &c, &mut shutdown).await,
                None => {
                    tracing::warn!(destination = %down.destination, "opaque bytes and no catch-all route; closing");
                    return;
                }
            }
        }
    };
    tcp_proxy(proxy, down, io, &cluster, &mut shutdown).await;
}

async fn serve_http(
    proxy: Arc<Proxy>,
    down: Arc<Downstream>,
    io: Rewind<Box<dyn Io>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service =
        hyper::service::service_fn(move |req| pipeline::handle(proxy.clone(), down.clone(), req));
    let builder = auto::Builder::new(TokioExecutor::new());
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

/// Opaque TCP to one endpoint of `cluster`, with Istio's TCP metrics.
async fn tcp_proxy(
    proxy: Arc<Proxy>,
    down: Arc<Downstream>,
    io: impl Io,
    cluster: &str,
    shutdown: &mut watch::Receiver<bool>,
) {
    let state = proxy.store.current();
    let Some(cs) = state.clusters.get(cluster).cloned() else {
        tracing::warn!(cluster, "TCP route to an unknown cluster; closing");
        return;
    };
    let Some(i) = cs.pick(None, &[]) else {
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
    let target = Target {
        endpoint: &ep,
        http2: false,
        connect_timeout: cs.cluster.connect_timeout,
        client: down.remote,
    };
    let up = match proxy.upstream.dial(target).await {
        Ok(up) => up,
        Err(e) => {
            labels.response_flags = e.response_flag().into();
            let labels = labels.finish();
            proxy.metrics.tcp_opened.get_or_create(&labels).inc();
            proxy.metrics.tcp_closed.get_or_create(&labels).inc();
            tracing::warn!(cluster, error = %e, "TCP upstream failed");
            return;
        }
    };
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
