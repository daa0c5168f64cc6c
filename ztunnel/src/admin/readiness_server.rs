//! The readiness server (default `0.0.0.0:15021`): `GET /healthz/ready` → 200 `ready`, or 500 with the pending
//! items.
//!
//! Owns: that one route. Does not own: what is pending (see [`super::Readiness`]).

use std::net::SocketAddr;

use http::request::Parts;
use http::{Method, Response, StatusCode};
use tokio::sync::watch;

use super::AdminError;
use super::http::{Body, Listener, not_found, require_method, text};
use super::readiness::Readiness;

/// The readiness listener.
#[derive(Debug)]
pub struct ReadinessServer {
    listener: Listener,
    readiness: Readiness,
}

impl ReadinessServer {
    /// Binds `addr` (use [`super::DEFAULT_READINESS_ADDR`] for the standard port).
    pub async fn bind(addr: SocketAddr, readiness: Readiness) -> Result<Self, AdminError> {
        Ok(Self {
            listener: Listener::bind("readiness", addr).await?,
            readiness,
        })
    }

    /// The bound address (useful when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let readiness = self.readiness;
        self.listener
            .serve(move |parts| route(&readiness, parts), shutdown)
            .await;
    }
}

fn route(readiness: &Readiness, parts: &Parts) -> Response<Body> {
    if parts.uri.path() != "/healthz/ready" {
        return not_found(parts);
    }
    if let Some(refused) = require_method(parts, Method::GET) {
        return refused;
    }
    let pending = readiness.pending();
    if pending.is_empty() {
        text(StatusCode::OK, "ready\n")
    } else {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("not ready, pending: {}\n", pending.join(", ")),
        )
    }
}
