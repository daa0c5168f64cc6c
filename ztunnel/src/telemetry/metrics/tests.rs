//! Exact exposed names and label rendering of the registry.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::telemetry::exposition::Format;

fn registry_with_every_family() -> (Metrics, Registry) {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry, "1.27.0");
    let labels = CommonTrafficLabels::new(Reporter::Source);
    metrics.connections_opened.get_or_create(&labels).inc();
    metrics.connections_closed.get_or_create(&labels).inc();
    metrics
        .connections_failed
        .get_or_create(&labels.with_response_flag(ResponseFlag::Connect))
        .inc();
    metrics.received_bytes.get_or_create(&labels).inc_by(10);
    metrics.sent_bytes.get_or_create(&labels).inc_by(20);
    metrics
        .sockets_open
        .get_or_create(&ReporterLabels {
            reporter: Reporter::Destination,
        })
        .set(3);
    metrics.record_xds_termination(XdsTerminationReason::Reconnect);
    metrics.record_xds_message("type.googleapis.com/istio.workload.Address", 42);
    metrics.active_proxies.set(2);
    metrics.pending_proxies.set(1);
    metrics.proxies_started.inc();
    metrics.proxies_stopped.inc();
    (metrics, registry)
}

fn sample_names(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect()
}

#[test]
fn exposes_exact_names() {
    let (_metrics, registry) = registry_with_every_family();
    let text = Format::OpenMetrics.encode(&registry).unwrap();
    let names = sample_names(&text);
    for want in [
        "istio_tcp_connections_opened_total",
        "istio_tcp_connections_closed_total",
        "istio_tcp_connections_failed_total",
        "istio_tcp_received_bytes_total",
        "istio_tcp_sent_bytes_total",
        "istio_tcp_sockets_open",
        "istio_build",
        "istio_xds_connection_terminations_total",
        "istio_xds_message_total",
        "istio_xds_message_bytes_total",
        "workload_manager_active_proxy_count",
        "workload_manager_pending_proxy_count",
        "workload_manager_proxies_started_total",
        "workload_manager_proxies_stopped_total",
        "process_open_fds",
        "process_max_fds",
    ] {
        assert!(names.contains(&want), "{want} missing in:\n{text}");
    }
    assert!(!text.contains("_total_total"), "{text}");
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn exposes_exact_lines() {
    let (_metrics, registry) = registry_with_every_family();
    let text = Format::OpenMetrics.encode(&registry).unwrap();
    for want in [
        "# TYPE istio_tcp_connections_opened counter",
        "istio_build{component=\"ztunnel\",tag=\"1.27.0\"} 1",
        "istio_tcp_sockets_open{reporter=\"destination\"} 3",
        "istio_xds_connection_terminations_total{reason=\"Reconnect\"} 1",
        "istio_xds_message_total{url=\"type.googleapis.com/istio.workload.Address\"} 1",
        "istio_xds_message_bytes_total{url=\"type.googleapis.com/istio.workload.Address\"} 42",
        "workload_manager_active_proxy_count 2",
        "workload_manager_pending_proxy_count 1",
        "workload_manager_proxies_started_total 1",
        "workload_manager_proxies_stopped_total 1",
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "line {want:?} missing in:\n{text}"
        );
    }
}

#[test]
fn common_labels_render_in_order_with_unknown() {
    let (_metrics, registry) = registry_with_every_family();
    let text = Format::OpenMetrics.encode(&registry).unwrap();
    let want = "istio_tcp_connections_opened_total{reporter=\"source\",source_workload=\"unknown\",\
        source_canonical_service=\"unknown\",source_canonical_revision=\"unknown\",\
        source_workload_namespace=\"unknown\",source_principal=\"unknown\",source_app=\"unknown\",\
        source_version=\"unknown\",source_cluster=\"unknown\",destination_service=\"unknown\",\
        destination_service_namespace=\"unknown\",destination_service_name=\"unknown\",\
        destination_workload=\"unknown\",destination_canonical_service=\"unknown\",\
        destination_canonical_revision=\"unknown\",destination_workload_namespace=\"unknown\",\
        destination_principal=\"unknown\",destination_app=\"unknown\",destination_version=\"unknown\",\
        destination_cluster=\"unknown\",request_protocol=\"tcp\",response_flags=\"-\",\
        connection_security_policy=\"unknown\",source_region=\"unknown\",source_zone=\"unknown\",\
        destination_region=\"unknown\",destination_zone=\"unknown\"} 1";
    assert!(
        text.lines().any(|l| l == want),
        "missing:\n{want}\nin:\n{text}"
    );
    assert!(text.contains("istio_tcp_connections_failed_total{reporter=\"source\""));
    assert!(text.contains("response_flags=\"CONNECT\""));
}

#[test]
fn empty_values_become_unknown_and_peer_values_are_escaped() {
    assert!(OrUnknown::from("").is_unknown());
    assert!(OrUnknown::from(String::new()).is_unknown());
    assert!(OrUnknown::from(None::<&str>).is_unknown());
    assert_eq!(OrUnknown::from(Some("web")).as_str(), "web");

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry, "");
    let labels = CommonTrafficLabels {
        source_app: "a\"b\\c\nd".into(),
        ..Default::default()
    };
    metrics.connections_opened.get_or_create(&labels).inc();
    let text = Format::OpenMetrics.encode(&registry).unwrap();
    assert!(text.contains(r#"source_app="a\"b\\c\nd""#), "{text}");
    assert!(
        text.contains(r#"istio_build{component="ztunnel",tag=""} 1"#),
        "{text}"
    );
}

#[test]
fn prometheus_text_has_typed_counters_and_no_eof() {
    let (_metrics, registry) = registry_with_every_family();
    let text = Format::PrometheusText.encode(&registry).unwrap();
    assert!(!text.contains("# EOF"));
    assert!(
        text.lines()
            .any(|l| l == "# TYPE istio_tcp_connections_opened_total counter"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "# TYPE workload_manager_proxies_started_total counter"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "# TYPE istio_tcp_sockets_open gauge"),
        "{text}"
    );
    // Every sample's family has metadata under exactly its own name.
    for name in sample_names(&text) {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "no TYPE for {name}:\n{text}"
        );
    }
}
