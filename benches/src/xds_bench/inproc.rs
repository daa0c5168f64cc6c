//! The control plane in this process (`control_plane::serve::start`), for what only it can
//! show: when a manifest change was published (its `status` watch, with `translate_ms`), which
//! version that published, and the ADS server's own ACK feed (`AdsServer::events`).

use std::collections::BTreeSet;
use std::path::Path;
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

impl InProcess {
    /// Starts on 127.0.0.1:0 over `manifests` and waits for the first generation.
    pub(crate) async fn start(manifests: &Path) -> Result<InProcess> {
        let ca_dir = tempfile::tempdir()?;
        let args = ServeArgs::local(manifests.to_owned(), ca_dir.path().to_owned());
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

    /// Sets pod 0's revision and times the change to the ACKs of `clients` node ids.
    pub(crate) async fn change(&self, dir: &Path, revision: u32, clients: usize) -> Result<Change> {
        let mut events = self.cp.ads.events();
        let mut status = self.cp.status.clone();
        let generation = status.borrow_and_update().generation;
        let start = Instant::now();
        manifests::set_revision(dir, revision)?;
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

    pub(crate) async fn stop(self) {
        self.cp.ads.close_streams();
        self.shutdown.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}
