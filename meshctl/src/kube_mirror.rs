//! The local mesh on a real Kubernetes API server (`meshctl up --kubeconfig`): the daemon plays the part of
//! its nodes' kubelets and of the controllers a cluster would run, and the control plane reads the cluster
//! from the API server exactly as it does on a real cluster.
//!
//! What the daemon writes, with server-side apply (field manager `meshctl`, label `meshctl.dev/mesh=<mesh>`):
//! the namespaces and service accounts of the mesh, every object the control plane reads (the same documents
//! the file source gets, see `control_plane::documents`), and each running pod with its node — then the pod's
//! `status` (IP, phase, `Ready`) through the status subresource, as a kubelet does. Objects it wrote that are
//! gone from the mesh are deleted (pods with no grace period: there is no kubelet to confirm). Objects others
//! write to the API server (`kubectl apply` of a policy) are never touched.

use std::collections::BTreeMap;
use std::path::Path;

use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::error::Error;

/// Label on every object the mesh writes.
pub const MESH_LABEL: &str = "meshctl.dev/mesh";
const MANAGER: &str = "meshctl";

/// `(kind, namespace, name)`.
type Key = (String, String, String);

/// The link to the API server and what was written so far.
pub struct KubeMirror {
    runtime: tokio::runtime::Runtime,
    client: Client,
    mesh: String,
    /// Every object written, as written (without status).
    written: BTreeMap<Key, Value>,
    /// Each pod's status as last written.
    statuses: BTreeMap<Key, Value>,
}

impl std::fmt::Debug for KubeMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeMirror")
            .field("mesh", &self.mesh)
            .field("written", &self.written.len())
            .finish_non_exhaustive()
    }
}

fn err(detail: impl std::fmt::Display) -> Error {
    Error::Usage(format!("Kubernetes API server: {detail}"))
}

fn key_of(doc: &Value) -> Key {
    let s = |p: &str| {
        doc.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

/// Order of writing: namespaces, then service accounts (pods need them), then everything else, pods last.
fn rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "ServiceAccount" => 1,
        "Pod" => 3,
        _ => 2,
    }
}

impl KubeMirror {
    /// Connects with `kubeconfig` and checks that the API server answers.
    pub fn connect(kubeconfig: &Path, mesh: &str) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(err)?;
        let client = runtime.block_on(async {
            let kc = Kubeconfig::read_from(kubeconfig)
                .map_err(|e| err(format!("{}: {e}", kubeconfig.display())))?;
            let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| err(format!("{}: {e}", kubeconfig.display())))?;
            let client = Client::try_from(config).map_err(err)?;
            client.apiserver_version().await.map_err(err)?;
            Ok::<_, Error>(client)
        })?;
        Ok(KubeMirror {
            runtime,
            client,
            mesh: mesh.to_owned(),
            written: BTreeMap::new(),
            statuses: BTreeMap::new(),
        })
    }

    /// Makes the API server hold exactly `docs` (of those the mesh writes): applies what is new or changed,
    /// deletes what is gone. Pod documents carry their `status`, written through the status subresource.
    pub fn sync(&mut self, docs: Vec<Value>) -> Result<(), Error> {
        let mut want: BTreeMap<Key, (Value, Option<Value>)> = BTreeMap::new();
        for mut doc in docs {
            let status = doc.as_object_mut().and_then(|m| m.remove("status"));
            if let Some(labels) = doc
                .pointer_mut("/metadata")
                .and_then(Value::as_object_mut)
                .map(|m| m.entry("labels").or_insert_with(|| json!({})))
                .and_then(Value::as_object_mut)
            {
                labels.insert(MESH_LABEL.into(), self.mesh.clone().into());
            }
            want.insert(key_of(&doc), (doc, status));
        }
        let gone: Vec<Key> = self
            .written
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        let mut gone_sorted = gone;
        gone_sorted.sort_by_key(|k| std::cmp::Reverse(rank(&k.0)));
        for key in gone_sorted {
            if let Some(doc) = self.written.remove(&key) {
                self.delete(&doc)?;
            }
            self.statuses.remove(&key);
        }
        let mut order: Vec<&Key> = want.keys().collect();
        order.sort_by_key(|k| rank(&k.0));
        for key in order {
            let (doc, status) = &want[key];
            if self.written.get(key) != Some(doc) {
                self.apply(doc)?;
                self.written.insert(key.clone(), doc.clone());
                self.statuses.remove(key);
            }
            if let Some(status) = status
                && self.statuses.get(key) != Some(status)
            {
                self.apply_status(doc, status)?;
                self.statuses.insert(key.clone(), status.clone());
            }
        }
        Ok(())
    }

    fn api(&self, doc: &Value) -> Result<(Api<DynamicObject>, String), Error> {
        let (kind, ns, name) = key_of(doc);
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ar = control_plane::kube_source::watch::api_resource(api_version, &kind)
            .ok_or_else(|| err(format!("the mesh does not write {kind} objects")))?;
        let api = if kind == "Namespace" {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), &ns, &ar)
        };
        Ok((api, name))
    }

    fn apply(&self, doc: &Value) -> Result<(), Error> {
        let (api, name) = self.api(doc)?;
        let params = PatchParams::apply(MANAGER).force();
        self.runtime.block_on(async {
            match api.patch(&name, &params, &Patch::Apply(doc)).await {
                Ok(_) => Ok(()),
                // A pod's spec is immutable: a changed pod (one that exists) is a new pod.
                Err(kube::Error::Api(s))
                    if s.code == 422
                        && key_of(doc).0 == "Pod"
                        && self.written_pod(&api, &name).await =>
                {
                    api.delete(&name, &DeleteParams::default().grace_period(0))
                        .await
                        .map_err(err)?;
                    api.patch(&name, &params, &Patch::Apply(doc))
                        .await
                        .map(|_| ())
                        .map_err(|e| err(format!("applying {}: {e}", display(doc))))
                }
                Err(e) => Err(err(format!("applying {}: {e}", display(doc)))),
            }
        })
    }

    /// Whether pod `name` exists.
    async fn written_pod(&self, api: &Api<DynamicObject>, name: &str) -> bool {
        matches!(api.get_opt(name).await, Ok(Some(_)))
    }

    fn apply_status(&self, doc: &Value, status: &Value) -> Result<(), Error> {
        let (api, name) = self.api(doc)?;
        let patch = json!({
            "apiVersion": doc.get("apiVersion"),
            "kind": doc.get("kind"),
            "metadata": {"name": name, "namespace": doc.pointer("/metadata/namespace")},
            "status": status,
        });
        self.runtime.block_on(async {
            api.patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map(|_| ())
            .map_err(|e| err(format!("writing the status of {}: {e}", display(doc))))
        })
    }

    fn delete(&self, doc: &Value) -> Result<(), Error> {
        let (api, name) = self.api(doc)?;
        self.runtime.block_on(async {
            match api
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(err(format!("deleting {}: {e}", display(doc)))),
            }
        })
    }

    /// Deletes everything the mesh wrote (at `down`).
    pub fn clear(&mut self) -> Result<(), Error> {
        self.sync(Vec::new())
    }
}

fn display(doc: &Value) -> String {
    let (kind, ns, name) = key_of(doc);
    if ns.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {ns}/{name}")
    }
}

/// The image the API server is told a local-mesh container runs (it requires one; the local mesh runs the
/// container's `command` as a process instead).
pub const LOCAL_IMAGE: &str = "meshctl.dev/local-process";

/// A pod document as a kubelet would report it: `status.phase`, `podIP(s)`, `hostIP` and `Ready`; owner
/// references with the `uid` the API server requires (the local mesh's owners are not API objects); and an
/// image for containers that have none ([`LOCAL_IMAGE`]).
pub fn kubelet_view(mut pod: Value, host_ip: Option<String>) -> Value {
    if let Some(containers) = pod
        .pointer_mut("/spec/containers")
        .and_then(Value::as_array_mut)
    {
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            c.entry("image").or_insert_with(|| LOCAL_IMAGE.into());
        }
    }
    if let Some(refs) = pod
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        for r in refs.iter_mut() {
            let name = r
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Some(m) = r.as_object_mut() {
                m.entry("uid")
                    .or_insert_with(|| format!("meshctl-{name}").into());
            }
        }
    }
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": true,
                        "started": true, "restartCount": 0, "state": {"running": {}}})
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(status) = pod.get_mut("status").and_then(Value::as_object_mut) {
        status.insert("containerStatuses".into(), containers.into());
        let ip = status.get("podIP").cloned();
        status.insert("phase".into(), "Running".into());
        if let Some(ip) = ip {
            status.insert("podIPs".into(), json!([{"ip": ip}]));
        }
        if let Some(h) = host_ip {
            status.insert("hostIP".into(), h.into());
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pods_are_written_last_and_deleted_first() {
        let mut kinds = vec![
            "Pod",
            "Service",
            "Namespace",
            "ServiceAccount",
            "AuthorizationPolicy",
        ];
        kinds.sort_by_key(|k| rank(k));
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "Service",
                "AuthorizationPolicy",
                "Pod"
            ]
        );
    }

    #[test]
    fn the_kubelet_view_has_phase_ips_and_owner_uids() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "ownerReferences": [{"kind": "Deployment", "name": "d"}]},
            "spec": {"containers": [{"name": "c", "command": ["sleep"]}, {"name": "d", "image": "x"}]},
            "status": {"podIP": "10.244.0.5", "conditions": [{"type": "Ready", "status": "True"}]}});
        let v = kubelet_view(pod, Some("172.18.0.10".into()));
        assert_eq!(v["status"]["phase"], "Running");
        assert_eq!(v["status"]["podIPs"][0]["ip"], "10.244.0.5");
        assert_eq!(v["status"]["hostIP"], "172.18.0.10");
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "meshctl-d");
        assert_eq!(v["spec"]["containers"][0]["image"], LOCAL_IMAGE);
        assert_eq!(v["status"]["containerStatuses"][0]["name"], "c");
        assert_eq!(v["status"]["containerStatuses"][0]["image"], LOCAL_IMAGE);
        assert_eq!(v["spec"]["containers"][1]["image"], "x");
    }
}
