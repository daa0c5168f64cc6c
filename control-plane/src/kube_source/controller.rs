//! The writer of what [`desired`](super::desired) computes: waypoint ServiceAccounts, Deployments, Services
//! and root-certificate ConfigMaps by server-side apply (field manager `control-plane`), and the `status` of
//! Gateways and routes through their status subresource. Only the leader runs it. What was written is
//! remembered, so an unchanged object or status is not written again; objects it made that are no longer
//! wanted (their Gateway is gone) are deleted (a cluster's garbage collector would also remove them through
//! their owner reference).
//!
//! RBAC: `get`, `create`, `patch`, `delete` on serviceaccounts, services, configmaps and deployments;
//! `patch` on `gateways/status`, `httproutes/status`, `grpcroutes/status`.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

use super::desired::{Settings, desired};
use super::store::Store;
use crate::manifest::ObjectKey;

const MANAGER: &str = "control-plane";

/// `(kind, namespace, name)` of an object the controller made.
type Made = (String, String, String);

pub struct Controller {
    client: Client,
    settings: Settings,
    made: BTreeMap<Made, Value>,
    statuses: BTreeMap<ObjectKey, Value>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("settings", &self.settings)
            .field("made", &self.made.len())
            .finish_non_exhaustive()
    }
}

/// Sets every empty `lastTransitionTime` under `v` to `now`.
fn stamp(v: &mut Value, now: &str) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "lastTransitionTime" && child.as_str() == Some("") {
                    *child = now.into();
                } else {
                    stamp(child, now);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| stamp(c, now)),
        _ => {}
    }
}

fn made_key(o: &Value) -> Made {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

impl Controller {
    pub fn new(client: Client, settings: Settings) -> Self {
        Controller {
            client,
            settings,
            made: BTreeMap::new(),
            statuses: BTreeMap::new(),
        }
    }

    /// Forgets what was written (on gaining leadership: another replica may have written since).
    pub fn forget(&mut self) {
        self.made.clear();
        self.statuses.clear();
    }

    fn api(&self, api_version: &str, kind: &str, ns: &str) -> Option<Api<DynamicObject>> {
        let ar = super::watch::api_resource(api_version, kind)?;
        Some(Api::namespaced_with(self.client.clone(), ns, &ar))
    }

    /// Makes the API server hold what the store implies. Failures are logged and retried next time.
    pub async fn reconcile(&mut self, store: &Store) {
        let want = desired(store, &self.settings);
        let now = Timestamp::now().to_string();
        let wanted: BTreeMap<Made, Value> = want
            .objects
            .into_iter()
            .map(|o| (made_key(&o), o))
            .collect();
        let gone: Vec<Made> = self
            .made
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            let Some(old) = self.made.remove(&key) else {
                continue;
            };
            let api_version = old["apiVersion"].as_str().unwrap_or_default();
            if let Some(api) = self.api(api_version, &key.0, &key.1) {
                match api.delete(&key.2, &DeleteParams::default()).await {
                    Ok(_) => {
                        tracing::info!(kind = key.0, namespace = key.1, name = key.2, "deleted")
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        tracing::warn!(kind = key.0, namespace = key.1, name = key.2, error = %e, "cannot delete")
                    }
                }
            }
        }
        let params = PatchParams::apply(MANAGER).force();
        for (key, object) in wanted {
            if self.made.get(&key) == Some(&object) {
                continue;
            }
            let api_version = object["apiVersion"].as_str().unwrap_or_default();
            let Some(api) = self.api(api_version, &key.0, &key.1) else {
                continue;
            };
            match api.patch(&key.2, &params, &Patch::Apply(&object)).await {
                Ok(_) => {
                    tracing::info!(kind = key.0, namespace = key.1, name = key.2, "applied");
                    self.made.insert(key, object);
                }
                Err(e) => {
                    tracing::warn!(kind = key.0, namespace = key.1, name = key.2, error = %e, "cannot apply")
                }
            }
        }
        for (key, api_version, status) in want.statuses {
            if self.statuses.get(&key) == Some(&status) {
                continue;
            }
            let Some(api) = self.api(&api_version, &key.kind, &key.namespace) else {
                continue;
            };
            let mut stamped = status.clone();
            stamp(&mut stamped, &now);
            let body = serde_json::json!({
                "apiVersion": api_version,
                "kind": key.kind,
                "metadata": {"name": key.name, "namespace": key.namespace},
                "status": stamped,
            });
            match api
                .patch_status(&key.name, &params, &Patch::Apply(&body))
                .await
            {
                Ok(_) => {
                    tracing::debug!(object = %key, "status written");
                    self.statuses.insert(key, status);
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => tracing::warn!(object = %key, error = %e, "cannot write the status"),
            }
        }
        self.statuses.retain(|k, _| store.get(k).is_some());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_empty_transition_times_are_stamped() {
        let mut v = json!({"conditions": [{"lastTransitionTime": ""}, {"lastTransitionTime": "2020-01-01T00:00:00Z"}],
            "listeners": [{"conditions": [{"lastTransitionTime": ""}]}]});
        stamp(&mut v, "NOW");
        assert_eq!(v["conditions"][0]["lastTransitionTime"], "NOW");
        assert_eq!(
            v["conditions"][1]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(
            v["listeners"][0]["conditions"][0]["lastTransitionTime"],
            "NOW"
        );
    }
}
