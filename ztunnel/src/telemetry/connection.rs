//! Per-connection telemetry: one [`ConnectionRecorder`] per proxied connection, from set-up to close.
//!
//! Owns: the order of metric updates and access-log events for a connection (opened → bytes → closed/failed) and
//! the "connection failed before set-up" event ([`connection_failed`]).
//! Does not own: moving bytes or classifying errors; callers report byte counts and give errors a
//! [`ResponseFlag`] through [`FailureFlag`].

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;

use super::access_log::{self, ConnectionAddrs, Direction, Totals};
use super::metrics::{CommonTrafficLabels, Metrics, ReporterLabels, ResponseFlag};

/// An error that ends a connection, with the `response_flags` value it maps to (spec §2.7). `None` means the
/// connection ended with an error that is not a classified failure (e.g. reset by a peer): it counts as closed,
/// not failed.
pub trait FailureFlag: Display {
    /// The flag, or `None` when this error is not a classified failure.
    fn response_flag(&self) -> Option<ResponseFlag>;
}

/// A ready-made [`FailureFlag`] for callers without their own error type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionFailure {
    /// The classified failure, if any.
    pub flag: Option<ResponseFlag>,
    /// What went wrong, for the access log.
    pub message: String,
}

impl ConnectionFailure {
    /// A failure with `flag` and `message`.
    pub fn new(flag: Option<ResponseFlag>, message: impl Into<String>) -> Self {
        Self {
            flag,
            message: message.into(),
        }
    }
}

impl Display for ConnectionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl FailureFlag for ConnectionFailure {
    fn response_flag(&self) -> Option<ResponseFlag> {
        self.flag
    }
}

/// Telemetry of one established connection. Creating it counts `opened`, raises `sockets_open` and logs
/// "connection opened"; byte counts go to the counters as they are reported (so long connections show traffic);
/// [`finish`](Self::finish) — or drop, treated as a clean close — counts `closed` (and `failed` with the error's
/// flag), lowers `sockets_open` and logs "connection complete".
///
/// The `add_*` methods take `&self`, so both copy directions can share one recorder.
pub struct ConnectionRecorder {
    metrics: Arc<Metrics>,
    labels: CommonTrafficLabels,
    addrs: ConnectionAddrs,
    start: Instant,
    received_counter: Counter,
    sent_counter: Counter,
    received: AtomicU64,
    sent: AtomicU64,
    finished: bool,
}

impl ConnectionRecorder {
    /// Records the opening of a connection with `labels` (whose `response_flags` should be `-`).
    pub fn new(metrics: Arc<Metrics>, labels: CommonTrafficLabels, addrs: ConnectionAddrs) -> Self {
        metrics.connections_opened.get_or_create(&labels).inc();
        metrics
            .sockets_open
            .get_or_create(&ReporterLabels {
                reporter: labels.reporter,
            })
            .inc();
        access_log::opened(&labels, &addrs);
        Self {
            received_counter: metrics.received_bytes.get_or_create_owned(&labels),
            sent_counter: metrics.sent_bytes.get_or_create_owned(&labels),
            metrics,
            labels,
            addrs,
            start: Instant::now(),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            finished: false,
        }
    }

    /// The labels this connection reports with.
    pub fn labels(&self) -> &CommonTrafficLabels {
        &self.labels
    }

    /// Counts `n` bytes in the request direction (client → server).
    pub fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
        self.received_counter.inc_by(n);
    }

    /// Counts `n` bytes in the response direction (server → client).
    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.sent_counter.inc_by(n);
    }

    /// Records the end of the connection with its result.
    pub fn finish<E: FailureFlag + ?Sized>(mut self, result: Result<(), &E>) {
        self.finished = true;
        match result {
            Ok(()) => self.record_close(None),
            Err(error) => self.record_close(Some((error.response_flag(), &error))),
        }
    }

    fn record_close(&self, error: Option<(Option<ResponseFlag>, &dyn Display)>) {
        let flag = error
            .and_then(|(flag, _)| flag)
            .unwrap_or(ResponseFlag::None);
        let closed_labels = self.labels.with_response_flag(flag);
        self.metrics
            .connections_closed
            .get_or_create(&closed_labels)
            .inc();
        if flag != ResponseFlag::None {
            self.metrics
                .connections_failed
                .get_or_create(&closed_labels)
                .inc();
        }
        self.metrics
            .sockets_open
            .get_or_create(&ReporterLabels {
                reporter: self.labels.reporter,
            })
            .dec();
        let totals = Totals {
            bytes_sent: self.sent.load(Ordering::Relaxed),
            bytes_recv: self.received.load(Ordering::Relaxed),
            duration: self.start.elapsed(),
        };
        access_log::complete(&closed_labels, &self.addrs, totals, error.map(|(_, e)| e));
    }
}

impl Drop for ConnectionRecorder {
    fn drop(&mut self) {
        if !self.finished {
            self.record_close(None);
        }
    }
}

/// A connection that failed before it was set up (no [`ConnectionRecorder`] exists for it).
#[derive(Clone, Debug)]
pub struct FailedConnection {
    /// Labels known so far; `response_flags` is replaced by the error's flag.
    pub labels: CommonTrafficLabels,
    /// Its addresses.
    pub addrs: ConnectionAddrs,
}

/// Records a failure before set-up: counts `istio_tcp_connections_failed_total` with the error's flag
/// (`CONNECT` when it has none) and logs "connection failed" at warn.
pub fn connection_failed<E: FailureFlag + ?Sized>(
    metrics: &Metrics,
    connection: &FailedConnection,
    error: &E,
) {
    let flag = error.response_flag().unwrap_or(ResponseFlag::Connect);
    metrics
        .connections_failed
        .get_or_create(&connection.labels.with_response_flag(flag))
        .inc();
    access_log::failed(
        &connection.addrs,
        Direction::of(connection.labels.reporter),
        &error,
    );
}

#[cfg(test)]
mod tests;
