//! The agent's pod cache (enrolled pods) and its record in `<run-dir>/pods.json` — the analogue of the
//! `ambient.istio.io/redirection` pod annotation, read by `meshctl status` and by the agent after a restart.
//!
//! ```json
//! {"demo/client": {"uid": "…", "redirection": "enabled", "ips": ["10.244.1.5"],
//!                  "netns": "/run/netns/mesh.pod.demo.client", "serviceAccount": "client"}}
//! ```
//! `redirection` is `enabled` once ztunnel acked the pod and `pending` while it has rules but no Ack.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::installer::{InstallError, atomic_write};
use crate::zds::server::ReplayItem;
use crate::zds::wire::Workload;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Redirection {
    Enabled,
    Pending,
}

/// One enrolled pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodEntry {
    pub uid: String,
    pub redirection: Redirection,
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    #[serde(default)]
    pub service_account: String,
}

/// Enrolled pods keyed by `<namespace>/<name>`.
pub type PodMap = BTreeMap<String, PodEntry>;

/// The workload identity of a cached pod.
pub fn workload(key: &str, entry: &PodEntry) -> Workload {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    Workload {
        uid: entry.uid.clone(),
        name: name.into(),
        namespace: namespace.into(),
        service_account: entry.service_account.clone(),
    }
}

/// What a new tunnel connection is replayed.
pub fn replay_items(pods: &PodMap) -> Vec<ReplayItem> {
    pods.iter()
        .map(|(k, e)| ReplayItem {
            workload: workload(k, e),
            netns: e.netns.clone(),
        })
        .collect()
}

/// Every enrolled pod IP (for the node-side probe SNAT set).
pub fn all_ips(pods: &PodMap) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = pods.values().flat_map(|e| e.ips.iter().copied()).collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Reads `pods.json`; a missing or unreadable file is an empty map (logged).
pub fn load(path: &Path) -> PodMap {
    match std::fs::read(path) {
        Ok(text) => serde_json::from_slice(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable pods.json");
            PodMap::new()
        }),
        Err(_) => PodMap::new(),
    }
}

/// Rewrites `pods.json` atomically.
pub fn save(path: &Path, pods: &PodMap) -> Result<(), InstallError> {
    let mut text = serde_json::to_vec_pretty(pods).unwrap_or_default();
    text.push(b'\n');
    atomic_write(path, &text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_the_documented_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        assert!(load(&path).is_empty());
        let mut pods = PodMap::new();
        pods.insert(
            "demo/client".into(),
            PodEntry {
                uid: "u1".into(),
                redirection: Redirection::Enabled,
                ips: vec!["10.244.1.5".parse().unwrap()],
                netns: Some("/run/netns/x".into()),
                service_account: "client".into(),
            },
        );
        save(&path, &pods).unwrap();
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["demo/client"]["redirection"], "enabled");
        assert_eq!(raw["demo/client"]["ips"][0], "10.244.1.5");
        assert_eq!(load(&path), pods);
        let w = workload("demo/client", &pods["demo/client"]);
        assert_eq!((w.namespace.as_str(), w.name.as_str()), ("demo", "client"));
        assert_eq!(all_ips(&pods).len(), 1);
        assert_eq!(replay_items(&pods).len(), 1);
    }
}
