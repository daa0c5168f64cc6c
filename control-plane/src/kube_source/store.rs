//! The objects the API server holds, as the translation reads them (pure; no I/O).
//!
//! Each object is parsed once, when its watch event arrives, into a [`ManifestObject`] — or into the error
//! that keeps it out, which is reported on that object while every other object keeps applying. A re-list
//! (the watch restarted) replaces one kind's objects as a whole at its end, so objects deleted while the
//! watch was down go away and the others never flicker.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::manifest::{ManifestError, ManifestObject, ObjectKey, Source, parse_document};

/// Where objects of the Kubernetes source say they came from (in errors and logs).
pub const SOURCE: &str = "apiserver";

/// One change from a watch, already reduced to what the store needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The watch of `kind` (re)started: a full list follows, ended by [`Change::Listed`].
    Relist { kind: &'static str },
    /// An object as the API server returns it (JSON), with its `apiVersion` and `kind` set.
    Apply { kind: &'static str, object: Value },
    /// The object was deleted.
    Delete { kind: &'static str, object: Value },
    /// The list that followed [`Change::Relist`] is complete.
    Listed { kind: &'static str },
    /// The kind's resource does not exist on this API server (its CRD is not installed): it holds nothing.
    Absent { kind: &'static str },
}

/// What is known of one object.
#[derive(Debug, Clone)]
pub struct Entry {
    pub uid: String,
    pub api_version: String,
    pub resource_version: String,
    /// `metadata.generation` (0 when the kind has none).
    pub generation: i64,
    /// The parsed object, or why it is not applied.
    pub parsed: Result<ManifestObject, ManifestError>,
}

/// Every object of the watched kinds.
#[derive(Debug, Default)]
pub struct Store {
    entries: BTreeMap<ObjectKey, Entry>,
    /// Kinds being re-listed, with the keys seen so far.
    relisting: BTreeMap<&'static str, BTreeSet<ObjectKey>>,
    /// Kinds whose first list is complete (or that do not exist).
    synced: BTreeSet<&'static str>,
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The key of an object as the API server returns it (cluster-scoped kinds have no namespace).
pub fn key_of(kind: &str, object: &Value) -> ObjectKey {
    let namespaced = !matches!(kind, "Namespace" | "Node");
    ObjectKey {
        kind: kind.to_owned(),
        namespace: if namespaced {
            str_at(object, &["metadata", "namespace"]).to_owned()
        } else {
            String::new()
        },
        name: str_at(object, &["metadata", "name"]).to_owned(),
    }
}

/// What is parsed of a Node: its name, uid and labels (the translation reads its topology labels); not its
/// status, which kubelets rewrite all the time.
fn node_essentials(object: &Value) -> Value {
    let meta = &object["metadata"];
    let mut kept = serde_json::Map::new();
    for field in ["name", "uid", "labels"] {
        if let Some(v) = meta.get(field) {
            kept.insert(field.to_owned(), v.clone());
        }
    }
    serde_json::json!({"apiVersion": object["apiVersion"], "kind": "Node", "metadata": kept})
}

/// Parses one object with the same parser and per-object rules as manifest files.
pub fn parse(object: &Value) -> Result<ManifestObject, ManifestError> {
    let yaml = serde_yaml_ng::to_value(object)
        .map_err(|e| ManifestError::new(format!("cannot read the object: {e}")))?;
    parse_document(
        Source {
            file: SOURCE.to_owned(),
            document: 0,
        },
        yaml,
    )
}

impl Store {
    /// Applies one change; `true` when what the translation reads may have changed.
    pub fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Relist { kind } => {
                self.relisting.insert(kind, BTreeSet::new());
                false
            }
            Change::Apply { kind, object } => {
                let key = key_of(kind, &object);
                if let Some(seen) = self.relisting.get_mut(kind) {
                    seen.insert(key.clone());
                }
                let resource_version = str_at(&object, &["metadata", "resourceVersion"]);
                if let Some(old) = self.entries.get(&key)
                    && !resource_version.is_empty()
                    && old.resource_version == resource_version
                {
                    return false;
                }
                // A Node's status changes every few seconds; only its labels are read, so an update
                // that leaves them alone changes nothing that is translated.
                let parsed = if kind == "Node" {
                    parse(&node_essentials(&object))
                } else {
                    parse(&object)
                };
                if kind == "Node"
                    && let Some(old) = self.entries.get_mut(&key)
                    && matches!((&old.parsed, &parsed), (Ok(a), Ok(b)) if a == b)
                {
                    old.resource_version = resource_version.to_owned();
                    return false;
                }
                let entry = Entry {
                    uid: str_at(&object, &["metadata", "uid"]).to_owned(),
                    api_version: str_at(&object, &["apiVersion"]).to_owned(),
                    resource_version: resource_version.to_owned(),
                    generation: object
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or_default(),
                    parsed,
                };
                self.entries.insert(key, entry);
                true
            }
            Change::Delete { kind, object } => {
                self.entries.remove(&key_of(kind, &object)).is_some()
            }
            Change::Listed { kind } => {
                let seen = self.relisting.remove(kind).unwrap_or_default();
                let before = self.entries.len();
                self.entries
                    .retain(|k, _| k.kind != kind || seen.contains(k));
                let first = self.synced.insert(kind);
                first || self.entries.len() != before
            }
            Change::Absent { kind } => {
                let before = self.entries.len();
                self.entries.retain(|k, _| k.kind != kind);
                let first = self.synced.insert(kind);
                first || self.entries.len() != before
            }
        }
    }

    /// Whether every one of `kinds` has been listed once.
    pub fn synced(&self, kinds: &[&'static str]) -> bool {
        kinds.iter().all(|k| self.synced.contains(k))
    }

    /// The objects that parsed, in key order.
    pub fn objects(&self) -> Vec<ManifestObject> {
        self.entries
            .values()
            .filter_map(|e| e.parsed.as_ref().ok().cloned())
            .collect()
    }

    /// The objects that did not parse, with their errors.
    pub fn rejected(&self) -> impl Iterator<Item = (&ObjectKey, &Entry, &ManifestError)> {
        self.entries
            .iter()
            .filter_map(|(k, e)| e.parsed.as_ref().err().map(|err| (k, e, err)))
    }

    /// Every object, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&ObjectKey, &Entry)> {
        self.entries.iter()
    }

    /// One object's entry.
    pub fn get(&self, key: &ObjectKey) -> Option<&Entry> {
        self.entries.get(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn pod(name: &str, rv: &str, command: Option<&str>) -> Value {
        let mut c = json!({"name": "c", "image": "nginx"});
        if let Some(cmd) = command {
            c["command"] = json!(cmd);
        }
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "resourceVersion": rv},
               "spec": {"containers": [c]}})
    }

    fn apply(store: &mut Store, object: Value) -> bool {
        store.apply(Change::Apply {
            kind: "Pod",
            object,
        })
    }

    #[test]
    fn a_bad_object_is_kept_out_with_its_error_and_the_others_apply() {
        let mut s = Store::default();
        assert!(apply(&mut s, pod("good", "1", None)));
        // `command` must be a list: this one cannot be read.
        assert!(apply(&mut s, pod("bad", "2", Some("not-a-list"))));
        assert_eq!(s.objects().len(), 1);
        let rejected: Vec<_> = s
            .rejected()
            .map(|(k, _, e)| (k.name.clone(), e.to_string()))
            .collect();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, "bad");
        assert!(
            rejected[0]
                .1
                .starts_with("apiserver: Pod ns/bad: spec.containers[0].command"),
            "{}",
            rejected[0].1
        );
        // Fixing it makes it apply.
        let mut fixed = pod("bad", "3", None);
        fixed["spec"]["containers"][0]["command"] = json!(["sleep"]);
        assert!(apply(&mut s, fixed));
        assert_eq!(s.objects().len(), 2);
        assert_eq!(s.rejected().count(), 0);
    }

    #[test]
    fn an_unchanged_resource_version_is_not_a_change() {
        let mut s = Store::default();
        assert!(apply(&mut s, pod("a", "7", None)));
        assert!(!apply(&mut s, pod("a", "7", None)));
        assert!(apply(&mut s, pod("a", "8", None)));
    }

    #[test]
    fn a_relist_drops_what_was_deleted_meanwhile_and_only_that_kind() {
        let mut s = Store::default();
        assert!(!s.synced(&["Pod", "Service"]));
        s.apply(Change::Relist { kind: "Pod" });
        apply(&mut s, pod("a", "1", None));
        apply(&mut s, pod("b", "1", None));
        assert!(s.apply(Change::Listed { kind: "Pod" }));
        assert!(s.apply(Change::Absent { kind: "Service" }));
        assert!(s.synced(&["Pod", "Service"]));
        // The watch restarts; `b` was deleted while it was down.
        s.apply(Change::Relist { kind: "Pod" });
        apply(&mut s, pod("a", "1", None));
        assert_eq!(s.len(), 2, "nothing is dropped before the list ends");
        assert!(s.apply(Change::Listed { kind: "Pod" }));
        let names: Vec<_> = s.objects().iter().map(|o| o.object.key().name).collect();
        assert_eq!(names, vec!["a"]);
        assert!(s.apply(Change::Delete {
            kind: "Pod",
            object: pod("a", "2", None)
        }));
        assert!(s.is_empty());
    }

    #[test]
    fn cluster_scoped_kinds_have_no_namespace_in_their_key() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "namespace": "x"}});
        assert_eq!(key_of("Namespace", &ns).to_string(), "Namespace shop");
        assert_eq!(key_of("Pod", &pod("p", "1", None)).to_string(), "Pod ns/p");
    }

    #[test]
    fn a_node_counts_as_changed_only_when_its_labels_change() {
        let node = |rv: &str, zone: &str, heartbeat: &str| {
            json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "uid": "u1", "resourceVersion": rv,
                    "labels": {"topology.kubernetes.io/zone": zone}},
                "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": heartbeat}]}})
        };
        let mut s = Store::default();
        let mut put = |o: Value| {
            s.apply(Change::Apply {
                kind: "Node",
                object: o,
            })
        };
        assert!(put(node("1", "a", "t1")));
        assert!(!put(node("2", "a", "t2")), "a heartbeat is not a change");
        assert!(put(node("3", "b", "t3")));
        assert_eq!(key_of("Node", &node("1", "a", "t")).to_string(), "Node n1");
        let parsed = &s.objects()[0];
        assert!(
            serde_json::to_value(&parsed.object)
                .unwrap()
                .get("status")
                .is_none(),
            "only the labels are kept"
        );
    }
}
