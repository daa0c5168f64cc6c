//! The access log (spec §9): `tracing` events with `target: "access"`, one field name per spec entry.
//!
//! Owns: event messages, levels and field names. Workload fields come from the connection's
//! [`CommonTrafficLabels`] (values rendering as `unknown` are omitted); `*.identity` is only logged for mTLS.
//! Does not own: when events are emitted (see [`super::connection`]) or the log format (see [`super::logging`]).
//!
//! `bytes_recv` counts the request direction (client → server), `bytes_sent` the response direction
//! (server → client), matching `istio_tcp_received_bytes_total` / `istio_tcp_sent_bytes_total`.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

use tracing::field::{DisplayValue, display};

use super::metrics::{CommonTrafficLabels, Reporter, SecurityPolicy};

/// The tracing target of every access-log event.
pub const TARGET: &str = "access";

/// Direction of a proxied connection, as seen by this tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Accepted from a local pod (outbound capture); the tunnel reports as `source`.
    Outbound,
    /// Accepted for a local pod (HBONE or plaintext inbound); the tunnel reports as `destination`.
    Inbound,
}

impl Direction {
    /// `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }

    /// The direction a reporter implies.
    pub fn of(reporter: Reporter) -> Self {
        match reporter {
            Reporter::Source => Self::Outbound,
            Reporter::Destination => Self::Inbound,
        }
    }
}

/// Addresses of one proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionAddrs {
    /// The client (the original source).
    pub src: SocketAddr,
    /// The original destination.
    pub dst: SocketAddr,
    /// The HBONE peer (`<ip>:15008`) when the connection is tunneled.
    pub dst_hbone: Option<SocketAddr>,
}

/// Byte counts and duration of a finished connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Server → client bytes.
    pub bytes_sent: u64,
    /// Client → server bytes.
    pub bytes_recv: u64,
    /// Time since the connection opened.
    pub duration: Duration,
}

/// Workload fields of one connection, borrowed from its labels.
struct Fields<'a> {
    src_workload: Option<&'a str>,
    src_namespace: Option<&'a str>,
    src_identity: Option<&'a str>,
    src_cluster: Option<&'a str>,
    dst_service: Option<&'a str>,
    dst_workload: Option<&'a str>,
    dst_namespace: Option<&'a str>,
    dst_identity: Option<&'a str>,
    dst_cluster: Option<&'a str>,
    hbone: Option<DisplayValue<SocketAddr>>,
    direction: &'static str,
}

impl<'a> Fields<'a> {
    fn new(labels: &'a CommonTrafficLabels, addrs: &ConnectionAddrs) -> Self {
        let mtls = labels.connection_security_policy == SecurityPolicy::MutualTls;
        Self {
            src_workload: labels.source_workload.as_option(),
            src_namespace: labels.source_workload_namespace.as_option(),
            src_identity: labels.source_principal.as_option().filter(|_| mtls),
            src_cluster: labels.source_cluster.as_option(),
            dst_service: labels.destination_service.as_option(),
            dst_workload: labels.destination_workload.as_option(),
            dst_namespace: labels.destination_workload_namespace.as_option(),
            dst_identity: labels.destination_principal.as_option().filter(|_| mtls),
            dst_cluster: labels.destination_cluster.as_option(),
            hbone: addrs.dst_hbone.map(display),
            direction: Direction::of(labels.reporter).as_str(),
        }
    }
}

/// "connection opened" (debug).
pub fn opened(labels: &CommonTrafficLabels, addrs: &ConnectionAddrs) {
    let f = Fields::new(labels, addrs);
    tracing::event!(
        target: TARGET,
        tracing::Level::DEBUG,
        src.addr = %addrs.src,
        src.workload = f.src_workload,
        src.namespace = f.src_namespace,
        src.identity = f.src_identity,
        src.cluster = f.src_cluster,
        dst.addr = %addrs.dst,
        dst.hbone_addr = f.hbone,
        dst.service = f.dst_service,
        dst.workload = f.dst_workload,
        dst.namespace = f.dst_namespace,
        dst.identity = f.dst_identity,
        dst.cluster = f.dst_cluster,
        direction = f.direction,
        "connection opened"
    );
}

/// "connection complete": info, or error level with an `error` field.
pub fn complete(
    labels: &CommonTrafficLabels,
    addrs: &ConnectionAddrs,
    totals: Totals,
    error: Option<&dyn Display>,
) {
    let f = Fields::new(labels, addrs);
    let duration = format!("{}ms", totals.duration.as_millis());
    macro_rules! event {
        ($level:expr, $($error:tt)*) => {
            tracing::event!(
                target: TARGET,
                $level,
                src.addr = %addrs.src,
                src.workload = f.src_workload,
                src.namespace = f.src_namespace,
                src.identity = f.src_identity,
                src.cluster = f.src_cluster,
                dst.addr = %addrs.dst,
                dst.hbone_addr = f.hbone,
                dst.service = f.dst_service,
                dst.workload = f.dst_workload,
                dst.namespace = f.dst_namespace,
                dst.identity = f.dst_identity,
                dst.cluster = f.dst_cluster,
                direction = f.direction,
                bytes_sent = totals.bytes_sent,
                bytes_recv = totals.bytes_recv,
                duration = %duration,
                $($error)*
                "connection complete"
            )
        };
    }
    match error {
        None => event!(tracing::Level::INFO,),
        Some(error) => event!(tracing::Level::ERROR, error = %error,),
    }
}

/// "connection failed" (warn): a failure before the connection was set up.
pub fn failed(addrs: &ConnectionAddrs, direction: Direction, error: &dyn Display) {
    tracing::event!(
        target: TARGET,
        tracing::Level::WARN,
        src.addr = %addrs.src,
        dst.addr = %addrs.dst,
        dst.hbone_addr = addrs.dst_hbone.map(display),
        direction = direction.as_str(),
        error = %error,
        "connection failed"
    );
}

#[cfg(test)]
pub(crate) mod tests;
