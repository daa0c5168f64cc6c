//! Which pods this tunnel serves and the lifecycle of their proxies (spec §7 "Tunnel on
//! add/del"). Same uid + same netns = no-op; a different netns replaces the proxies; a start
//! failure keeps the pod pending and retries every 5 s; `del` drains immediately.
//! Does not own the proxies themselves: a [`PodProxies`] implementation starts them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use proto::istio::workload::zds::WorkloadInfo;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::netns::Netns;

const RETRY_EVERY: Duration = Duration::from_secs(5);

/// A pod handed over by ZDS.
#[derive(Debug, Clone)]
pub struct PodContext {
    pub uid: String,
    pub info: WorkloadInfo,
    pub netns: Netns,
}

/// Running proxies of one pod: draining them is sending `true` and waiting for the tasks.
pub struct RunningPod {
    drain: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningPod {
    pub fn new(drain: watch::Sender<bool>, tasks: Vec<JoinHandle<()>>) -> Self {
        Self { drain, tasks }
    }

    /// Stops accepting, lets open connections finish within the listeners' own deadline.
    pub async fn stop(self) {
        let _ = self.drain.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts a pod's proxies (binding must happen before returning, so failures are reported).
pub trait PodProxies: Send + Sync + 'static {
    fn start(&self, pod: &PodContext) -> Result<RunningPod, String>;
    /// Called when a pod stops being served (forget per-pod state such as its dial netns).
    fn stopped(&self, _pod: &PodContext) {}
}

enum State {
    Up(RunningPod),
    Pending {
        error: String,
        retry: JoinHandle<()>,
    },
}

struct Entry {
    pod: PodContext,
    state: State,
}

/// The pods and their proxies.
pub struct WorkloadManager {
    proxies: Arc<dyn PodProxies>,
    pods: Mutex<HashMap<String, Entry>>,
    snapshot: watch::Sender<bool>,
    started_total: std::sync::atomic::AtomicU64,
    stopped_total: std::sync::atomic::AtomicU64,
}

/// Counts for metrics and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ManagerCounts {
    pub active: usize,
    pub pending: usize,
    pub started_total: u64,
    pub stopped_total: u64,
}

impl WorkloadManager {
    pub fn new(proxies: Arc<dyn PodProxies>) -> Arc<Self> {
        Arc::new(Self {
            proxies,
            pods: Mutex::new(HashMap::new()),
            snapshot: watch::channel(false).0,
            started_total: 0.into(),
            stopped_total: 0.into(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles `add`: `Err` is the NACK text.
    pub async fn add(
        self: &Arc<Self>,
        uid: String,
        info: WorkloadInfo,
        netns: Netns,
    ) -> Result<(), String> {
        let previous = {
            let mut pods = self.lock();
            match pods.get(&uid) {
                Some(e) if e.pod.netns == netns && matches!(e.state, State::Up(_)) => {
                    tracing::debug!(uid, "add for a pod already served from the same netns");
                    return Ok(());
                }
                _ => pods.remove(&uid),
            }
        };
        if let Some(old) = previous {
            tracing::info!(uid, "pod netns changed; replacing its proxies");
            self.finish(old).await;
        }
        let pod = PodContext {
            uid: uid.clone(),
            info,
            netns,
        };
        let result = self.proxies.start(&pod);
        let mut pods = self.lock();
        match result {
            Ok(running) => {
                self.started_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(uid, pod.name = %pod.info.name, pod.namespace = %pod.info.namespace, "pod proxies started");
                pods.insert(
                    uid,
                    Entry {
                        pod,
                        state: State::Up(running),
                    },
                );
                Ok(())
            }
            Err(error) => {
                tracing::warn!(uid, error, "starting pod proxies failed; retrying every 5s");
                let retry = tokio::spawn(Self::retry(Arc::downgrade(self), uid.clone()));
                pods.insert(
                    uid,
                    Entry {
                        pod,
                        state: State::Pending {
                            error: error.clone(),
                            retry,
                        },
                    },
                );
                Err(error)
            }
        }
    }

    async fn retry(this: std::sync::Weak<Self>, uid: String) {
        loop {
            tokio::time::sleep(RETRY_EVERY).await;
            let Some(this) = this.upgrade() else { return };
            let pod = match this.lock().get(&uid) {
                Some(Entry {
                    pod,
                    state: State::Pending { .. },
                }) => pod.clone(),
                _ => return,
            };
            match this.proxies.start(&pod) {
                Ok(running) => {
                    let leftover = {
                        let mut pods = this.lock();
                        match pods.get_mut(&uid) {
                            Some(e)
                                if e.pod.netns == pod.netns
                                    && matches!(e.state, State::Pending { .. }) =>
                            {
                                this.started_total
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                tracing::info!(uid, "pod proxies started after retry");
                                e.state = State::Up(running);
                                None
                            }
                            _ => Some(running),
                        }
                    };
                    if let Some(running) = leftover {
                        running.stop().await;
                    }
                    return;
                }
                Err(error) => {
                    if let Some(Entry {
                        state: State::Pending { error: e, .. },
                        ..
                    }) = this.lock().get_mut(&uid)
                    {
                        *e = error;
                    }
                }
            }
        }
    }

    async fn finish(&self, entry: Entry) {
        match entry.state {
            State::Up(running) => {
                running.stop().await;
                self.stopped_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            State::Pending { retry, .. } => retry.abort(),
        }
        self.proxies.stopped(&entry.pod);
        tracing::info!(uid = entry.pod.uid, "pod proxies stopped");
    }

    /// Handles `del` after the snapshot: drains the pod's proxies.
    pub async fn del(&self, uid: &str) {
        let entry = self.lock().remove(uid);
        match entry {
            Some(e) => self.finish(e).await,
            None => tracing::debug!(uid, "del for an unknown pod"),
        }
    }

    /// Snapshot complete: stops every pod not in `keep`.
    pub async fn reconcile(&self, keep: &HashSet<String>) {
        let stale: Vec<Entry> = {
            let mut pods = self.lock();
            let gone: Vec<String> = pods
                .keys()
                .filter(|k| !keep.contains(*k))
                .cloned()
                .collect();
            gone.iter().filter_map(|k| pods.remove(k)).collect()
        };
        for e in stale {
            tracing::info!(
                uid = e.pod.uid,
                "pod not in the node agent's snapshot; stopping"
            );
            self.finish(e).await;
        }
    }

    pub fn mark_snapshot_received(&self) {
        self.snapshot.send_replace(true);
    }

    /// Whether a first snapshot arrived.
    pub fn snapshot_received(&self) -> bool {
        *self.snapshot.borrow()
    }

    pub fn counts(&self) -> ManagerCounts {
        let pods = self.lock();
        let pending = pods
            .values()
            .filter(|e| matches!(e.state, State::Pending { .. }))
            .count();
        ManagerCounts {
            active: pods.len() - pending,
            pending,
            started_total: self
                .started_total
                .load(std::sync::atomic::Ordering::Relaxed),
            stopped_total: self
                .stopped_total
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// `workloadState` of the config dump: uid → {state, info}.
    pub fn dump(&self) -> serde_json::Value {
        let pods = self.lock();
        let mut out = serde_json::Map::new();
        for (uid, e) in pods.iter() {
            let mut v = serde_json::json!({
                "state": match e.state { State::Up(_) => "Up", State::Pending { .. } => "Pending" },
                "info": {
                    "name": e.pod.info.name,
                    "namespace": e.pod.info.namespace,
                    "serviceAccount": e.pod.info.service_account,
                },
            });
            if let State::Pending { error, .. } = &e.state {
                v["error"] = serde_json::Value::String(error.clone());
            }
            out.insert(uid.clone(), v);
        }
        serde_json::Value::Object(out)
    }

    /// Stops every pod (shutdown).
    pub async fn stop_all(&self) {
        let all: Vec<Entry> = self.lock().drain().map(|(_, e)| e).collect();
        futures_util::future::join_all(all.into_iter().map(|e| self.finish(e))).await;
    }
}
