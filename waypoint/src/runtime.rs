//! A cluster's live resilience state, kept by cluster name across configuration pushes: the
//! circuit-breaker counters (requests, pending requests, retries, connections in flight) that
//! the limits of the current [`Cluster`](crate::model::Cluster) are checked against, and the
//! outlier detector's per-host state.
//!
//! A [`Slot`] is one unit of a counter, released on drop; a released connection (or an
//! HTTP/1.1 connection becoming idle again) wakes the requests waiting in the pending queue.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::model::action::AttemptOutcome;
use crate::model::outlier::{self, HostOutlier};
use crate::model::{Endpoint, OutlierDetection};

/// Which circuit-breaker counter a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Requests,
    Pending,
    Retries,
    Connections,
}

/// Live state of one cluster.
#[derive(Debug, Default)]
pub struct ClusterRuntime {
    requests: AtomicU32,
    pending: AtomicU32,
    retries: AtomicU32,
    connections: AtomicU32,
    /// Woken when a connection closes or an HTTP/1.1 connection is idle again.
    freed: Notify,
    /// Requests listening on `freed` (only then is there anyone to wake: the request path
    /// skips the notify's lock otherwise).
    listening: AtomicU32,
    /// Overflows per resource (Envoy's `upstream_rq_pending_overflow`, `upstream_rq_retry_overflow`,
    /// `upstream_cx_overflow` and requests over `max_requests`).
    overflow: [AtomicU64; 4],
    hosts: Mutex<HashMap<SocketAddr, HostOutlier>>,
    /// Hosts ejected now (a fast path: no lock while nothing is ejected).
    ejected_now: AtomicU32,
    ejections_total: AtomicU64,
}

/// A request waiting for the pending queue to move.
pub struct Listening<'a> {
    runtime: &'a ClusterRuntime,
    freed: std::pin::Pin<Box<tokio::sync::futures::Notified<'a>>>,
}

impl Listening<'_> {
    pub async fn wait(mut self) {
        self.freed.as_mut().await;
    }
}

impl Drop for Listening<'_> {
    fn drop(&mut self) {
        self.runtime.listening.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One held unit of a circuit-breaker counter.
#[derive(Debug)]
pub struct Slot {
    runtime: Arc<ClusterRuntime>,
    resource: Resource,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.runtime
            .counter(self.resource)
            .fetch_sub(1, Ordering::AcqRel);
        if self.resource == Resource::Connections {
            self.runtime.wake();
        }
    }
}

fn index(r: Resource) -> usize {
    match r {
        Resource::Requests => 0,
        Resource::Pending => 1,
        Resource::Retries => 2,
        Resource::Connections => 3,
    }
}

impl ClusterRuntime {
    fn counter(&self, r: Resource) -> &AtomicU32 {
        match r {
            Resource::Requests => &self.requests,
            Resource::Pending => &self.pending,
            Resource::Retries => &self.retries,
            Resource::Connections => &self.connections,
        }
    }

    /// Takes one unit of `r` if fewer than `limit` are held; counts an overflow otherwise.
    pub fn try_acquire(self: &Arc<Self>, r: Resource, limit: u32) -> Option<Slot> {
        let c = self.counter(r);
        let taken = c
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            self.overflow[index(r)].fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot {
            runtime: self.clone(),
            resource: r,
        })
    }

    /// As [`Self::try_acquire`], without counting an overflow (a retry of an attempt already
    /// counted).
    pub fn try_acquire_quiet(self: &Arc<Self>, r: Resource, limit: u32) -> Option<Slot> {
        self.counter(r)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                runtime: self.clone(),
                resource: r,
            })
    }

    /// Forgets hosts that are no longer endpoints of the cluster (an ejected one stops counting
    /// as ejected).
    pub fn retain(&self, endpoints: &[Endpoint]) {
        let keep: HashSet<SocketAddr> = endpoints.iter().map(|e| e.address).collect();
        let mut hosts = self.hosts();
        hosts.retain(|addr, h| {
            let stays = keep.contains(addr);
            if !stays && h.ejected_until.is_some() {
                self.ejected_now.fetch_sub(1, Ordering::AcqRel);
            }
            stays
        });
    }

    /// Units of `r` held now.
    pub fn held(&self, r: Resource) -> u32 {
        self.counter(r).load(Ordering::Acquire)
    }

    /// Overflows of `r` so far.
    pub fn overflows(&self, r: Resource) -> u64 {
        self.overflow[index(r)].load(Ordering::Relaxed)
    }

    /// Wakes the pending queue (an HTTP/1.1 connection is idle again).
    pub fn connection_idle(&self) {
        self.wake();
    }

    fn wake(&self) {
        if self.listening.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// Starts listening for the next wake of the pending queue. Look for a free connection
    /// again after this and before awaiting it: a wake in between is then not lost (the
    /// future sees every wake after its creation).
    pub fn listen(&self) -> Listening<'_> {
        self.listening.fetch_add(1, Ordering::SeqCst);
        Listening {
            runtime: self,
            freed: Box::pin(self.freed.notified()),
        }
    }

    fn hosts(&self) -> MutexGuard<'_, HashMap<SocketAddr, HostOutlier>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Indexes of `endpoints` ejected at `now`; hosts whose time is up are restored.
    pub fn ejected(&self, endpoints: &[Endpoint], now: Instant) -> HashSet<usize> {
        if self.ejected_now.load(Ordering::Acquire) == 0 {
            return HashSet::new();
        }
        let mut hosts = self.hosts();
        let mut out = HashSet::new();
        for (addr, h) in hosts.iter_mut() {
            if h.restore_if_due(now) {
                self.ejected_now.fetch_sub(1, Ordering::AcqRel);
                tracing::info!(host = %addr, "outlier detection: host restored");
            }
        }
        for (i, e) in endpoints.iter().enumerate() {
            if hosts.get(&e.address).is_some_and(|h| h.is_ejected(now)) {
                out.insert(i);
            }
        }
        out
    }

    /// Feeds one attempt's outcome on `endpoints[i]` to the detector; ejects the host when a
    /// threshold is reached and the cap allows (else the detector's counts start over, as in
    /// Envoy). A host whose ejection time is up is restored first.
    pub fn record(
        &self,
        cfg: &OutlierDetection,
        endpoints: &[Endpoint],
        i: usize,
        outcome: &AttemptOutcome,
        cluster: &str,
    ) {
        let Some(ep) = endpoints.get(i) else { return };
        let now = Instant::now();
        let mut hosts = self.hosts();
        let recorded = hosts
            .entry(ep.address)
            .or_default()
            .record(cfg, outcome, now);
        if recorded.restored {
            self.ejected_now.fetch_sub(1, Ordering::AcqRel);
            tracing::info!(host = %ep.address, "outlier detection: host restored");
        }
        let Some(cause) = recorded.cause else { return };
        let ejected = endpoints
            .iter()
            .filter(|e| hosts.get(&e.address).is_some_and(|h| h.is_ejected(now)))
            .count();
        let Some(h) = hosts.get_mut(&ep.address) else {
            return;
        };
        if !outlier::may_eject(
            ejected,
            endpoints.len(),
            cfg.max_ejection_percent,
            cfg.always_eject_one_host,
        ) {
            h.refused(cfg);
            tracing::debug!(%cluster, host = %ep.address, cause = cause.as_str(), ejected,
                "outlier detection: ejection skipped (max_ejection_percent)");
            return;
        }
        let until = h.eject(cfg, now);
        self.ejected_now.fetch_add(1, Ordering::AcqRel);
        self.ejections_total.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%cluster, host = %ep.address, cause = cause.as_str(),
            ejections = h.ejections,
            seconds = until.saturating_duration_since(now).as_secs_f64(),
            "outlier detection: host ejected");
    }

    /// Hosts ejected now and ejections so far.
    pub fn ejection_counts(&self) -> (u32, u64) {
        (
            self.ejected_now.load(Ordering::Acquire),
            self.ejections_total.load(Ordering::Relaxed),
        )
    }

    /// A host's detector state, for the config dump.
    pub fn host(&self, addr: SocketAddr) -> Option<HostOutlier> {
        self.hosts().get(&addr).cloned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            address: SocketAddr::from(([10, 0, 0, 1], port)),
            weight: 1,
            healthy: true,
            workload: None,
            hbone: false,
            identity: None,
            priority: 0,
        }
    }

    #[test]
    fn slots_stop_at_the_limit_and_come_back_on_drop() {
        let rt = Arc::new(ClusterRuntime::default());
        let a = rt.try_acquire(Resource::Requests, 2).unwrap();
        let _b = rt.try_acquire(Resource::Requests, 2).unwrap();
        assert!(rt.try_acquire(Resource::Requests, 2).is_none());
        assert_eq!(rt.overflows(Resource::Requests), 1);
        drop(a);
        assert_eq!(rt.held(Resource::Requests), 1);
        assert!(rt.try_acquire(Resource::Requests, 2).is_some());
        assert!(rt.try_acquire(Resource::Pending, 0).is_none());
    }

    #[tokio::test]
    async fn a_listener_hears_a_slot_freed_before_it_waits() {
        let rt = Arc::new(ClusterRuntime::default());
        let slot = rt.try_acquire(Resource::Connections, 1).unwrap();
        let listening = rt.listen();
        // Freed between listening and waiting: not lost.
        drop(slot);
        tokio::time::timeout(Duration::from_secs(1), listening.wait())
            .await
            .unwrap();
        let idle = rt.listen();
        rt.connection_idle();
        tokio::time::timeout(Duration::from_secs(1), idle.wait())
            .await
            .unwrap();
        assert_eq!(rt.listening.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn consecutive_errors_eject_within_the_cap() {
        let rt = ClusterRuntime::default();
        let cfg = OutlierDetection {
            consecutive_5xx: 2,
            consecutive_gateway_failure: None,
            interval: Duration::from_secs(1),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
            always_eject_one_host: false,
        };
        let eps = vec![ep(1), ep(2)];
        for _ in 0..2 {
            rt.record(&cfg, &eps, 0, &AttemptOutcome::Status(503), "c");
        }
        assert_eq!(rt.ejected(&eps, Instant::now()), HashSet::from([0]));
        // The second host would pass the 50 % cap: kept.
        for _ in 0..2 {
            rt.record(&cfg, &eps, 1, &AttemptOutcome::Status(500), "c");
        }
        assert_eq!(rt.ejected(&eps, Instant::now()), HashSet::from([0]));
        assert_eq!(rt.ejection_counts(), (1, 1));
        assert_eq!(rt.host(eps[0].address).unwrap().ejections, 1);
    }
}
