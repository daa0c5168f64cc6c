//! A recorder's effect on the registry and the access log.

#![allow(clippy::unwrap_used)]

use prometheus_client::registry::Registry;

use super::*;
use crate::telemetry::access_log::tests::Capture;
use crate::telemetry::exposition::Format;
use crate::telemetry::metrics::{Reporter, SecurityPolicy};

fn setup() -> (Arc<Metrics>, Registry) {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry, "test"));
    (metrics, registry)
}

fn addrs() -> ConnectionAddrs {
    ConnectionAddrs {
        src: "10.0.0.1:40000".parse().unwrap(),
        dst: "10.0.0.2:80".parse().unwrap(),
        dst_hbone: Some("10.0.0.2:15008".parse().unwrap()),
    }
}

fn labels() -> CommonTrafficLabels {
    CommonTrafficLabels {
        reporter: Reporter::Source,
        source_workload: "client".into(),
        destination_workload: "".into(),
        connection_security_policy: SecurityPolicy::MutualTls,
        ..Default::default()
    }
}

/// The value of the sample of `family` whose labels contain every one of `fragments`.
fn sample(text: &str, family: &str, fragments: &[&str]) -> Option<u64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .find(|l| fragments.iter().all(|f| l.contains(f)))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

fn encode(registry: &Registry) -> String {
    Format::OpenMetrics.encode(registry).unwrap()
}

#[test]
fn successful_connection_updates_counters_and_logs() {
    let (metrics, registry) = setup();
    let capture = Capture::default();
    capture.run(|| {
        let recorder = ConnectionRecorder::new(metrics.clone(), labels(), addrs());
        let text = encode(&registry);
        assert_eq!(
            sample(
                &text,
                "istio_tcp_connections_opened_total",
                &["source_workload=\"client\""]
            ),
            Some(1)
        );
        assert_eq!(
            sample(&text, "istio_tcp_sockets_open", &["reporter=\"source\""]),
            Some(1)
        );
        recorder.add_received(100);
        recorder.add_sent(7);
        recorder.add_received(1);
        recorder.finish::<ConnectionFailure>(Ok(()));
    });

    let text = encode(&registry);
    let common = [
        "reporter=\"source\"",
        "source_workload=\"client\"",
        "destination_workload=\"unknown\"",
    ];
    assert_eq!(
        sample(&text, "istio_tcp_connections_opened_total", &common),
        Some(1)
    );
    assert_eq!(
        sample(
            &text,
            "istio_tcp_connections_closed_total",
            &["response_flags=\"-\""]
        ),
        Some(1)
    );
    assert_eq!(
        sample(&text, "istio_tcp_received_bytes_total", &common),
        Some(101)
    );
    assert_eq!(
        sample(&text, "istio_tcp_sent_bytes_total", &common),
        Some(7)
    );
    assert_eq!(
        sample(&text, "istio_tcp_sockets_open", &["reporter=\"source\""]),
        Some(0)
    );
    assert!(
        !text.contains("istio_tcp_connections_failed_total"),
        "{text}"
    );

    let events = capture.events();
    let messages: Vec<_> = events.iter().map(|e| e.field("message").unwrap()).collect();
    assert_eq!(messages, ["connection opened", "connection complete"]);
    let complete = &events[1];
    assert_eq!(complete.field("bytes_recv"), Some("101"));
    assert_eq!(complete.field("bytes_sent"), Some("7"));
    assert_eq!(complete.field("direction"), Some("outbound"));
    assert!(complete.field("duration").unwrap().ends_with("ms"));
}

#[test]
fn failed_connection_counts_closed_and_failed_with_flag() {
    let (metrics, registry) = setup();
    let capture = Capture::default();
    capture.run(|| {
        let recorder = ConnectionRecorder::new(metrics.clone(), labels(), addrs());
        let denied = ConnectionFailure::new(Some(ResponseFlag::Deny), "denied by policy");
        recorder.finish(Err(&denied));
    });
    let text = encode(&registry);
    assert_eq!(
        sample(
            &text,
            "istio_tcp_connections_closed_total",
            &["response_flags=\"DENY\""]
        ),
        Some(1)
    );
    assert_eq!(
        sample(
            &text,
            "istio_tcp_connections_failed_total",
            &["response_flags=\"DENY\""]
        ),
        Some(1)
    );
    assert_eq!(sample(&text, "istio_tcp_sockets_open", &[]), Some(0));
    let events = capture.events();
    assert_eq!(events[1].level, tracing::Level::ERROR);
    assert_eq!(events[1].field("error"), Some("denied by policy"));
}

#[test]
fn unclassified_error_and_drop_only_close() {
    let (metrics, registry) = setup();
    let reset = ConnectionFailure::new(None, "reset by peer");
    ConnectionRecorder::new(metrics.clone(), labels(), addrs())
        .finish(Err(&reset as &dyn FailureFlag));
    drop(ConnectionRecorder::new(metrics.clone(), labels(), addrs()));
    let text = encode(&registry);
    assert_eq!(
        sample(&text, "istio_tcp_connections_opened_total", &[]),
        Some(2)
    );
    assert_eq!(
        sample(
            &text,
            "istio_tcp_connections_closed_total",
            &["response_flags=\"-\""]
        ),
        Some(2)
    );
    assert_eq!(sample(&text, "istio_tcp_sockets_open", &[]), Some(0));
    assert!(
        !text.contains("istio_tcp_connections_failed_total"),
        "{text}"
    );
}

#[test]
fn failure_before_setup_counts_failed_and_warns() {
    let (metrics, registry) = setup();
    let capture = Capture::default();
    let connection = FailedConnection {
        labels: labels(),
        addrs: addrs(),
    };
    capture.run(|| {
        connection_failed(
            &metrics,
            &connection,
            &ConnectionFailure::new(Some(ResponseFlag::NetworkPolicy), "timeout"),
        );
        connection_failed(
            &metrics,
            &connection,
            &ConnectionFailure::new(None, "no route"),
        );
    });
    let text = encode(&registry);
    assert_eq!(
        sample(
            &text,
            "istio_tcp_connections_failed_total",
            &["response_flags=\"NETWORK_POLICY\""]
        ),
        Some(1)
    );
    assert_eq!(
        sample(
            &text,
            "istio_tcp_connections_failed_total",
            &["response_flags=\"CONNECT\""]
        ),
        Some(1)
    );
    assert!(
        !text.contains("istio_tcp_connections_opened_total"),
        "{text}"
    );
    let events = capture.events();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.level == tracing::Level::WARN && e.target == "access")
    );
    assert_eq!(events[0].field("error"), Some("timeout"));
}
