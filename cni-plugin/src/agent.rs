//! The node agent (`cni-agent`): one process per node, running in the node's network namespace.
//!
//! ```text
//! start: [Kubernetes: watch pods of this node + namespaces, wait for the first lists]
//!        ─ rebuild enrolled set (pod source, pods.json, rules in pod netns) ─ host probe SNAT table ─ serve:
//!   pluginevent.sock (HTTP)  POST /cmdadd → enroll: rules (nft + ip) → ZDS add (newest tunnel, Ack ≤5 s) → 200
//!   ZDS socket               tunnels connect → Hello → replay (add+fd | keep) → snapshot_sent → live add/del
//!   informer                 woken by a pod-dir poll or a watch event (+ resync), and by every change of the
//!                            enrolled set: deleted / relabelled → un-enroll (rules off, del to all);
//!                            late label → enroll; [Kubernetes: write the redirection annotations]
//!   installer (poll)         conf entry and binary put back when another writer removes them
//! SIGTERM: optional conf-entry removal; pod rules stay (pods keep failing closed, not open).
//! ```

pub mod config;
pub mod enroll;
pub mod http;
pub mod informer;
pub mod source;
pub mod state;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, Notify};

use crate::event::{CmdAddRequest, PLUGIN_EVENT_SOCKET};
use crate::installer::Installer;
use crate::k8s::{KubeError, KubePods, NodePod};
use crate::pods::PodSourceError;
use crate::zds::server::{ZdsError, ZdsHandle, ZdsServer};
pub use config::{AgentConfig, PodSourceConfig};
use enroll::Origin;
use source::{Listing, Lookup, Source};
use state::PodMap;

/// Bound on one annotation write (the informer waits for it).
const PATCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("pod {0} not found in the pod source")]
    PodNotFound(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    PodSource(#[from] PodSourceError),
    #[error("pod rules: {0}")]
    Rules(#[from] crate::netns::ExecError),
    #[error(transparent)]
    Zds(#[from] ZdsError),
    #[error(transparent)]
    Install(#[from] crate::installer::InstallError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("internal: {0}")]
    Internal(String),
}

/// The agent's shared state.
pub struct Agent {
    cfg: AgentConfig,
    pods: Mutex<PodMap>,
    locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    /// Serializes `pods.json` and host-table writes.
    persist_lock: AsyncMutex<()>,
    zds: ZdsHandle,
    /// Where CNI ADD looks its pod up.
    lookup: Lookup,
    /// Kubernetes source: the netns of each pod's last CNI ADD, by `<namespace>/<name>`.
    netns_hints: Mutex<HashMap<String, PathBuf>>,
    /// Wakes the informer: the enrolled set changed (its annotations may need writing).
    wake: Notify,
}

impl Agent {
    pub fn new(cfg: AgentConfig, lookup: Lookup) -> Arc<Self> {
        let zds = ZdsHandle::new(cfg.ack_timeout());
        Arc::new(Self {
            cfg,
            pods: Mutex::default(),
            locks: Mutex::default(),
            persist_lock: AsyncMutex::new(()),
            zds,
            lookup,
            netns_hints: Mutex::default(),
            wake: Notify::new(),
        })
    }

    fn hints(&self) -> MutexGuard<'_, HashMap<String, PathBuf>> {
        self.netns_hints.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the enrolled pods.
    pub fn pods(&self) -> PodMap {
        self.pods_mut().clone()
    }

    fn pods_mut(&self) -> MutexGuard<'_, PodMap> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pod_lock(&self, key: &str) -> Arc<AsyncMutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(key.to_string()).or_default().clone()
    }

    /// Sets (or removes) one pod's record and persists.
    async fn record(&self, key: &str, entry: Option<state::PodEntry>) {
        {
            let mut pods = self.pods_mut();
            match entry {
                Some(e) => pods.insert(key.to_string(), e),
                None => pods.remove(key),
            };
        }
        self.persist().await;
        self.wake.notify_one();
    }

    /// Writes `pods.json` and the host probe table from the current set.
    async fn persist(&self) {
        let _g = self.persist_lock.lock().await;
        self.persist_now();
    }

    fn persist_now(&self) {
        let pods = self.pods();
        if let Err(e) = state::save(&self.cfg.pods_json(), &pods) {
            tracing::error!(error = %e, "could not write pods.json");
        }
        if self.cfg.host_probe_snat
            && let Err(e) = crate::redirect::apply_host(&state::all_ips(&pods))
        {
            tracing::error!(error = %e, "could not update the host probe SNAT table");
        }
    }

    /// Whether ADD can be served now (CNI STATUS).
    pub fn ready(&self) -> bool {
        self.zds.connected() > 0
    }

    /// `POST /cmdadd`: `Ok(None)` = enrolled, `Ok(Some(reason))` = not enrolled (still a success).
    pub async fn cni_add(
        self: &Arc<Self>,
        req: CmdAddRequest,
    ) -> Result<Option<String>, AgentError> {
        let key = crate::pods::pod_key(&req.pod_namespace, &req.pod_name);
        if self.lookup.kube().is_some() && !req.netns.is_empty() {
            // Also for pods not enrolled now: they may be labelled later.
            self.hints().insert(key.clone(), PathBuf::from(&req.netns));
        }
        let mut pod = None;
        for _ in 0..20 {
            if let Some(p) = self.lookup.get(&req.pod_namespace, &req.pod_name)? {
                pod = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Not (yet) seen: fail, so the runtime retries the ADD (and the pod never starts unmeshed).
        let pod = pod.ok_or(AgentError::PodNotFound(key.clone()))?;
        if let crate::enrollment::Decision::Skip(reason) =
            crate::enrollment::decide(&self.cfg.policy(), &pod)
        {
            tracing::info!(pod = %key, %reason, "CNI ADD: not enrolling");
            return Ok(Some(reason.to_string()));
        }
        let netns = enroll::netns_of(&req.netns, &pod)
            .ok_or_else(|| AgentError::BadRequest("no Netns".into()))?;
        let mut ips: Vec<IpAddr> = req.ips.iter().filter_map(|s| s.parse().ok()).collect();
        if ips.is_empty() {
            ips = pod.ips.clone();
        }
        self.enroll(&pod, &netns, ips, Origin::Cni).await?;
        Ok(None)
    }

    /// Reads the pod source with the netns filled in (see [`source`]).
    async fn list(&self, source: &mut Source, known: &PodMap) -> Result<Listing, AgentError> {
        let hints = {
            let mut hints = self.hints();
            hints.retain(|_, p| p.exists());
            hints.clone()
        };
        source
            .list(known, &hints, &self.cfg.policy(), &self.cfg.node_name)
            .await
    }

    /// One informer pass over the pod source.
    async fn inform(self: &Arc<Self>, source: &mut Source) {
        let listing = match self.list(source, &self.pods()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "pod source unavailable");
                return;
            }
        };
        let exists = |p: &std::path::Path| p.exists();
        let actions = informer::plan(
            &self.pods(),
            &listing.pods,
            &listing.held,
            &self.cfg.policy(),
            &self.cfg.node_name,
            &exists,
        );
        for action in actions {
            match action {
                informer::Action::Unenroll { key, why } => {
                    self.unenroll(&key, &why.to_string()).await
                }
                informer::Action::Enroll(pod) => {
                    let Some(ns) = pod.netns.clone() else {
                        continue;
                    };
                    if let Err(e) = self
                        .enroll(&pod, &ns, pod.ips.clone(), Origin::Informer)
                        .await
                    {
                        tracing::warn!(pod = %pod.key(), error = %e, "informer enrollment incomplete");
                    }
                }
            }
        }
        if let (Some(node_pods), Some(kube)) = (&listing.node_pods, self.lookup.kube()) {
            self.write_annotations(kube, node_pods).await;
        }
    }

    /// Makes the pods' redirection annotations match the enrolled set. A failed (or, after
    /// [`PATCH_TIMEOUT`], abandoned) write is logged and planned again on the next pass; it never blocks
    /// enrollment.
    async fn write_annotations(
        &self,
        kube: &KubePods,
        node_pods: &std::collections::BTreeMap<String, NodePod>,
    ) {
        for change in informer::annotations(&self.pods(), node_pods) {
            let Some((namespace, name)) = change.key.split_once('/') else {
                continue;
            };
            let write = kube.set_redirection(namespace, name, change.value);
            match tokio::time::timeout(PATCH_TIMEOUT, write).await {
                Ok(Ok(())) => {
                    tracing::debug!(pod = %change.key, value = ?change.value, "redirection annotation written")
                }
                Ok(Err(e)) => {
                    tracing::warn!(pod = %change.key, error = %e, "could not write the redirection annotation; will retry")
                }
                Err(_) => {
                    tracing::warn!(pod = %change.key, timeout = ?PATCH_TIMEOUT, "redirection annotation write timed out; will retry")
                }
            }
        }
    }
}

/// Runs the agent until SIGTERM/SIGINT.
pub async fn run(cfg: AgentConfig) -> Result<(), AgentError> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| AgentError::Io { path, source }
    };
    std::fs::create_dir_all(&cfg.run_dir).map_err(io(&cfg.run_dir))?;
    let installer = Installer {
        conf_dir: cfg.cni_conf_dir.clone(),
        conf_name: cfg.cni_conf_name.clone(),
        bin_dir: cfg.cni_bin_dir.clone(),
        plugin_binary: cfg.plugin_binary.clone(),
        entry: cfg.conf_entry(),
    };
    let (mut source, lookup) = source::open(&cfg).await?;
    let agent = Agent::new(cfg.clone(), lookup);
    agent.rebuild(&mut source).await?;
    // Serve before installing the entry, so the first ADD that sees it finds the agent up.
    let zds = ZdsServer::bind(&cfg.ztunnel_uds)?;
    let http = http::PluginEventServer::bind(&cfg.run_dir.join(PLUGIN_EVENT_SOCKET))
        .map_err(io(&cfg.run_dir))?;
    tokio::spawn(zds.run(agent.zds.clone(), agent.clone()));
    tokio::spawn(http.run(agent.clone()));
    report_install(installer.ensure());
    tracing::info!(node = %cfg.node_name, pods = agent.pods().len(), "cni-agent started");
    let inst = installer.clone();
    let conf_poll = Duration::from_millis(cfg.conf_poll_ms.max(10));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(conf_poll).await;
            let inst = inst.clone();
            if let Ok(r) = tokio::task::spawn_blocking(move || inst.ensure()).await {
                report_install(r);
            }
        }
    });
    let informer_agent = agent.clone();
    tokio::spawn(async move {
        let mut last_retry = tokio::time::Instant::now();
        loop {
            source.next_change(&informer_agent.wake).await;
            informer_agent.inform(&mut source).await;
            if last_retry.elapsed() >= Duration::from_secs(5) {
                last_retry = tokio::time::Instant::now();
                informer_agent.retry_pending().await;
            }
        }
    });
    shutdown_signal().await;
    tracing::info!("shutting down");
    if cfg.remove_conf_on_shutdown {
        match installer.remove_entry() {
            Ok(true) => tracing::info!("removed the istio-cni entry from the CNI configuration"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove the CNI conf entry"),
        }
    }
    let _ = std::fs::remove_file(cfg.run_dir.join(PLUGIN_EVENT_SOCKET));
    Ok(())
}

fn report_install(r: Result<crate::installer::Ensured, crate::installer::InstallError>) {
    match r {
        Ok(e) if e.conf_written => {
            tracing::info!("istio-cni entry (re)inserted into the CNI configuration")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "plugin install"),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
