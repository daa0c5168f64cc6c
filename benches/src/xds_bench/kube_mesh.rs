//! The benchmark's mesh written through a Kubernetes API server instead of a directory: the
//! objects of [`manifests`] (parsed from the same YAML), created with the kube client as a user
//! or a controller would — the namespace, then its ServiceAccounts (nothing else creates them
//! here), Services and policies, then each pod followed by a status patch carrying what a
//! kubelet would report (`podIP`, Running, Ready). Requests run concurrently, at most
//! `concurrency` in flight, each bounded by [`REQUEST_LIMIT`]; the first error stops the rest.
//!
//! It also reads the CPU time of the API server's processes, to show how much of a run is theirs.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use control_plane::kube_source::watch::KINDS;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::manifests::{self, NAMESPACE, SERVICES};

/// Longest one API request may take.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);

/// The mesh as API objects, built before any clock starts.
pub(crate) struct ApiMesh {
    namespace: Value,
    /// ServiceAccounts, Services and AuthorizationPolicies: after the namespace, before the pods.
    others: Vec<Value>,
    /// Each pod (without status) and its status patch.
    pods: Vec<(Value, Value)>,
}

/// The documents of a multi-document YAML text, as JSON.
fn documents(text: &str) -> Result<Vec<Value>> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).context("the generated YAML does not parse"))
        .collect()
}

/// What a kubelet reports for a started, ready pod.
fn status_patch(i: usize) -> Value {
    let ip = manifests::pod_ip(i).to_string();
    json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "ContainersReady", "status": "True"},
        ],
    }})
}

impl ApiMesh {
    /// The mesh of `pods` pods (pod 0 at revision 0), as [`manifests::write_mesh`] writes it.
    pub(crate) fn new(pods: usize) -> Result<ApiMesh> {
        let mut namespace = None;
        let mut others: Vec<Value> = ["default".to_owned()]
            .into_iter()
            .chain((0..SERVICES).map(|j| format!("sa-{j}")))
            .map(|name| {
                json!({"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": name, "namespace": NAMESPACE}})
            })
            .collect();
        for doc in documents(&manifests::cluster_objects())? {
            if doc["kind"] == "Namespace" {
                namespace = Some(doc);
            } else {
                others.push(doc);
            }
        }
        let pods = (0..pods)
            .map(|i| {
                let mut pod = documents(&manifests::pod(i, 0))?
                    .pop()
                    .context("an empty pod document")?;
                if let Some(map) = pod.as_object_mut() {
                    map.remove("status");
                }
                Ok((pod, status_patch(i)))
            })
            .collect::<Result<_>>()?;
        Ok(ApiMesh {
            namespace: namespace.context("the generated mesh has no namespace")?,
            others,
            pods,
        })
    }

    /// Every object as the API server would list it once the pods run: status merged in, with a
    /// uid and a resource version, and the kind's name as the control plane's watches give it.
    pub(crate) fn as_listed(&self) -> Vec<(&'static str, Value)> {
        let pods = self.pods.iter().map(|(pod, status)| {
            let mut pod = pod.clone();
            pod["status"] = status["status"].clone();
            pod
        });
        std::iter::once(self.namespace.clone())
            .chain(self.others.iter().cloned())
            .chain(pods)
            .enumerate()
            .filter_map(|(i, mut object)| {
                let kind = KINDS.iter().find(|k| object["kind"] == k.kind)?.kind;
                object["metadata"]["uid"] = json!(format!("uid-{i}"));
                object["metadata"]["resourceVersion"] = json!(format!("{}", i + 1));
                Some((kind, object))
            })
            .collect()
    }

    /// Creates everything through `client`, at most `concurrency` requests in flight.
    pub(crate) async fn create(self, client: Client, concurrency: usize) -> Result<()> {
        create(&client, &self.namespace).await?;
        let others = self.others.into_iter().map(|o| {
            let client = client.clone();
            async move { create(&client, &o).await }
        });
        all(others, concurrency).await?;
        let pods = self.pods.into_iter().map(|(pod, status)| {
            let client = client.clone();
            async move {
                create(&client, &pod).await?;
                let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                bounded(api_for(&client, &pod)?.patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                ))
                .await
                .with_context(|| format!("patching the status of Pod {name}"))?;
                Ok(())
            }
        });
        all(pods, concurrency).await
    }
}

/// Sets pod 0's `version` label to `v{revision}` (the change the file source makes).
pub(crate) async fn set_revision(client: &Client, revision: u32) -> Result<()> {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": "pod-0", "namespace": NAMESPACE}});
    let patch = json!({"metadata": {"labels": {"version": format!("v{revision}")}}});
    bounded(api_for(client, &pod)?.patch("pod-0", &PatchParams::default(), &Patch::Merge(&patch)))
        .await
        .context("patching the label of Pod pod-0")?;
    Ok(())
}

/// The API of `object`'s kind (one the control plane watches), in its namespace if it has one.
fn api_for(client: &Client, object: &Value) -> Result<Api<DynamicObject>> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = KINDS
        .iter()
        .find(|k| k.kind == kind)
        .with_context(|| format!("the control plane does not watch {kind}"))?
        .resource();
    Ok(match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    })
}

async fn create(client: &Client, object: &Value) -> Result<()> {
    let what = format!(
        "creating {} {}",
        object["kind"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    );
    let dynamic: DynamicObject = serde_json::from_value(object.clone()).context(what.clone())?;
    bounded(api_for(client, object)?.create(&PostParams::default(), &dynamic))
        .await
        .context(what)?;
    Ok(())
}

/// One request, bounded by [`REQUEST_LIMIT`].
async fn bounded<T>(request: impl Future<Output = kube::Result<T>>) -> Result<T> {
    Ok(tokio::time::timeout(REQUEST_LIMIT, request)
        .await
        .with_context(|| format!("no answer within {REQUEST_LIMIT:?}"))??)
}

/// Runs `jobs` as tasks, at most `concurrency` at once; the first error aborts the others.
async fn all<F>(jobs: impl IntoIterator<Item = F>, concurrency: usize) -> Result<()>
where
    F: Future<Output = Result<()>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for job in jobs {
        while tasks.len() >= concurrency.max(1) {
            joined(tasks.join_next().await)?;
        }
        tasks.spawn(job);
    }
    while let Some(done) = tasks.join_next().await {
        joined(Some(done))?;
    }
    Ok(())
}

fn joined(done: Option<Result<Result<()>, tokio::task::JoinError>>) -> Result<()> {
    match done {
        Some(Ok(r)) => r,
        Some(Err(e)) => bail!("a request task failed: {e}"),
        None => Ok(()),
    }
}

/// CPU time (user + system) so far of the API server, its etcd and this process, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cpu {
    pub(crate) apiserver: f64,
    pub(crate) etcd: f64,
    pub(crate) bench: f64,
}

impl Cpu {
    /// Reads the processes `scripts/kube.sh up` recorded in `dir/pids` (and this one).
    pub(crate) fn read(dir: &Path) -> Result<Cpu> {
        let pids = std::fs::read_to_string(dir.join("pids"))
            .with_context(|| format!("{}/pids", dir.display()))?;
        let pid = |name: &str| {
            pids.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .map(str::trim)
                .with_context(|| format!("no {name} in {}/pids", dir.display()))
        };
        Ok(Cpu {
            apiserver: cpu_seconds(pid("kube-apiserver")?)?,
            etcd: cpu_seconds(pid("etcd")?)?,
            bench: cpu_seconds("self")?,
        })
    }

    /// What was spent since `before`.
    pub(crate) fn since(self, before: Cpu) -> Cpu {
        Cpu {
            apiserver: self.apiserver - before.apiserver,
            etcd: self.etcd - before.etcd,
            bench: self.bench - before.bench,
        }
    }
}

/// utime + stime of `/proc/<pid>/stat`, in seconds (USER_HZ is 100 on Linux).
pub(crate) fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may hold spaces: state is the first, utime the 12th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat has no field {}", i + 3))
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn the_api_mesh_is_the_manifest_mesh_with_service_accounts() {
        let mesh = ApiMesh::new(3).unwrap();
        assert_eq!(mesh.namespace["metadata"]["name"], NAMESPACE);
        let kinds: Vec<&str> = mesh
            .others
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "ServiceAccount").count(),
            SERVICES + 1
        );
        assert_eq!(kinds.iter().filter(|k| **k == "Service").count(), SERVICES);
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == "AuthorizationPolicy")
                .count(),
            manifests::POLICIES
        );
        let (pod, status) = &mesh.pods[2];
        assert_eq!(pod["metadata"]["labels"]["version"], "v0");
        assert!(pod.get("status").is_none());
        assert_eq!(status["status"]["podIP"], "10.0.0.3");
        assert!(cpu_seconds("self").unwrap() >= 0.0);
    }
}
