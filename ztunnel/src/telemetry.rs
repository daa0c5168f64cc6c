//! Telemetry of the node tunnel: Prometheus metrics (names and labels, spec §9), the per-connection recorder that
//! feeds them, the `access` log and the process-wide `tracing` set-up with its runtime level control.
//!
//! Owns: metric names, label types, exposition encoding, access-log field names, log format and level handling.
//! Does not own: the HTTP endpoints that expose metrics or change levels (see [`crate::admin`]), nor the decision of
//! which label values a connection gets (the proxies fill [`CommonTrafficLabels`] from their workload lookups).

pub mod access_log;
pub mod connection;
pub mod exposition;
pub mod logging;
pub mod metrics;

pub use access_log::{ConnectionAddrs, Direction};
pub use connection::{
    ConnectionFailure, ConnectionRecorder, FailedConnection, FailureFlag, connection_failed,
};
pub use logging::{LogFormat, LogLevelControl, LoggingError};
pub use metrics::{
    CommonTrafficLabels, Metrics, OrUnknown, Reporter, RequestProtocol, ResponseFlag,
    SecurityPolicy, XdsTerminationReason,
};
