//! Telemetry of the node tunnel: Prometheus metrics (names and labels, spec §9), the per-connection recorder that
//! feeds them, the `access` log and the process-wide `tracing` set-up with its runtime level control.
//!
//! Owns: metric names, label types, access-log field names, log format and level handling (exposition encoding is
//! `hbone::exposition`, shared with the waypoint).
//! Does not own: the HTTP endpoints that expose metrics or change levels (see [`crate::admin`]), nor the decision of
//! which label values a connection gets (the proxies fill [`CommonTrafficLabels`] from their workload lookups).

pub mod access_log;
pub mod connection;
pub mod logging;
pub mod metrics;

pub use access_log::{ConnectionAddrs, Direction};
pub use connection::{
    ConnectionFailure, ConnectionRecorder, FailedConnection, FailureFlag, connection_failed,
};
/// Exposition formats (shared with the waypoint).
pub use hbone::exposition;
pub use logging::{LogFormat, LogLevelControl, LoggingError};
pub use metrics::{
    CommonTrafficLabels, Metrics, OrUnknown, Reporter, RequestProtocol, ResponseFlag,
    SecurityPolicy, XdsTerminationReason,
};
