//! The tunnel's local HTTP endpoints (spec §10): admin on 15000 (index, `/config_dump`, `/logging`,
//! `/quitquitquit`), Prometheus metrics on 15020 and readiness on 15021, plus the [`Readiness`] tracker.
//!
//! Each server binds in `bind` (so a taken port fails start-up) and serves in `run` until its shutdown `watch`
//! turns true, then drains for a few seconds.
//! Owns: routing, status codes and content types of these endpoints.
//! Does not own: the config dump's content ([`ConfigDumpSource`] is implemented by the state owner), metric names
//! and encoding ([`crate::telemetry::metrics`], [`crate::telemetry::exposition`]), the semantics of level changes
//! ([`crate::telemetry::logging`]) or what shutdown does (the caller owns the `quit` sender's receivers).

mod admin_server;
mod http;
mod readiness;
mod readiness_server;
mod stats_server;

use std::net::SocketAddr;

pub use admin_server::{AdminServer, AdminState, ConfigDumpSource};
pub use readiness::{BlockReady, Readiness};
pub use readiness_server::ReadinessServer;
pub use stats_server::StatsServer;

/// Default admin address (localhost only).
pub const DEFAULT_ADMIN_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15000);
/// Default Prometheus address.
pub const DEFAULT_STATS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 15020);
/// Default readiness address.
pub const DEFAULT_READINESS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 15021);

/// Errors of the admin servers; all happen at start-up.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The listen address could not be bound (in use, no permission, bad address).
    #[error("{server} server: cannot listen on {addr}: {source}")]
    Bind {
        server: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests;
