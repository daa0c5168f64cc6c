//! Where the agent's informer gets its pods, and how it waits for the next change.
//!
//! * **Pod dir** (`--pod-dir`, the local mesh): [`FilePodSource`], polled every `--pod-poll-ms`. Pod files carry
//!   the netns.
//! * **Kubernetes** (`--kubeconfig`, or in-cluster): [`KubePods`], woken by every watch event, with a resync
//!   every [`RESYNC`] as a safety net (pending pods, netns not found yet, failed annotation writes). The API
//!   has no netns, so each pod's is taken, in order, from the agent's own record of the pod (same uid: CNI ADD
//!   or a previous run's `pods.json`), the netns of the pod's last CNI ADD (a hint kept by the agent), and
//!   finally [`crate::netns::find`] for pods that would be enrolled otherwise. A recorded pod whose IPs the API
//!   does not show yet (the kubelet reports them after CNI ADD) keeps the recorded ones.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::enrollment::EnrollmentPolicy;
use crate::k8s::{self, KubePods, NodePod};
use crate::netns::find::{Finder, Found};
use crate::pods::{FilePodSource, PodMeta, PodSource, PodSourceError};

use super::AgentError;
use super::config::{AgentConfig, PodSourceConfig};
use super::informer;
use super::state::PodMap;

/// The Kubernetes source's periodic resync.
pub const RESYNC: Duration = Duration::from_secs(5);
/// How long a pod whose netns was not found waits before the next scan (unless its IPs change).
const FIND_RETRY: Duration = Duration::from_secs(5);

/// One read of the pod source.
#[derive(Debug, Default)]
pub struct Listing {
    pub pods: BTreeMap<String, PodMeta>,
    /// Pods that cannot be judged now (see [`crate::k8s::View::held`]).
    pub held: BTreeSet<String>,
    /// Kubernetes only: every pod of the node with its redirection annotation.
    pub node_pods: Option<BTreeMap<String, NodePod>>,
}

/// The informer's pod source.
pub enum Source {
    Dir {
        files: FilePodSource,
        poll: Duration,
    },
    Kube {
        pods: Arc<KubePods>,
        finder: Finder,
        /// uid → (IPs, when) of pods whose netns was not found.
        misses: HashMap<String, (Vec<IpAddr>, Instant)>,
    },
}

/// One pod looked up for CNI ADD.
#[derive(Clone)]
pub enum Lookup {
    Dir(PathBuf),
    Kube(Arc<KubePods>),
}

impl Lookup {
    pub fn get(&self, namespace: &str, name: &str) -> Result<Option<PodMeta>, PodSourceError> {
        match self {
            Self::Dir(dir) => FilePodSource::new(dir).get(namespace, name),
            Self::Kube(pods) => Ok(pods.get(namespace, name)),
        }
    }

    pub fn kube(&self) -> Option<&KubePods> {
        match self {
            Self::Dir(_) => None,
            Self::Kube(p) => Some(p),
        }
    }
}

/// Opens the configured pod source (Kubernetes: connects, starts the watches and waits for their first lists,
/// for as long as the API server takes: judging pods on an empty view would un-enroll them all).
pub async fn open(cfg: &AgentConfig) -> Result<(Source, Lookup), AgentError> {
    match cfg.pod_source() {
        PodSourceConfig::Dir(dir) => {
            std::fs::create_dir_all(&dir).map_err(|source| AgentError::Io {
                path: dir.clone(),
                source,
            })?;
            let poll = Duration::from_millis(cfg.pod_poll_ms.max(10));
            let files = FilePodSource::new(&dir);
            Ok((Source::Dir { files, poll }, Lookup::Dir(dir)))
        }
        PodSourceConfig::Kube { kubeconfig } => {
            let client = k8s::client(kubeconfig.as_deref()).await?;
            let pods = Arc::new(KubePods::watch(client, &cfg.node_name));
            tracing::info!(node = %cfg.node_name, kubeconfig = ?kubeconfig, "watching pods and namespaces");
            loop {
                tokio::select! {
                    _ = pods.synced() => break,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {
                        tracing::warn!("still waiting for the first list of pods and namespaces from the API server");
                    }
                }
            }
            let finder = Finder {
                netns_dir: cfg.netns_dir.clone(),
                proc_dir: cfg.host_proc.clone(),
            };
            let source = Source::Kube {
                pods: pods.clone(),
                finder,
                misses: HashMap::new(),
            };
            Ok((source, Lookup::Kube(pods)))
        }
    }
}

/// Fills in what the API does not know about a pod from the agent's own knowledge: the netns of its record
/// (same uid) or else of its last CNI ADD (`hints`, if that netns still `exists`), and the recorded IPs while the
/// API shows none (the kubelet reports them after CNI ADD).
pub fn fill_from_records(
    pods: &mut BTreeMap<String, PodMeta>,
    known: &PodMap,
    hints: &HashMap<String, PathBuf>,
    exists: &dyn Fn(&std::path::Path) -> bool,
) {
    for (key, pod) in pods.iter_mut() {
        let record = known.get(key).filter(|e| e.uid == pod.uid);
        if let Some(e) = record
            && pod.ips.is_empty()
        {
            pod.ips = e.ips.clone();
        }
        pod.netns = record
            .and_then(|e| e.netns.clone())
            .or_else(|| hints.get(key).filter(|p| exists(p)).cloned());
    }
}

impl Source {
    /// Waits for the next reason to look again: a poll tick (pod dir), a watch event or the resync
    /// (Kubernetes), or `wake` (the agent changed its enrolled set).
    pub async fn next_change(&self, wake: &Notify) {
        match self {
            Self::Dir { poll, .. } => {
                tokio::select! {
                    _ = tokio::time::sleep(*poll) => {}
                    _ = wake.notified() => {}
                }
            }
            Self::Kube { pods, .. } => {
                tokio::select! {
                    _ = pods.changed() => {}
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(RESYNC) => {}
                }
            }
        }
    }

    /// The current pods, with their netns filled in as far as it can be known (see the module doc). `known` is
    /// the agent's record of enrolled pods, `hints` the netns of each pod's last CNI ADD.
    pub async fn list(
        &mut self,
        known: &PodMap,
        hints: &HashMap<String, PathBuf>,
        policy: &EnrollmentPolicy,
        node: &str,
    ) -> Result<Listing, AgentError> {
        let (pods, finder, misses) = match self {
            Self::Dir { files, .. } => {
                return Ok(Listing {
                    pods: files.list()?,
                    ..Listing::default()
                });
            }
            Self::Kube {
                pods,
                finder,
                misses,
            } => (pods, finder, misses),
        };
        let view = pods.view();
        let mut listing = Listing {
            pods: view.pods,
            held: view.held,
            node_pods: Some(view.node_pods),
        };
        fill_from_records(&mut listing.pods, known, hints, &|p| p.exists());
        let wanted = informer::needs_netns(known, &listing.pods, policy, node);
        let now = Instant::now();
        misses.retain(|_, (_, at)| now.duration_since(*at) < FIND_RETRY);
        let look: Vec<(String, Vec<IpAddr>)> = wanted
            .into_iter()
            .filter_map(|key| {
                let pod = listing.pods.get(&key)?;
                let recent_miss = misses.get(&pod.uid).is_some_and(|(ips, _)| *ips == pod.ips);
                (!recent_miss).then(|| (key, pod.ips.clone()))
            })
            .collect();
        if look.is_empty() {
            return Ok(listing);
        }
        let f = finder.clone();
        let query = look.clone();
        let found = tokio::task::spawn_blocking(move || f.find(&query))
            .await
            .map_err(|e| AgentError::Internal(e.to_string()))?;
        for (key, ips) in look {
            let Some(pod) = listing.pods.get_mut(&key) else {
                continue;
            };
            match found.get(&key) {
                Some(Found::One(path)) => {
                    tracing::info!(pod = %key, netns = %path.display(), "found the netns of a running pod");
                    pod.netns = Some(path.clone());
                }
                Some(Found::Ambiguous(paths)) => {
                    tracing::warn!(pod = %key, ?paths, "several netns hold the pod's IPs; not enrolling it yet");
                    misses.insert(pod.uid.clone(), (ips, now));
                }
                Some(Found::Nothing) | None => {
                    tracing::debug!(pod = %key, ?ips, "no netns holds the pod's IPs yet");
                    misses.insert(pod.uid.clone(), (ips, now));
                }
            }
        }
        Ok(listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::state::{PodEntry, Redirection};

    #[test]
    fn records_and_hints_fill_in_netns_and_ips() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let pod = |name: &str, uid: &str, ips: &[&str]| PodMeta {
            uid: uid.into(),
            name: name.into(),
            namespace: "demo".into(),
            ips: ips.iter().map(|s| ip(s)).collect(),
            ..PodMeta::default()
        };
        let record = |uid: &str, netns: &str, ips: &[&str]| PodEntry {
            uid: uid.into(),
            redirection: Redirection::Enabled,
            ips: ips.iter().map(|s| ip(s)).collect(),
            netns: Some(netns.into()),
            service_account: String::new(),
        };
        let mut pods: BTreeMap<String, PodMeta> = [
            pod("recorded", "1", &[]),
            pod("api-ips", "2", &["10.0.0.2"]),
            pod("replaced", "new", &["10.0.0.3"]),
            pod("hinted", "4", &["10.0.0.4"]),
            pod("stale-hint", "5", &["10.0.0.5"]),
            pod("unknown", "6", &["10.0.0.6"]),
        ]
        .into_iter()
        .map(|p| (p.key(), p))
        .collect();
        let known: PodMap = [
            ("demo/recorded", record("1", "/run/netns/r", &["10.0.0.1"])),
            ("demo/api-ips", record("2", "/run/netns/a", &["10.9.9.9"])),
            (
                "demo/replaced",
                record("old", "/run/netns/old", &["10.0.0.9"]),
            ),
        ]
        .into_iter()
        .map(|(k, e)| (k.to_string(), e))
        .collect();
        let hints: HashMap<String, PathBuf> = [
            ("demo/hinted", "/run/netns/h"),
            ("demo/replaced", "/run/netns/new"),
            ("demo/stale-hint", "/run/netns/gone"),
        ]
        .into_iter()
        .map(|(k, p)| (k.to_string(), PathBuf::from(p)))
        .collect();
        let exists = |p: &std::path::Path| p != std::path::Path::new("/run/netns/gone");
        fill_from_records(&mut pods, &known, &hints, &exists);
        let got = |k: &str| {
            let p = &pods[&format!("demo/{k}")];
            (p.netns.clone(), p.ips.clone())
        };
        assert_eq!(
            got("recorded"),
            (Some("/run/netns/r".into()), vec![ip("10.0.0.1")])
        );
        // The API's IPs win over the record's.
        assert_eq!(
            got("api-ips"),
            (Some("/run/netns/a".into()), vec![ip("10.0.0.2")])
        );
        // Another uid's record is not this pod's: the ADD hint is.
        assert_eq!(
            got("replaced"),
            (Some("/run/netns/new".into()), vec![ip("10.0.0.3")])
        );
        assert_eq!(got("hinted").0, Some("/run/netns/h".into()));
        assert_eq!(got("stale-hint").0, None);
        assert_eq!(got("unknown").0, None);
    }
}
