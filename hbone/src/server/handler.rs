//! The caller's side of the server: which certificate to present, and what to do with each
//! validated CONNECT (authorize, resolve and connect the target).

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::ca::BoxFuture;
use crate::headers::Authority;
use crate::identity::Identity;
use crate::tls::WorkloadCertificate;

/// A validated inbound CONNECT.
#[derive(Debug, Clone)]
pub struct InboundRequest {
    /// TCP peer of the HBONE connection.
    pub peer_addr: SocketAddr,
    /// Local address that accepted it.
    pub local_addr: SocketAddr,
    /// The client's SPIFFE identity (first SPIFFE SAN of its verified certificate).
    pub peer_identity: Option<Identity>,
    /// Parsed `:authority`.
    pub authority: Authority,
    /// Request headers (`baggage`, `forwarded`, `traceparent`, …), unparsed.
    pub headers: HeaderMap,
}

/// Anything the server can splice a tunnel into.
pub trait Upstream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Upstream for T {}

/// The handler accepted the tunnel: `200` with these headers, then bytes flow to `upstream`.
pub struct Accepted {
    /// The connected target.
    pub upstream: Box<dyn Upstream>,
    /// Extra response headers (e.g. destination `baggage`).
    pub response_headers: HeaderMap,
}

/// The handler refused the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// `400`: e.g. a disallowed IP authority.
    BadRequest(String),
    /// `401`: authorization denied.
    Unauthorized(String),
    /// `503`: unknown local workload, no mapping, reserved port, or the app connect failed.
    Unavailable(String),
}

impl Rejected {
    /// The HTTP status sent (spec §2.3).
    pub fn status(&self) -> StatusCode {
        match self {
            Rejected::BadRequest(_) => StatusCode::BAD_REQUEST,
            Rejected::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejected::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Decides each CONNECT.
pub trait InboundHandler: Send + Sync + 'static {
    /// Authorize and connect `request`'s target.
    fn handle(&self, request: InboundRequest) -> BoxFuture<'_, Result<Accepted, Rejected>>;
}

/// Picks the certificate to present for a socket accepted on `local_addr` (in shared mode,
/// the destination pod's identity).
pub trait ServerCertificates: Send + Sync + 'static {
    /// `None` fails the connection closed.
    fn certificate(
        &self,
        local_addr: SocketAddr,
    ) -> BoxFuture<'_, Option<Arc<WorkloadCertificate>>>;
}

impl ServerCertificates for Arc<WorkloadCertificate> {
    fn certificate(
        &self,
        _local_addr: SocketAddr,
    ) -> BoxFuture<'_, Option<Arc<WorkloadCertificate>>> {
        let cert = self.clone();
        Box::pin(async move { Some(cert) })
    }
}
