//! The control plane in this process (`control_plane::serve::start`), on a manifest directory
//! or on an API server, for what only it can show: when a change was published (its `status`
//! watch, with `translate_ms`), which version that published, and the ADS server's own ACK feed
//! (`AdsServer::events`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use control_plane::serve::{ControlPlane, ServeArgs};
use tokio::sync::{broadcast, watch};
use xds::type_url;

use super::manifests;

/// Longest wait for any one step (a translation, a sync, a change's ACKs).
pub(crate) const LIMIT: Duration = Duration::from_secs(120);

pub(crate) struct InProcess {
    pub(crate) cp: ControlPlane,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _ca_dir: tempfile::TempDir,
}

/// One manifest change, timed from the rename.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Change {
    /// Rename → the new snapshot is published (poll wait + read + parse + translate).
    pub(crate) published: Duration,
    /// Rename → every client ACKed the new `Address` version (server-side ACK events).
    pub(crate) acked: Duration,
    /// The control plane's own read + translate time for this change.
    pub(crate) translate_ms: f64,
}

/// A whole mesh arriving at a source that held none of it, timed from the first write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ingest {
    /// First write → the last write returned (every object is in the source).
    pub(crate) written: Duration,
    /// First write → a snapshot holding every workload is published.
    pub(crate) published: Duration,
    /// First write → every client ACKed that snapshot's `Address` version.
    pub(crate) acked: Duration,
    /// Snapshots published from the first write up to that one, inclusive.
    pub(crate) generations: u64,
    /// The control plane's `translate_ms`, summed over the generations the bench saw.
    pub(crate) translate_ms: f64,
    /// How many of `generations` the bench saw (the `status` watch keeps only the latest).
    pub(crate) seen: u64,
}

impl InProcess {
    /// Starts on 127.0.0.1:0 over `manifests` and waits for the first generation.
    pub(crate) async fn start(manifests: &Path) -> Result<InProcess> {
        let ca_dir = tempfile::tempdir()?;
        let args = ServeArgs::local(manifests.to_owned(), ca_dir.path().to_owned());
        InProcess::start_with(args, ca_dir).await
    }

    /// Starts on 127.0.0.1:0 reading the cluster from the API server of `kubeconfig`, and waits
    /// for the first generation (every watched kind listed once).
    pub(crate) async fn start_kube(kubeconfig: &Path) -> Result<InProcess> {
        let ca_dir = tempfile::tempdir()?;
        let args = ServeArgs {
            manifests: None,
            kubeconfig: Some(kubeconfig.to_owned()),
            ..ServeArgs::local(PathBuf::new(), ca_dir.path().to_owned())
        };
        InProcess::start_with(args, ca_dir).await
    }

    async fn start_with(args: ServeArgs, ca_dir: tempfile::TempDir) -> Result<InProcess> {
        let (shutdown, rx) = watch::channel(false);
        let (cp, serving) = control_plane::serve::start(args, rx).await?;
        let task = tokio::spawn(serving);
        let mut status = cp.status.clone();
        tokio::time::timeout(
            LIMIT,
            status.wait_for(|s| s.generation > 0 || s.error.is_some()),
        )
        .await
        .context("no first translation in time")??;
        if let Some(e) = &status.borrow().error {
            bail!("the control plane rejected the manifests: {e}");
        }
        Ok(InProcess {
            cp,
            shutdown,
            task,
            _ca_dir: ca_dir,
        })
    }

    pub(crate) fn translate_ms(&self) -> f64 {
        self.cp.status.borrow().translate_ms
    }

    /// Sets pod 0's revision in the manifest directory and times the change to the ACKs of
    /// `clients` node ids.
    pub(crate) async fn change(&self, dir: &Path, revision: u32, clients: usize) -> Result<Change> {
        self.change_by(clients, async { manifests::set_revision(dir, revision) })
            .await
    }

    /// Times one change, made by `write`, from its start to the ACKs of `clients` node ids.
    pub(crate) async fn change_by(
        &self,
        clients: usize,
        write: impl Future<Output = Result<()>>,
    ) -> Result<Change> {
        let mut events = self.cp.ads.events();
        let mut status = self.cp.status.clone();
        let generation = status.borrow_and_update().generation;
        let start = Instant::now();
        write.await?;
        tokio::time::timeout(
            LIMIT,
            status.wait_for(|s| s.generation > generation || s.error.is_some()),
        )
        .await
        .context("the change was not published in time")??;
        let published = start.elapsed();
        let translate_ms = {
            let s = status.borrow();
            if let Some(e) = &s.error {
                bail!("the control plane rejected the change: {e}");
            }
            s.translate_ms
        };
        let version = self
            .cp
            .source
            .ztunnel_snapshot()
            .type_version(type_url::ADDRESS);
        let mut acked = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + LIMIT;
        while acked.len() < clients {
            let event = match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => bail!(
                    "{} of {clients} clients ACKed version {version} in time",
                    acked.len()
                ),
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => bail!("missed {n} ACK events"),
                Ok(Err(e)) => bail!("ACK events: {e}"),
                Ok(Ok(e)) => e,
            };
            if event.type_url != type_url::ADDRESS {
                continue;
            }
            if let Some(nack) = event.nack {
                bail!("{} NACKed: {nack}", event.node_id);
            }
            if event.version == version {
                acked.insert(event.node_id);
            }
        }
        Ok(Change {
            published,
            acked: start.elapsed(),
            translate_ms,
        })
    }

    /// Times `write` filling the source with a mesh of `workloads` workloads: from its start to
    /// every one of `clients` node ids having ACKed the first snapshot that holds them all. The
    /// writes run while the bench follows the control plane's status and ACK feed; the whole
    /// wait is bounded by `limit`.
    pub(crate) async fn ingest(
        &self,
        clients: usize,
        workloads: u64,
        limit: Duration,
        write: impl Future<Output = Result<()>>,
    ) -> Result<Ingest> {
        let mut events = self.cp.ads.events();
        let mut status = self.cp.status.clone();
        let first = status.borrow_and_update().generation;
        let mut write = std::pin::pin!(write);
        let mut written = None;
        // The snapshot that holds every workload: its `Address` version, when, which generation.
        let mut target: Option<(String, Duration, u64)> = None;
        let (mut translate_ms, mut seen) = (0.0, 0);
        // Per `Address` version, the node ids that ACKed it.
        let mut acks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let (Some(written), Some((version, published, generation))) = (written, &target)
                && acks.get(version).map_or(0, BTreeSet::len) >= clients
            {
                return Ok(Ingest {
                    written,
                    published: *published,
                    acked: start.elapsed(),
                    generations: generation - first,
                    translate_ms,
                    seen,
                });
            }
            tokio::select! {
                done = &mut write, if written.is_none() => {
                    done.context("writing the mesh")?;
                    written = Some(start.elapsed());
                }
                event = events.recv() => {
                    let event = match event {
                        Err(broadcast::error::RecvError::Lagged(n)) => bail!("missed {n} ACK events"),
                        Err(e) => bail!("ACK events: {e}"),
                        Ok(e) => e,
                    };
                    if event.type_url != type_url::ADDRESS {
                        continue;
                    }
                    if let Some(nack) = event.nack {
                        bail!("{} NACKed: {nack}", event.node_id);
                    }
                    acks.entry(event.version).or_default().insert(event.node_id);
                }
                changed = status.changed(), if target.is_none() => {
                    changed.context("the control plane stopped")?;
                    let s = status.borrow_and_update().clone();
                    if let Some(e) = &s.error {
                        bail!("the control plane rejected the mesh: {e}");
                    }
                    translate_ms += s.translate_ms;
                    seen += 1;
                    if s.summary["workloads"].as_u64() == Some(workloads) {
                        let version = self
                            .cp
                            .source
                            .ztunnel_snapshot()
                            .type_version(type_url::ADDRESS);
                        target = Some((version, start.elapsed(), s.generation));
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    let s = status.borrow().clone();
                    let acked = target
                        .as_ref()
                        .and_then(|(v, _, _)| acks.get(v))
                        .map_or(0, BTreeSet::len);
                    bail!(
                        "the mesh did not reach {clients} clients within {limit:?}: writes done {}, generation {} with {} workloads, {acked} clients ACKed it",
                        written.is_some(),
                        s.generation,
                        s.summary["workloads"]
                    );
                }
            }
        }
    }

    pub(crate) async fn stop(self) {
        self.cp.ads.close_streams();
        self.shutdown.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}
