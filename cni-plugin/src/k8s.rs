//! The Kubernetes pod source of the node agent: watches (kube-runtime `watcher` + `reflector`, default backoff)
//! the Pods of this node (field selector `spec.nodeName=<NODE_NAME>`) and all Namespaces (for their labels), and
//! writes the `ambient.istio.io/redirection` annotation back ([`annotation`]).
//!
//! **Owns:** the API client, the two reflector stores, turning them into the informer's view ([`convert`]) and
//! the annotation patch. Every watch event wakes the agent's informer ([`KubePods::changed`]).
//! **Does not own:** any decision (the agent's `informer::plan`), or the pod netns, which is not in the API (the
//! agent takes it from CNI ADD, its own record, or [`crate::netns::find`]).
//!
//! # RBAC (what the node agent's ServiceAccount needs; the Helm chart should grant exactly this)
//!
//! | API group | resource      | verbs         | why                                                        |
//! |-----------|---------------|---------------|------------------------------------------------------------|
//! | `""`      | `pods`        | `list, watch` | the pod reflector (cluster-scoped, filtered by node name)  |
//! | `""`      | `namespaces`  | `list, watch` | the namespace reflector (`istio.io/dataplane-mode` label)  |
//! | `""`      | `pods/status` | `patch`       | the redirection annotation (as istio-cni: the status       |
//! |           |               |               | subresource may change metadata and is the lower privilege)|
//!
//! As a ClusterRole, since pods of every namespace may land on the node. Nothing is read with `get`, nothing is
//! created or deleted, and Nodes are not watched.

pub mod annotation;
pub mod convert;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::pods::{PodMeta, pod_key};

/// The field manager of our patches.
pub const FIELD_MANAGER: &str = "cni-agent";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("Kubernetes client configuration: {0}")]
    Client(#[source] kube::Error),
    #[error("patching pod {pod}: {source}")]
    Patch { pod: String, source: kube::Error },
}

/// A client from `kubeconfig`, or the default chain (`KUBECONFIG`, `~/.kube/config`, then in-cluster) when `None`.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, KubeError> {
    let Some(path) = kubeconfig else {
        return Client::try_default().await.map_err(KubeError::Client);
    };
    let err = |source| KubeError::Kubeconfig {
        path: path.into(),
        source,
    };
    let file = kube::config::Kubeconfig::read_from(path).map_err(err)?;
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .map_err(err)?;
    Client::try_from(config).map_err(KubeError::Client)
}

/// One pod of this node as the annotation write-back sees it (every pod of the node, also those left out of the
/// informer's view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePod {
    pub uid: String,
    /// The current `ambient.istio.io/redirection` value.
    pub redirection: Option<String>,
}

/// A consistent read of the stores.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct View {
    /// The informer's view (netns unset), keyed by `<namespace>/<name>`.
    pub pods: BTreeMap<String, PodMeta>,
    /// Pods whose namespace is not (yet) in the namespace store: their enrollment cannot be judged, so nothing is
    /// changed for them until it is.
    pub held: std::collections::BTreeSet<String>,
    /// Every pod of the node, for the annotation write-back.
    pub node_pods: BTreeMap<String, NodePod>,
}

/// The watches and their stores. Dropping it stops the watches.
pub struct KubePods {
    client: Client,
    node: String,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    changed: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl KubePods {
    /// Starts watching this node's pods and all namespaces.
    pub fn watch(client: Client, node: &str) -> Self {
        let changed = Arc::new(Notify::new());
        let pod_cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let (pods, pod_task) = reflect(
            Api::<Pod>::all(client.clone()),
            pod_cfg,
            changed.clone(),
            "pods",
        );
        let (namespaces, ns_task) = reflect(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
            changed.clone(),
            "namespaces",
        );
        Self {
            client,
            node: node.into(),
            pods,
            namespaces,
            changed,
            tasks: vec![pod_task, ns_task],
        }
    }

    /// Returns once both stores hold a complete first list (waits as long as the API server is unreachable: the
    /// agent must not judge pods on an empty view).
    pub async fn synced(&self) {
        let _ = self.pods.wait_until_ready().await;
        let _ = self.namespaces.wait_until_ready().await;
    }

    /// Returns after the next watch event (or at once if one arrived since the last call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        let ns = self.namespaces.get(&ObjectRef::new(namespace))?;
        Some(ns.labels().clone())
    }

    fn is_mine(&self, pod: &Pod) -> bool {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        node == Some(self.node.as_str())
    }

    /// The current view of this node's pods.
    pub fn view(&self) -> View {
        let mut view = View::default();
        for pod in self.pods.state() {
            if !self.is_mine(&pod) {
                continue;
            }
            let (Some(ns), Some(name)) = (pod.metadata.namespace.as_deref(), &pod.metadata.name)
            else {
                continue;
            };
            let key = pod_key(ns, name);
            view.node_pods.insert(
                key.clone(),
                NodePod {
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                    redirection: pod
                        .annotations()
                        .get(annotation::REDIRECTION_ANNOTATION)
                        .cloned(),
                },
            );
            let Some(ns_labels) = self.namespace_labels(ns) else {
                view.held.insert(key);
                continue;
            };
            match convert::pod_meta(&pod, &ns_labels) {
                Ok(meta) => {
                    view.pods.insert(key, meta);
                }
                Err(why) => tracing::trace!(pod = %key, ?why, "pod left out of the view"),
            }
        }
        view
    }

    /// One pod of this node; `None` while it (or its namespace) is not in the stores, or when it is left out of
    /// the view (host network, terminal).
    pub fn get(&self, namespace: &str, name: &str) -> Option<PodMeta> {
        let pod = self.pods.get(&ObjectRef::new(name).within(namespace))?;
        if !self.is_mine(&pod) {
            return None;
        }
        convert::pod_meta(&pod, &self.namespace_labels(namespace)?).ok()
    }

    /// Sets (`Some`) or removes (`None`) the redirection annotation: a JSON merge patch of the `status` subresource
    /// (as istio-cni), field manager [`FIELD_MANAGER`]. Removing it from a pod that is gone succeeds.
    pub async fn set_redirection(
        &self,
        namespace: &str,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), KubeError> {
        let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let body = annotation::patch_body(value);
        match api.patch_status(name, &params, &Patch::Merge(&body)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if value.is_none() && s.is_not_found() => Ok(()),
            Err(source) => Err(KubeError::Patch {
                pod: pod_key(namespace, name),
                source,
            }),
        }
    }
}

impl Drop for KubePods {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Runs a reflector for `api` in its own task; every event notifies `changed`. Managed fields are dropped (they
/// are most of a stored object and we never read them).
fn reflect<K>(
    api: Api<K>,
    cfg: watcher::Config,
    changed: Arc<Notify>,
    what: &'static str,
) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, cfg)
        .modify(|o| o.managed_fields_mut().clear())
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(e) => {
                    tracing::warn!(resource = what, error = %e, "Kubernetes watch failed; retrying")
                }
            }
        }
    });
    (reader, task)
}
