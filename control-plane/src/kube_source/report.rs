//! Telling users about objects that are not applied, as istiod does: a `Warning` Event on the object
//! (`kubectl describe` and `kubectl get events` show it), a log line, and metrics by kind.
//!
//! Each rejection is reported once per object version and reason: a re-translation that rejects the same
//! object again says nothing new.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::manifest::ObjectKey;

/// The Event reason of a rejected object.
pub const REASON: &str = "ConfigurationRejected";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// `control_plane_rejected_objects{kind}` (now) and `control_plane_object_rejections_total{kind}`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    rejected: Family<KindLabel, Gauge>,
    rejections: Family<KindLabel, Counter>,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "control_plane_rejected_objects",
            "Objects from the API server that are not applied (bad or untranslatable), by kind",
            self.rejected.clone(),
        );
        registry.register(
            "control_plane_object_rejections",
            "Rejections of an object version, by kind",
            self.rejections.clone(),
        );
    }
}

/// One object that is not applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    pub object: String,
    pub error: String,
    #[serde(skip)]
    pub key: ObjectKey,
    #[serde(skip)]
    pub api_version: String,
    #[serde(skip)]
    pub uid: String,
    #[serde(skip)]
    pub resource_version: String,
}

/// Reports rejections once each.
pub struct Reports {
    recorder: Option<Recorder>,
    metrics: Metrics,
    /// What was reported for each object: `(uid, resource version, error)`.
    reported: BTreeMap<ObjectKey, (String, String, String)>,
    /// Whether this replica writes Events (the leader does; logs and metrics come from every replica).
    leading: bool,
    /// The rejections of the last update, reported again as Events when this replica becomes the leader.
    last: Vec<Rejected>,
}

impl Reports {
    /// `client`: where Events go (`None`: logs and metrics only).
    pub fn new(client: Option<Client>, instance: Option<String>, metrics: Metrics) -> Self {
        let recorder = client.map(|c| {
            Recorder::new(
                c,
                Reporter {
                    controller: "control-plane".into(),
                    instance,
                },
            )
        });
        Reports {
            recorder,
            metrics,
            reported: BTreeMap::new(),
            leading: false,
            last: Vec::new(),
        }
    }

    /// Whether this replica leads. Gaining leadership reports the current rejections as Events.
    pub fn set_leading(&mut self, leading: bool) {
        let gained = leading && !self.leading;
        self.leading = leading;
        if gained {
            self.reported.clear();
            let last = std::mem::take(&mut self.last);
            self.update(&last);
        }
    }

    /// Reports what is new in `rejected` (the complete current list) and updates the gauges.
    pub fn update(&mut self, rejected: &[Rejected]) {
        let mut now: BTreeMap<String, i64> = BTreeMap::new();
        let mut still = BTreeMap::new();
        for r in rejected {
            *now.entry(r.key.kind.clone()).or_default() += 1;
            let stamp = (r.uid.clone(), r.resource_version.clone(), r.error.clone());
            if self.reported.get(&r.key) != Some(&stamp) {
                tracing::warn!(object = %r.key, error = %r.error, "object rejected; the rest of the configuration applies");
                self.metrics
                    .rejections
                    .get_or_create(&KindLabel {
                        kind: r.key.kind.clone(),
                    })
                    .inc();
                self.publish(r);
            }
            still.insert(r.key.clone(), stamp);
        }
        for old in self.reported.keys().filter(|k| !still.contains_key(*k)) {
            tracing::info!(object = %old, "object no longer rejected");
            now.entry(old.kind.clone()).or_default();
        }
        for (kind, n) in now {
            self.metrics
                .rejected
                .get_or_create(&KindLabel { kind })
                .set(n);
        }
        self.reported = still;
        self.last = rejected.to_vec();
    }

    fn publish(&self, r: &Rejected) {
        let Some(recorder) = self.recorder.clone().filter(|_| self.leading) else {
            return;
        };
        let reference = ObjectReference {
            api_version: Some(r.api_version.clone()),
            kind: Some(r.key.kind.clone()),
            name: Some(r.key.name.clone()),
            namespace: (!r.key.namespace.is_empty()).then(|| r.key.namespace.clone()),
            uid: (!r.uid.is_empty()).then(|| r.uid.clone()),
            resource_version: (!r.resource_version.is_empty()).then(|| r.resource_version.clone()),
            field_path: None,
        };
        // Event notes are limited to 1 kB by the API server.
        let note: String = r.error.chars().take(1000).collect();
        let key = r.key.clone();
        tokio::spawn(async move {
            let event = Event {
                type_: EventType::Warning,
                reason: REASON.into(),
                note: Some(note),
                action: "Translate".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(object = %key, error = %e, "cannot write the rejection Event");
            }
        });
    }
}
