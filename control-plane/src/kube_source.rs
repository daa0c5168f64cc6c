//! The Kubernetes source: the control plane reads the cluster from the API server, as istiod does.
//!
//! ```text
//! watch (one per kind, kube-runtime watcher + back-off) ─Change─▶ store (parse each object once; a bad
//!   object keeps its error)  ─debounce─▶ translate what parses, setting aside objects the translation
//!   refuses ─▶ MeshSource (xDS)   and   rejected objects ─▶ Event on the object + log + metrics
//! ```
//!
//! Nothing is published until every kind has been listed once, so a client never sees a half-read cluster.
//! Changes are debounced ([`QUIET`], at most [`batch_window`] after the first: [`MAX_DELAY`], or twice what the
//! last translation took when that is longer, so a stream of writes — a 10,000-pod rollout — costs the control
//! plane at most about a third of a core instead of a re-translation every 300 ms), then translated off the async
//! workers. Only changed objects are parsed again; the translation itself covers the whole mesh (it is linear
//! in pods).
//!
//! Writes — waypoint Deployments/Services/ServiceAccounts, Gateway and route `status`, Events — come only from
//! the replica that holds the leader Lease ([`leader`]), after each translation ([`controller`]).
//!
//! What it needs from RBAC: `list` and `watch` on every kind of [`watch::KINDS`], `create`/`patch` on
//! `events.k8s.io` Events, and what [`leader`] and [`controller`] list.

pub mod controller;
pub mod desired;
pub mod isolate;
pub mod leader;
pub mod report;
pub mod store;
pub mod watch;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::{mpsc, watch as tokio_watch};

use crate::ca::PodsOnNodes;
use crate::source::MeshSource;
use crate::translate::Options;
use crate::watcher::Status;
use report::{Rejected, Reports};
use store::{Change, Store};

/// Quiet time after a change before translating.
pub const QUIET: Duration = Duration::from_millis(30);
/// Longest a change waits for quiet while translations are cheap.
pub const MAX_DELAY: Duration = Duration::from_millis(300);

/// How long a batch of changes may keep growing after its first change, given what the last translation
/// cost: never less than [`MAX_DELAY`], and twice the cost, so translating takes at most a third of the time
/// under a continuous stream of changes.
pub fn batch_window(last_cost: Duration) -> Duration {
    MAX_DELAY.max(last_cost.saturating_mul(2))
}

/// Why the API server cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no --kubeconfig and no --manifests, and not running in a pod (in-cluster configuration: {0})"
    )]
    InCluster(kube::config::InClusterError),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client from `kubeconfig`, or the in-cluster configuration of the pod it runs in.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let bad = |source| ClientError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let kc = Kubeconfig::read_from(path).map_err(bad)?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(bad)?
        }
        None => kube::Config::incluster().map_err(ClientError::InCluster)?,
    };
    Ok(Client::try_from(config)?)
}

/// Options for a Kubernetes source: the API server and kubelets own addresses.
pub fn options(base: Options) -> Options {
    Options {
        allocate_addresses: false,
        ..base
    }
}

/// The writers, which act only while `leader` is true.
pub struct Writers {
    pub controller: controller::Controller,
    pub leader: tokio_watch::Receiver<bool>,
}

/// Where each translation and what it rejected go.
pub struct Sinks {
    pub source: Arc<MeshSource>,
    /// Which node runs which service accounts, for the CA.
    pub pods: PodsOnNodes,
    pub status: tokio_watch::Sender<Status>,
    pub reports: Reports,
}

/// Follows the API server until shutdown, publishing each translation to `sinks`.
pub async fn run(
    client: Client,
    options: Options,
    sinks: Sinks,
    mut writers: Writers,
    shutdown: tokio_watch::Receiver<bool>,
) {
    let Sinks {
        source,
        pods,
        status,
        mut reports,
    } = sinks;
    let (tx, mut rx) = mpsc::channel(4096);
    for k in watch::KINDS {
        tokio::spawn(watch::run(client.clone(), *k, tx.clone(), shutdown.clone()));
    }
    drop(tx);
    let kinds = watch::kind_names();
    let mut store = Store::default();
    let mut stop = shutdown.clone();
    let mut dirty = false;
    let mut last_cost = Duration::ZERO;
    loop {
        enum Wake {
            Change(Option<Change>),
            Leadership,
            Stop,
        }
        let wake = tokio::select! {
            c = rx.recv() => Wake::Change(c),
            Ok(()) = writers.leader.changed() => Wake::Leadership,
            _ = stop.wait_for(|s| *s) => Wake::Stop,
        };
        let first = match wake {
            Wake::Change(c) => c,
            Wake::Stop => return,
            Wake::Leadership => {
                let leading = *writers.leader.borrow_and_update();
                reports.set_leading(leading);
                if leading && store.synced(&kinds) {
                    writers.controller.forget();
                    writers.controller.reconcile(&store).await;
                }
                continue;
            }
        };
        let Some(first) = first else { return };
        dirty |= store.apply(first);
        let deadline = tokio::time::Instant::now() + batch_window(last_cost);
        loop {
            tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => dirty |= store.apply(c),
                    None => return,
                },
                () = tokio::time::sleep(QUIET) => break,
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        if !dirty || !store.synced(&kinds) {
            continue;
        }
        dirty = false;
        let started = std::time::Instant::now();
        publish(&store, &options, &source, &pods, &status, &mut reports).await;
        last_cost = started.elapsed();
        if *writers.leader.borrow() {
            writers.controller.reconcile(&store).await;
        }
    }
}

/// Translates the store and publishes it; reports what was rejected.
async fn publish(
    store: &Store,
    options: &Options,
    source: &MeshSource,
    pods: &PodsOnNodes,
    status: &tokio_watch::Sender<Status>,
    reports: &mut Reports,
) {
    let started = Instant::now();
    let objects = store.objects();
    let count = objects.len();
    let on_nodes = crate::watcher::pods_on_nodes(&objects);
    let translated = {
        let options = options.clone();
        tokio::task::spawn_blocking(move || isolate::translate_isolating(objects, &options)).await
    };
    let (result, set_aside) = match translated {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "translation task failed");
            return;
        }
    };
    let mut rejected: Vec<Rejected> = store
        .rejected()
        .map(|(key, entry, error)| rejection(key, entry, error.to_string()))
        .collect();
    for (key, error) in &set_aside {
        if let Some(entry) = store.get(key) {
            rejected.push(rejection(key, entry, error.to_string()));
        }
    }
    reports.update(&rejected);
    match result {
        Ok(translation) => {
            let summary = serde_json::to_value(&translation.summary).unwrap_or_default();
            *pods.write().unwrap_or_else(|e| e.into_inner()) = on_nodes;
            source.publish(translation);
            let ms = started.elapsed().as_secs_f64() * 1e3;
            status.send_modify(|s| {
                s.generation += 1;
                s.objects = count - set_aside.len();
                s.error = None;
                s.translate_ms = ms;
                s.summary = summary.clone();
                s.rejected = rejected;
            });
            tracing::info!(objects = count, ms, %summary, "cluster state applied");
        }
        Err(error) => {
            tracing::error!(%error, "the cluster state cannot be translated; the last good configuration stays");
            status.send_modify(|s| {
                s.error = Some(error.to_string());
                s.rejected = rejected;
            });
        }
    }
}

fn rejection(key: &crate::manifest::ObjectKey, entry: &store::Entry, error: String) -> Rejected {
    Rejected {
        object: key.to_string(),
        error,
        key: key.clone(),
        api_version: entry.api_version.clone(),
        uid: entry.uid.clone(),
        resource_version: entry.resource_version.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_grow_with_the_cost_of_translating() {
        assert_eq!(batch_window(Duration::ZERO), MAX_DELAY);
        assert_eq!(batch_window(Duration::from_millis(100)), MAX_DELAY);
        assert_eq!(
            batch_window(Duration::from_millis(200)),
            Duration::from_millis(400)
        );
        assert_eq!(batch_window(Duration::from_secs(1)), Duration::from_secs(2));
    }
}
