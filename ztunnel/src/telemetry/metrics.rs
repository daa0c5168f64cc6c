//! The tunnel's Prometheus metrics: every exposed name lives here (spec §9).
//!
//! Owns: metric names and help texts, the families and their label types ([`labels`]), and registration into a
//! `prometheus_client` [`Registry`]: `istio_*` families go into an `istio` sub-registry, the in-pod manager and
//! process families into the (un-prefixed) root, so one encode of the root yields all exact names.
//! Does not own: updating connection families (see [`super::connection`]), exposition formats
//! (see [`super::exposition`]) or serving them (see [`crate::admin`]).
//!
//! Names are registered without `_total`: prometheus-client appends it to counters itself.

mod labels;
mod process;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub(crate) use labels::{BuildLabels, ReporterLabels, XdsTerminationLabels, XdsTypeLabels};
pub use labels::{
    CommonTrafficLabels, OrUnknown, Reporter, RequestProtocol, ResponseFlag, SecurityPolicy,
    XdsTerminationReason,
};

/// Prefix of every Istio-named family.
pub const ISTIO_PREFIX: &str = "istio";

/// Handles to every metric of the tunnel. Cloning is cheap (each family is reference-counted); updates through any
/// clone show in the registry the metrics were registered in.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub(crate) connections_opened: Family<CommonTrafficLabels, Counter>,
    pub(crate) connections_closed: Family<CommonTrafficLabels, Counter>,
    pub(crate) connections_failed: Family<CommonTrafficLabels, Counter>,
    pub(crate) received_bytes: Family<CommonTrafficLabels, Counter>,
    pub(crate) sent_bytes: Family<CommonTrafficLabels, Counter>,
    pub(crate) sockets_open: Family<ReporterLabels, Gauge>,
    xds_terminations: Family<XdsTerminationLabels, Counter>,
    xds_messages: Family<XdsTypeLabels, Counter>,
    xds_message_bytes: Family<XdsTypeLabels, Counter>,
    /// In-pod proxies currently running (`workload_manager_active_proxy_count`).
    pub active_proxies: Gauge,
    /// In-pod proxies waiting to start (`workload_manager_pending_proxy_count`).
    pub pending_proxies: Gauge,
    /// In-pod proxies started (`workload_manager_proxies_started_total`).
    pub proxies_started: Counter,
    /// In-pod proxies stopped (`workload_manager_proxies_stopped_total`).
    pub proxies_stopped: Counter,
}

impl Metrics {
    /// Registers every family in `registry`, which must be an un-prefixed root (`Registry::default()`): the
    /// `istio_` prefix is applied here. `build_tag` is the Istio version reported by `istio_build{tag}`.
    pub fn new(registry: &mut Registry, build_tag: &str) -> Self {
        let metrics = Self {
            connections_opened: Family::default(),
            connections_closed: Family::default(),
            connections_failed: Family::default(),
            received_bytes: Family::default(),
            sent_bytes: Family::default(),
            sockets_open: Family::default(),
            xds_terminations: Family::default(),
            xds_messages: Family::default(),
            xds_message_bytes: Family::default(),
            active_proxies: Gauge::default(),
            pending_proxies: Gauge::default(),
            proxies_started: Counter::default(),
            proxies_stopped: Counter::default(),
        };
        metrics.register_istio(registry.sub_registry_with_prefix(ISTIO_PREFIX), build_tag);
        metrics.register_unprefixed(registry);
        metrics
    }

    fn register_istio(&self, istio: &mut Registry, build_tag: &str) {
        istio.register(
            "tcp_connections_opened",
            "The total number of TCP connections opened",
            self.connections_opened.clone(),
        );
        istio.register(
            "tcp_connections_closed",
            "The total number of TCP connections closed",
            self.connections_closed.clone(),
        );
        istio.register(
            "tcp_connections_failed",
            "The total number of TCP connections that closed with a failure",
            self.connections_failed.clone(),
        );
        istio.register(
            "tcp_received_bytes",
            "The size of total bytes received during request in case of a TCP connection",
            self.received_bytes.clone(),
        );
        istio.register(
            "tcp_sent_bytes",
            "The size of total bytes sent during response in case of a TCP connection",
            self.sent_bytes.clone(),
        );
        istio.register(
            "tcp_sockets_open",
            "The number of currently open TCP sockets",
            self.sockets_open.clone(),
        );

        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                component: "ztunnel",
                tag: build_tag.to_owned(),
            })
            .set(1);
        istio.register("build", "Istio component build info", build);

        istio.register(
            "xds_connection_terminations",
            "The total number of completed connections to the xDS server, by reason",
            self.xds_terminations.clone(),
        );
        istio.register(
            "xds_message",
            "The total number of xDS messages received, by type URL",
            self.xds_messages.clone(),
        );
        istio.register(
            "xds_message_bytes",
            "The total size of xDS messages received in bytes, by type URL",
            self.xds_message_bytes.clone(),
        );
    }

    fn register_unprefixed(&self, root: &mut Registry) {
        root.register(
            "workload_manager_active_proxy_count",
            "The number of in-pod proxies currently running",
            self.active_proxies.clone(),
        );
        root.register(
            "workload_manager_pending_proxy_count",
            "The number of in-pod proxies waiting to start",
            self.pending_proxies.clone(),
        );
        root.register(
            "workload_manager_proxies_started",
            "The total number of in-pod proxies started",
            self.proxies_started.clone(),
        );
        root.register(
            "workload_manager_proxies_stopped",
            "The total number of in-pod proxies stopped",
            self.proxies_stopped.clone(),
        );
        root.register_collector(Box::new(process::ProcessCollector));
    }

    /// Counts one ended xDS stream (`istio_xds_connection_terminations_total{reason}`).
    pub fn record_xds_termination(&self, reason: XdsTerminationReason) {
        self.xds_terminations
            .get_or_create(&XdsTerminationLabels { reason })
            .inc();
    }

    /// Counts one received xDS response of `type_url` and its encoded size.
    pub fn record_xds_message(&self, type_url: &str, bytes: u64) {
        let labels = XdsTypeLabels {
            url: type_url.to_owned(),
        };
        self.xds_messages.get_or_create(&labels).inc();
        self.xds_message_bytes.get_or_create(&labels).inc_by(bytes);
    }
}

#[cfg(test)]
mod tests;
