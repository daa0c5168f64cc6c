//! The pod source: what the node agent and the plugin know about pods (the informer's view).
//!
//! There is no Kubernetes API server in the local mesh. Pod metadata is a directory of JSON files, one per pod,
//! named `<namespace>.<name>.json`, written atomically (rename) by whoever creates pods (meshctl) before CNI ADD and
//! rewritten or removed as the pod changes:
//!
//! ```json
//! {"uid": "…", "name": "client", "namespace": "demo", "serviceAccount": "client", "node": "node1",
//!  "labels": {"app": "client"}, "annotations": {}, "namespaceLabels": {"istio.io/dataplane-mode": "ambient"},
//!  "netns": "/run/netns/mesh.pod.demo.client", "ips": ["10.244.1.5"]}
//! ```
//!
//! `netns` and `ips` may be absent until CNI ADD finished; unknown fields are ignored. [`PodSource`] is the seam;
//! [`FilePodSource`] is the directory implementation, and [`crate::k8s`] the Kubernetes one (which builds the same
//! [`PodMeta`] from the API, without the netns).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// One pod as the informer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodMeta {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub service_account: String,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub namespace_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    #[serde(default)]
    pub ips: Vec<IpAddr>,
}

impl PodMeta {
    /// `<namespace>/<name>`, the key used in logs and in `pods.json`.
    pub fn key(&self) -> String {
        pod_key(&self.namespace, &self.name)
    }

    /// The service account, `default` when unset (as Kubernetes does).
    pub fn service_account_or_default(&self) -> &str {
        if self.service_account.is_empty() {
            "default"
        } else {
            &self.service_account
        }
    }
}

/// `<namespace>/<name>`.
pub fn pod_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Errors reading the pod source.
#[derive(Debug, thiserror::Error)]
pub enum PodSourceError {
    #[error("pod source {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pod file {path}: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The informer seam: look one pod up, or list every pod.
pub trait PodSource: Send + Sync {
    /// One pod, `None` when it does not exist (yet).
    fn get(&self, namespace: &str, name: &str) -> Result<Option<PodMeta>, PodSourceError>;
    /// Every pod, keyed by `<namespace>/<name>`. Files that do not parse are skipped (and logged).
    fn list(&mut self) -> Result<BTreeMap<String, PodMeta>, PodSourceError>;
}

/// The directory implementation. `list` caches parsed files by modification time, size and inode, so polling a
/// directory of many pods re-reads only the files that changed.
#[derive(Debug)]
pub struct FilePodSource {
    dir: PathBuf,
    cache: HashMap<PathBuf, (SystemTime, u64, u64, PodMeta)>,
}

impl FilePodSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            cache: HashMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of one pod.
    pub fn file_of(dir: &Path, namespace: &str, name: &str) -> PathBuf {
        dir.join(format!("{namespace}.{name}.json"))
    }
}

/// Reads one pod file; `Ok(None)` when it does not exist.
pub fn read_pod_file(path: &Path) -> Result<Option<PodMeta>, PodSourceError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PodSourceError::Io {
                path: path.into(),
                source,
            });
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| PodSourceError::Decode {
            path: path.into(),
            source,
        })
}

impl PodSource for FilePodSource {
    fn get(&self, namespace: &str, name: &str) -> Result<Option<PodMeta>, PodSourceError> {
        read_pod_file(&Self::file_of(&self.dir, namespace, name))
    }

    fn list(&mut self) -> Result<BTreeMap<String, PodMeta>, PodSourceError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| PodSourceError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut seen = HashMap::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Ok(md) = entry.metadata() else { continue };
            let mtime = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let ino = std::os::unix::fs::MetadataExt::ino(&md);
            if let Some(hit) = self.cache.remove(&path)
                && hit.0 == mtime
                && hit.1 == md.len()
                && hit.2 == ino
            {
                seen.insert(path, hit);
                continue;
            }
            match read_pod_file(&path) {
                Ok(Some(pod)) => {
                    seen.insert(path, (mtime, md.len(), ino, pod));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "skipping unreadable pod file"),
            }
        }
        self.cache = seen;
        Ok(self
            .cache
            .values()
            .map(|(_, _, _, pod)| (pod.key(), pod.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_documented_format_and_ignores_unknown_fields() {
        let text = r#"{"uid": "u1", "name": "client", "namespace": "demo", "serviceAccount": "client",
            "node": "node1", "labels": {"app": "client"}, "annotations": {},
            "namespaceLabels": {"istio.io/dataplane-mode": "ambient"},
            "netns": "/run/netns/x", "ips": ["10.244.1.5"], "somethingNew": 3}"#;
        let pod: PodMeta = serde_json::from_str(text).unwrap();
        assert_eq!(pod.key(), "demo/client");
        assert_eq!(pod.ips, vec!["10.244.1.5".parse::<IpAddr>().unwrap()]);
        let minimal: PodMeta =
            serde_json::from_str(r#"{"uid":"u","name":"n","namespace":"s"}"#).unwrap();
        assert_eq!(minimal.netns, None);
        assert_eq!(minimal.service_account_or_default(), "default");
    }

    #[test]
    fn lists_and_rereads_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut src = FilePodSource::new(dir.path());
        assert!(src.list().unwrap().is_empty());
        std::fs::write(
            dir.path().join("a.p.json"),
            r#"{"uid":"1","name":"p","namespace":"a"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        let pods = src.list().unwrap();
        assert_eq!(pods.len(), 1);
        std::fs::write(
            dir.path().join("a.p.json"),
            r#"{"uid":"2","name":"p","namespace":"a","labels":{"x":"y"}}"#,
        )
        .unwrap();
        assert_eq!(src.list().unwrap()["a/p"].uid, "2");
        assert_eq!(src.get("a", "p").unwrap().unwrap().uid, "2");
        assert!(src.get("a", "q").unwrap().is_none());
    }
}
