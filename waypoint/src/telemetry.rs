//! The waypoint's Istio metrics (spec §9, with a single `reporter="waypoint"`) and its access log.
//!
//! Request families: `istio_requests_total`, `istio_request_duration_milliseconds` (Envoy's
//! default bucket bounds), `istio_request_bytes`, `istio_response_bytes`; TCP families for
//! opaque traffic: `istio_tcp_connections_opened_total`, `istio_tcp_connections_closed_total`,
//! `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total`. Empty label values render
//! as `unknown`, as Istio's do.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Envoy's default histogram bounds (`HistogramStatisticsImpl::supportedBuckets`), in ms.
pub const DURATION_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// Size buckets for request/response bytes (Istio's stats filter: 1 B … 1 GB, ×10).
pub const SIZE_BUCKETS: [f64; 10] = [
    1.0,
    10.0,
    100.0,
    1000.0,
    10000.0,
    100000.0,
    1000000.0,
    10000000.0,
    100000000.0,
    1000000000.0,
];

/// Istio's traffic labels, in Istio's order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TrafficLabels {
    pub reporter: String,
    pub source_workload: String,
    pub source_canonical_service: String,
    pub source_canonical_revision: String,
    pub source_workload_namespace: String,
    pub source_principal: String,
    pub source_app: String,
    pub source_version: String,
    pub source_cluster: String,
    pub destination_workload: String,
    pub destination_workload_namespace: String,
    pub destination_principal: String,
    pub destination_app: String,
    pub destination_version: String,
    pub destination_service: String,
    pub destination_service_name: String,
    pub destination_service_namespace: String,
    pub destination_canonical_service: String,
    pub destination_canonical_revision: String,
    pub destination_cluster: String,
    pub request_protocol: String,
    pub response_code: String,
    pub grpc_response_status: String,
    pub response_flags: String,
    pub connection_security_policy: String,
}

impl TrafficLabels {
    /// Replaces every empty value with `unknown` (and `response_flags` with `-`).
    pub fn finish(mut self) -> Self {
        let fields = [
            &mut self.source_workload,
            &mut self.source_canonical_service,
            &mut self.source_canonical_revision,
            &mut self.source_workload_namespace,
            &mut self.source_principal,
            &mut self.source_app,
            &mut self.source_version,
            &mut self.source_cluster,
            &mut self.destination_workload,
            &mut self.destination_workload_namespace,
            &mut self.destination_principal,
            &mut self.destination_app,
            &mut self.destination_version,
            &mut self.destination_service,
            &mut self.destination_service_name,
            &mut self.destination_service_namespace,
            &mut self.destination_canonical_service,
            &mut self.destination_canonical_revision,
            &mut self.destination_cluster,
            &mut self.request_protocol,
            &mut self.response_code,
            &mut self.grpc_response_status,
            &mut self.connection_security_policy,
        ];
        for f in fields {
            if f.is_empty() {
                "unknown".clone_into(f);
            }
        }
        if self.response_flags.is_empty() {
            "-".clone_into(&mut self.response_flags);
        }
        self.reporter = "waypoint".into();
        self
    }
}

type HistogramFamily = Family<TrafficLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}
fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

/// Handles to every metric. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub requests: Family<TrafficLabels, Counter>,
    pub duration: HistogramFamily,
    pub request_bytes: HistogramFamily,
    pub response_bytes: HistogramFamily,
    pub tcp_opened: Family<TrafficLabels, Counter>,
    pub tcp_closed: Family<TrafficLabels, Counter>,
    pub tcp_sent: Family<TrafficLabels, Counter>,
    pub tcp_received: Family<TrafficLabels, Counter>,
}

impl Metrics {
    /// Registers every family under the `istio_` prefix of `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            request_bytes: Family::new_with_constructor(size_histogram),
            response_bytes: Family::new_with_constructor(size_histogram),
            tcp_opened: Family::default(),
            tcp_closed: Family::default(),
            tcp_sent: Family::default(),
            tcp_received: Family::default(),
        };
        let istio = registry.sub_registry_with_prefix("istio");
        istio.register("requests", "Total requests", m.requests.clone());
        istio.register(
            "request_duration_milliseconds",
            "Request duration in milliseconds",
            m.duration.clone(),
        );
        istio.register(
            "request_bytes",
            "Request sizes in bytes",
            m.request_bytes.clone(),
        );
        istio.register(
            "response_bytes",
            "Response sizes in bytes",
            m.response_bytes.clone(),
        );
        istio.register(
            "tcp_connections_opened",
            "Total TCP connections opened",
            m.tcp_opened.clone(),
        );
        istio.register(
            "tcp_connections_closed",
            "Total TCP connections closed",
            m.tcp_closed.clone(),
        );
        istio.register(
            "tcp_sent_bytes",
            "Bytes sent to the client over TCP",
            m.tcp_sent.clone(),
        );
        istio.register(
            "tcp_received_bytes",
            "Bytes received from the client over TCP",
            m.tcp_received.clone(),
        );
        m
    }

    /// Records one finished request.
    pub fn request(&self, labels: &TrafficLabels, millis: f64, req_bytes: u64, resp_bytes: u64) {
        self.requests.get_or_create(labels).inc();
        self.duration.get_or_create(labels).observe(millis);
        self.request_bytes
            .get_or_create(labels)
            .observe(req_bytes as f64);
        self.response_bytes
            .get_or_create(labels)
            .observe(resp_bytes as f64);
    }
}

/// Renders the registry in the Prometheus text format 0.0.4 (what the admin port's content type says): counter
/// families typed under their `_total` sample names, so classic parsers keep their type.
pub fn encode(registry: &Registry) -> String {
    hbone::exposition::Format::PrometheusText
        .encode(registry)
        .unwrap_or_default()
}

/// One access-log line (JSON on the `access_log` target), with Envoy's field names.
#[derive(Debug, Default, serde::Serialize)]
pub struct AccessLog<'a> {
    pub start_time: String,
    pub method: &'a str,
    pub path: &'a str,
    pub protocol: &'a str,
    pub response_code: u16,
    pub response_flags: &'a str,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration_ms: u64,
    pub upstream_host: Option<String>,
    pub upstream_cluster: Option<&'a str>,
    pub route_name: Option<&'a str>,
    pub authority: &'a str,
    pub downstream_remote_address: String,
    pub downstream_peer_identity: Option<String>,
    pub upstream_peer_identity: Option<String>,
    pub request_id: &'a str,
    pub traceparent: &'a str,
    pub rbac_policy: Option<&'a str>,
    pub attempts: u32,
}

impl AccessLog<'_> {
    pub fn emit(&self) {
        match serde_json::to_string(self) {
            Ok(line) => tracing::info!(target: "access_log", "{line}"),
            Err(e) => tracing::warn!(error = %e, "access log line not encodable"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exposes_istio_names_with_envoy_buckets() {
        let mut r = Registry::default();
        let m = Metrics::new(&mut r);
        let l = TrafficLabels {
            source_principal: "spiffe://cluster.local/ns/a/sa/b".into(),
            response_code: "200".into(),
            ..TrafficLabels::default()
        }
        .finish();
        m.request(&l, 3.0, 10, 20);
        let text = encode(&r);
        assert!(
            text.contains("istio_requests_total{reporter=\"waypoint\",source_workload=\"unknown\""),
            "{text}"
        );
        assert!(text.contains("source_principal=\"spiffe://cluster.local/ns/a/sa/b\""));
        assert!(text.contains("response_flags=\"-\""));
        assert!(text.contains("istio_request_duration_milliseconds_bucket{"));
        assert!(text.contains("le=\"3600000.0\""));
        assert!(text.contains("istio_response_bytes_sum{"));
        assert!(!text.contains("# EOF"));
        // Classic (0.0.4) parsers match TYPE lines to samples by exact name.
        assert!(
            text.contains("# TYPE istio_requests_total counter"),
            "{text}"
        );
        assert!(!text.contains("# TYPE istio_requests counter"), "{text}");
    }
}
