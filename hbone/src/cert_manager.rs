//! Per-identity certificate manager (spec §6).
//!
//! One task per identity fetches through a [`CertificateFetcher`] with at most N requests in
//! flight (priority: blocking a live connection > prefetch warm-up > background refresh),
//! refreshes at half-life, backs off exponentially with jitter on failure while the old
//! certificate stays in use, and withdraws a certificate the moment it expires: callers then
//! get an error and must fail closed. The timing decisions are pure (`schedule`); this file
//! only runs them.

mod limiter;
mod schedule;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::{Notify, watch};

pub use schedule::Backoff;

use crate::ca::{BoxFuture, CertificateFetcher};
use crate::client::ClientCertificates;
use crate::identity::Identity;
use crate::server::ServerCertificates;
use crate::tls::WorkloadCertificate;
use limiter::Limiter;

/// Fetch priority, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Renewal of a certificate still valid.
    Background,
    /// Prefetch for a workload that just appeared on this node.
    Warmup,
    /// A connection is waiting for it.
    Blocking,
}

/// Longest a blocked connection waits for an immediate retry of a failed fetch.
const BLOCKING_RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Manager settings.
#[derive(Debug, Clone)]
pub struct CertManagerConfig {
    /// CSRs in flight at once (8).
    pub max_in_flight: usize,
    /// Retry policy.
    pub backoff: Backoff,
}

impl Default for CertManagerConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 8,
            backoff: Backoff::default(),
        }
    }
}

/// Why no certificate can be had right now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CertManagerError {
    #[error("no valid certificate for {identity}: {reason}")]
    Unavailable { identity: Identity, reason: String },
}

/// What a worker publishes.
#[derive(Debug, Clone)]
enum CertState {
    Initializing,
    Available(Arc<WorkloadCertificate>),
    Unavailable(String),
}

struct Worker {
    state: watch::Receiver<CertState>,
    priority: watch::Sender<Priority>,
    /// Wakes a worker that has no valid certificate out of its backoff (a connection waits).
    retry_now: Arc<Notify>,
    task: tokio::task::AbortHandle,
}

/// Handle to the manager; cheap to clone.
#[derive(Clone)]
pub struct CertManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CertManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertManager").finish_non_exhaustive()
    }
}

struct Inner {
    fetcher: Arc<dyn CertificateFetcher>,
    limiter: Limiter,
    config: CertManagerConfig,
    workers: Mutex<HashMap<Identity, Worker>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for worker in self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            worker.task.abort();
        }
    }
}

impl CertManager {
    /// A manager fetching through `fetcher`. Must be created inside a tokio runtime.
    pub fn new(fetcher: Arc<dyn CertificateFetcher>, config: CertManagerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                fetcher,
                limiter: Limiter::new(config.max_in_flight),
                config,
                workers: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn worker_state(&self, identity: &Identity, priority: Priority) -> watch::Receiver<CertState> {
        let mut workers = self.inner.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = workers.get(identity) {
            w.priority.send_if_modified(|p| {
                let raise = priority > *p;
                if raise {
                    *p = priority;
                }
                raise
            });
            if priority == Priority::Blocking
                && matches!(*w.state.borrow(), CertState::Unavailable(_))
            {
                w.retry_now.notify_one();
            }
            return w.state.clone();
        }
        let (state_tx, state_rx) = watch::channel(CertState::Initializing);
        let (prio_tx, prio_rx) = watch::channel(priority);
        let retry_now = Arc::new(Notify::new());
        let task = tokio::spawn(run_worker(
            WorkerContext {
                fetcher: self.inner.fetcher.clone(),
                limiter: self.inner.limiter.clone(),
                backoff: self.inner.config.backoff,
                identity: identity.clone(),
                retry_now: retry_now.clone(),
            },
            state_tx,
            prio_rx,
        ));
        workers.insert(
            identity.clone(),
            Worker {
                state: state_rx.clone(),
                priority: prio_tx,
                retry_now,
                task: task.abort_handle(),
            },
        );
        state_rx
    }

    /// Starts fetching `identity` in the background (warm-up priority).
    pub fn prefetch(&self, identity: &Identity) {
        let _ = self.worker_state(identity, Priority::Warmup);
    }

    /// Stops managing `identity` (its last local workload went away).
    pub fn forget(&self, identity: &Identity) {
        let removed = self
            .inner
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(identity);
        if let Some(w) = removed {
            w.task.abort();
        }
    }

    /// The current valid certificate, fetching on demand. Waits for the first fetch; fails if
    /// the last fetch failed and no unexpired certificate remains.
    pub async fn get(
        &self,
        identity: &Identity,
        priority: Priority,
    ) -> Result<Arc<WorkloadCertificate>, CertManagerError> {
        let mut state = self.worker_state(identity, priority);
        let failed_before = matches!(*state.borrow_and_update(), CertState::Unavailable(_));
        if priority == Priority::Blocking && failed_before {
            // A connection is waiting: the worker retries now (see `worker_state`); wait for
            // that attempt's outcome rather than failing on the previous one.
            let _ = tokio::time::timeout(BLOCKING_RETRY_WAIT, state.changed()).await;
        }
        let unavailable = |reason: String| CertManagerError::Unavailable {
            identity: identity.clone(),
            reason,
        };
        let settled = state
            .wait_for(|s| !matches!(s, CertState::Initializing))
            .await
            .map_err(|_| unavailable("manager stopped".into()))?
            .clone();
        match settled {
            CertState::Available(cert) if !cert.is_expired(SystemTime::now()) => Ok(cert),
            CertState::Available(_) => Err(unavailable("certificate expired".into())),
            CertState::Unavailable(reason) => Err(unavailable(reason)),
            CertState::Initializing => Err(unavailable("not fetched".into())),
        }
    }

    /// Every managed identity with its state (`Initializing`, `Available`, `Unavailable: …`)
    /// and current certificate, sorted by identity (for config dumps).
    pub fn dump(&self) -> Vec<(Identity, String, Option<Arc<WorkloadCertificate>>)> {
        let workers = self.inner.workers.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = workers
            .iter()
            .map(|(id, w)| {
                let (state, cert) = match &*w.state.borrow() {
                    CertState::Initializing => ("Initializing".to_owned(), None),
                    CertState::Available(c) => ("Available".to_owned(), Some(c.clone())),
                    CertState::Unavailable(e) => (format!("Unavailable: {e}"), None),
                };
                (id.clone(), state, cert)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Adapter presenting `identity`'s certificate on an HBONE server.
    pub fn server_certificates(&self, identity: Identity) -> IdentityCertificates {
        IdentityCertificates {
            manager: self.clone(),
            identity,
        }
    }
}

struct WorkerContext {
    fetcher: Arc<dyn CertificateFetcher>,
    limiter: Limiter,
    backoff: Backoff,
    identity: Identity,
    retry_now: Arc<Notify>,
}

async fn run_worker(
    ctx: WorkerContext,
    state: watch::Sender<CertState>,
    priority: watch::Receiver<Priority>,
) {
    let WorkerContext {
        fetcher,
        limiter,
        backoff,
        identity,
        retry_now,
    } = ctx;
    let mut current: Option<Arc<WorkloadCertificate>> = None;
    let mut failures = 0u32;
    loop {
        let now = SystemTime::now();
        if current.as_ref().is_some_and(|c| c.is_expired(now)) {
            tracing::warn!(identity = %identity, "certificate expired before renewal; failing closed");
            current = None;
            state.send_replace(CertState::Unavailable(
                "certificate expired and renewal failed".into(),
            ));
        }
        let prio = if current.is_some() {
            Priority::Background
        } else {
            *priority.borrow()
        };
        let attempt = tokio::time::Instant::now();
        let result = {
            let _permit = limiter.acquire(prio).await;
            fetcher.fetch(&identity).await
        };
        let now = SystemTime::now();
        let wait = match result {
            Ok(cert) => {
                failures = 0;
                let cert = Arc::new(cert);
                tracing::info!(identity = %identity, cert.serial = cert.serial(), "certificate issued");
                let wait = schedule::after_success(now, cert.refresh_at());
                current = Some(cert.clone());
                state.send_replace(CertState::Available(cert));
                wait
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = backoff.delay(failures, rand::random::<f64>());
                tracing::warn!(identity = %identity, error = %e, retry.in = ?delay, "certificate fetch failed");
                if current.is_none() {
                    state.send_replace(CertState::Unavailable(e.to_string()));
                }
                schedule::after_failure(now, current.as_ref().map(|c| c.not_after()), delay)
            }
        };
        let woken = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            () = retry_now.notified(), if current.is_none() => true,
        };
        if woken {
            // A waiting connection asked for a retry; still no more than one CSR per `initial`.
            tokio::time::sleep_until(attempt + backoff.initial).await;
        }
    }
}

impl ClientCertificates for CertManager {
    fn certificate<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> BoxFuture<'a, Option<Arc<WorkloadCertificate>>> {
        Box::pin(async move { self.get(identity, Priority::Blocking).await.ok() })
    }
}

/// Presents one identity's managed certificate on a server.
#[derive(Debug, Clone)]
pub struct IdentityCertificates {
    manager: CertManager,
    identity: Identity,
}

impl ServerCertificates for IdentityCertificates {
    fn certificate(
        &self,
        _local_addr: SocketAddr,
    ) -> BoxFuture<'_, Option<Arc<WorkloadCertificate>>> {
        Box::pin(async move {
            self.manager
                .get(&self.identity, Priority::Blocking)
                .await
                .ok()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::test_util::TestCa;

    fn id() -> Identity {
        "spiffe://cluster.local/ns/default/sa/app".parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn outage_fails_closed_and_a_waiting_connection_cuts_the_backoff_short() {
        let ca = TestCa::new(Duration::from_secs(3600));
        ca.set_down(true);
        let manager = CertManager::new(Arc::new(ca.clone()), CertManagerConfig::default());
        assert!(manager.get(&id(), Priority::Blocking).await.is_err());
        // Several failures: the backoff is now tens of seconds.
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert!(manager.get(&id(), Priority::Warmup).await.is_err());
        ca.set_down(false);
        // A blocked connection nudges the worker and waits for that retry: it gets the
        // certificate now, not at the end of a 30 s backoff.
        let before = tokio::time::Instant::now();
        let cert = manager.get(&id(), Priority::Blocking).await.unwrap();
        assert!(
            before.elapsed() < Duration::from_secs(2),
            "{:?}",
            before.elapsed()
        );
        assert_eq!(cert.identity(), &id());
        assert_eq!(ca.issued(), 1);
        manager.forget(&id());
    }

    #[tokio::test(start_paused = true)]
    async fn prefetch_then_get_shares_one_fetch() {
        let ca = TestCa::new(Duration::from_secs(3600));
        let manager = CertManager::new(Arc::new(ca.clone()), CertManagerConfig::default());
        manager.prefetch(&id());
        let a = manager.get(&id(), Priority::Blocking).await.unwrap();
        let b = manager.get(&id(), Priority::Background).await.unwrap();
        assert_eq!(a.serial(), b.serial());
        assert_eq!(ca.issued(), 1);
    }
}
