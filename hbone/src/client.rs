//! The HBONE client: pooled mTLS + HTTP/2 connections, one CONNECT stream per tunnel.
//!
//! Pool key (spec §2.4): source identity, expected destination identities, source IP,
//! destination address; a connection is never shared across keys. Each connection carries at
//! most `min(max_streams_per_connection, peer MAX_CONCURRENT_STREAMS)` streams; when all are
//! full a new one is dialled, one dial per key at a time. Idle connections are released.
//! Does not decide which identities a hop expects or where to dial: callers pass a [`PoolKey`].

mod connect;
mod pool;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

pub use connect::{ConnectRequest, Dialer, TcpDialer};
pub use pool::Pool;

use crate::ca::BoxFuture;
use crate::h2_settings::H2Settings;
use crate::identity::Identity;
use crate::tls::{KeyExchange, WorkloadCertificate};

/// What a pooled connection is for. Identities are sorted so equal lists compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    src_identity: Identity,
    dst_identities: Vec<Identity>,
    src_ip: Option<IpAddr>,
    dst: SocketAddr,
}

impl PoolKey {
    /// Builds a key; `dst_identities` is the hop's expected server identity list.
    pub fn new(
        src_identity: Identity,
        mut dst_identities: Vec<Identity>,
        src_ip: Option<IpAddr>,
        dst: SocketAddr,
    ) -> Self {
        dst_identities.sort();
        dst_identities.dedup();
        Self {
            src_identity,
            dst_identities,
            src_ip,
            dst,
        }
    }
    /// Our identity on this hop.
    pub fn src_identity(&self) -> &Identity {
        &self.src_identity
    }
    /// Identities the server may present.
    pub fn dst_identities(&self) -> &[Identity] {
        &self.dst_identities
    }
    /// Local address to dial from, if pinned.
    pub fn src_ip(&self) -> Option<IpAddr> {
        self.src_ip
    }
    /// `ip:15008` of the peer.
    pub fn dst(&self) -> SocketAddr {
        self.dst
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `POOL_MAX_STREAMS_PER_CONNECTION` (100).
    pub max_streams_per_connection: usize,
    /// `POOL_UNUSED_RELEASE_TIMEOUT` (5 min).
    pub idle_timeout: Duration,
    /// TCP connect budget (10 s; a timeout is flagged `NETWORK_POLICY`).
    pub connect_timeout: Duration,
    /// TLS + H2 handshake budget.
    pub handshake_timeout: Duration,
    /// Windows, frame size, header list, PING.
    pub h2: H2Settings,
    /// Key-exchange policy.
    pub key_exchange: KeyExchange,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            max_streams_per_connection: 100,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            h2: H2Settings::client(),
            key_exchange: KeyExchange::Default,
        }
    }
}

/// Supplies our certificate for an identity (normally the certificate manager, which fetches
/// at "blocking a live connection" priority). `None` = fail closed.
pub trait ClientCertificates: Send + Sync + 'static {
    /// Current valid certificate for `identity`.
    fn certificate<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> BoxFuture<'a, Option<Arc<WorkloadCertificate>>>;
}

impl ClientCertificates for Arc<WorkloadCertificate> {
    fn certificate<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> BoxFuture<'a, Option<Arc<WorkloadCertificate>>> {
        let cert = (self.identity() == identity).then(|| self.clone());
        Box::pin(async move { cert })
    }
}

/// Client-side failures, each mapping to an access-log `response_flags` value (spec §2.7).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {dst} timed out")]
    ConnectTimeout { dst: SocketAddr },
    #[error("connecting to {dst}: {source}")]
    Connect {
        dst: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no certificate for {identity}")]
    NoCertificate { identity: Identity },
    #[error("TLS with {dst}: {reason}")]
    Tls { dst: SocketAddr, reason: String },
    #[error("HTTP/2 handshake with {dst}: {reason}")]
    H2Handshake { dst: SocketAddr, reason: String },
    #[error("CONNECT {authority} via {dst}: {source}")]
    Stream {
        dst: SocketAddr,
        authority: String,
        #[source]
        source: h2::Error,
    },
    #[error("CONNECT {authority} via {dst} answered {status}")]
    Status {
        dst: SocketAddr,
        authority: String,
        status: StatusCode,
        headers: Box<HeaderMap>,
    },
    #[error("no usable connection to {dst} after {attempts} attempts")]
    Exhausted { dst: SocketAddr, attempts: usize },
}

impl ClientError {
    /// The `response_flags` label for this failure.
    pub fn response_flag(&self) -> &'static str {
        match self {
            ClientError::ConnectTimeout { .. } => "NETWORK_POLICY",
            ClientError::Connect { .. } | ClientError::Exhausted { .. } => "CONNECT",
            ClientError::NoCertificate { .. } => "IDENTITY_ERROR",
            ClientError::Tls { .. } => "TLS_FAILURE",
            ClientError::H2Handshake { .. } => "H2_HANDSHAKE_FAILURE",
            ClientError::Status { status, .. } if *status == StatusCode::UNAUTHORIZED => "DENY",
            ClientError::Stream { .. } | ClientError::Status { .. } => "CONNECT",
        }
    }
}
