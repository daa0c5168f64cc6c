//! The Prometheus server (default `0.0.0.0:15020`): `GET /metrics` and `GET /stats/prometheus`.
//!
//! Owns: those routes and choosing the format from `Accept`. Does not own: the encoding itself
//! (see [`crate::telemetry::exposition`]).

use std::net::SocketAddr;
use std::sync::Arc;

use http::request::Parts;
use http::{Method, Response, StatusCode, header};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::AdminError;
use super::http::{Body, Listener, not_found, require_method, respond, text};
use crate::telemetry::exposition::Format;

/// The metrics listener.
#[derive(Debug)]
pub struct StatsServer {
    listener: Listener,
    registry: Arc<Registry>,
}

impl StatsServer {
    /// Binds `addr` (use [`super::DEFAULT_STATS_ADDR`] for the standard port). `registry` is the root registry
    /// [`crate::telemetry::Metrics::new`] registered into.
    pub async fn bind(addr: SocketAddr, registry: Arc<Registry>) -> Result<Self, AdminError> {
        Ok(Self {
            listener: Listener::bind("stats", addr).await?,
            registry,
        })
    }

    /// The bound address (useful when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let registry = self.registry;
        self.listener
            .serve(move |parts| route(&registry, parts), shutdown)
            .await;
    }
}

fn route(registry: &Registry, parts: &Parts) -> Response<Body> {
    if !matches!(parts.uri.path(), "/metrics" | "/stats/prometheus") {
        return not_found(parts);
    }
    if let Some(refused) = require_method(parts, Method::GET) {
        return refused;
    }
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    match format.encode(registry) {
        Ok(body) => respond(StatusCode::OK, format.content_type(), body),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n")
        }
    }
}
