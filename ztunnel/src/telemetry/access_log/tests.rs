//! Access-log field names and levels, captured with a local (not global) subscriber.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

use super::*;
use crate::telemetry::metrics::OrUnknown;

/// One captured event: target, level and every field as a string (`message` included).
#[derive(Clone, Debug)]
pub(crate) struct Captured {
    pub(crate) target: String,
    pub(crate) level: tracing::Level,
    pub(crate) fields: BTreeMap<String, String>,
}

impl Captured {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Vec<Captured>>>);

impl Capture {
    pub(crate) fn events(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }

    /// Runs `f` with a subscriber (for this thread only) that records every event.
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        with_local_subscriber(subscriber, f)
    }
}

/// Runs `f` with `subscriber` as this thread's default, safe against the other tests' threads.
///
/// tracing caches each call site's interest process-wide. While exactly one dispatcher is
/// registered, a call site first hit on *another* thread computes that interest from that thread's
/// (empty) default and caches `never`, silencing events this test then waits for (it failed CI
/// once: a dry-run event went missing). A second dispatcher that wants nothing, alive for the whole
/// run, makes tracing combine every registered dispatcher instead; the lock keeps the tests that
/// install subscribers from rebuilding the cache under each other.
pub(crate) fn with_local_subscriber<R>(
    subscriber: impl Into<tracing::Dispatch>,
    f: impl FnOnce() -> R,
) -> R {
    static LOCK: Mutex<()> = Mutex::new(());
    let _serial = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _second = tracing::Dispatch::new(
        tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::OFF),
    );
    tracing::dispatcher::with_default(&subscriber.into(), || {
        tracing::callsite::rebuild_interest_cache();
        f()
    })
}

struct Visitor<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Visitor(&mut fields));
        self.0.lock().unwrap().push(Captured {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
        });
    }
}

fn labels(policy: SecurityPolicy) -> CommonTrafficLabels {
    CommonTrafficLabels {
        reporter: Reporter::Destination,
        source_workload: "client".into(),
        source_workload_namespace: "ns-a".into(),
        source_principal: "spiffe://cluster.local/ns/ns-a/sa/client".into(),
        source_cluster: "Kubernetes".into(),
        destination_service: "server.ns-b.svc.cluster.local".into(),
        destination_workload: "server".into(),
        destination_workload_namespace: "ns-b".into(),
        destination_principal: "spiffe://cluster.local/ns/ns-b/sa/server".into(),
        destination_cluster: OrUnknown::from(""),
        connection_security_policy: policy,
        ..Default::default()
    }
}

fn addrs() -> ConnectionAddrs {
    ConnectionAddrs {
        src: "10.0.0.1:40000".parse().unwrap(),
        dst: "10.0.0.2:8080".parse().unwrap(),
        dst_hbone: Some("10.0.0.2:15008".parse().unwrap()),
    }
}

#[test]
fn complete_has_every_field() {
    let capture = Capture::default();
    let totals = Totals {
        bytes_sent: 5,
        bytes_recv: 7,
        duration: Duration::from_millis(1234),
    };
    capture.run(|| complete(&labels(SecurityPolicy::MutualTls), &addrs(), totals, None));
    let events = capture.events();
    let [event] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(event.target, "access");
    assert_eq!(event.level, tracing::Level::INFO);
    let want = [
        ("message", "connection complete"),
        ("src.addr", "10.0.0.1:40000"),
        ("src.workload", "client"),
        ("src.namespace", "ns-a"),
        ("src.identity", "spiffe://cluster.local/ns/ns-a/sa/client"),
        ("src.cluster", "Kubernetes"),
        ("dst.addr", "10.0.0.2:8080"),
        ("dst.hbone_addr", "10.0.0.2:15008"),
        ("dst.service", "server.ns-b.svc.cluster.local"),
        ("dst.workload", "server"),
        ("dst.namespace", "ns-b"),
        ("dst.identity", "spiffe://cluster.local/ns/ns-b/sa/server"),
        ("direction", "inbound"),
        ("bytes_sent", "5"),
        ("bytes_recv", "7"),
        ("duration", "1234ms"),
    ];
    for (name, value) in want {
        assert_eq!(event.field(name), Some(value), "field {name} in {event:?}");
    }
    assert_eq!(
        event.field("dst.cluster"),
        None,
        "unknown values are omitted"
    );
    assert_eq!(event.fields.len(), want.len());
}

#[test]
fn identities_only_with_mtls_and_error_level_on_error() {
    let capture = Capture::default();
    let error = "connection reset by peer";
    capture.run(|| {
        complete(
            &labels(SecurityPolicy::Unknown),
            &addrs(),
            Totals::default(),
            Some(&error),
        )
    });
    let events = capture.events();
    let [event] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(event.level, tracing::Level::ERROR);
    assert_eq!(event.field("error"), Some(error));
    assert_eq!(event.field("src.identity"), None);
    assert_eq!(event.field("dst.identity"), None);
    assert_eq!(event.field("duration"), Some("0ms"));
}

#[test]
fn opened_is_debug_and_failed_is_warn() {
    let capture = Capture::default();
    capture.run(|| {
        opened(&labels(SecurityPolicy::MutualTls), &addrs());
        failed(
            &ConnectionAddrs {
                dst_hbone: None,
                ..addrs()
            },
            Direction::Outbound,
            &"timed out",
        );
    });
    let events = capture.events();
    let [opened, failed] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (opened.level, opened.field("message")),
        (tracing::Level::DEBUG, Some("connection opened"))
    );
    assert_eq!(opened.field("bytes_sent"), None);
    assert_eq!(
        (failed.level, failed.field("message")),
        (tracing::Level::WARN, Some("connection failed"))
    );
    let fields: Vec<_> = failed.fields.keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        ["direction", "dst.addr", "error", "message", "src.addr"]
    );
    assert_eq!(failed.field("direction"), Some("outbound"));
}
