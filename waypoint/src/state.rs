//! The configuration the data path reads: one immutable [`State`] built from the typed xDS
//! resources, swapped whole through a watch channel whenever a resource changes. Requests take a
//! snapshot (`Store::current`) and never lock.
//!
//! Per cluster it holds the load balancer and the per-endpoint active-request counters; a
//! cluster whose resource and endpoints are unchanged keeps both (its round-robin cursor, ring
//! and counters survive unrelated pushes). Its circuit-breaker counters and outlier state
//! ([`ClusterRuntime`]) are kept by cluster name across every push.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use tokio::sync::watch;

use crate::model::lb::{Balancer, panics};
use crate::model::{Cluster, Config, Endpoint, Listener};
pub use crate::runtime::{ClusterRuntime, Slot};

/// One cluster ready for use.
#[derive(Debug)]
pub struct ClusterState {
    pub cluster: Arc<Cluster>,
    pub endpoints: Arc<Vec<Endpoint>>,
    pub balancer: Balancer,
    active: Vec<AtomicU32>,
    pub runtime: Arc<ClusterRuntime>,
}

impl ClusterState {
    fn new(
        cluster: Arc<Cluster>,
        endpoints: Arc<Vec<Endpoint>>,
        runtime: Arc<ClusterRuntime>,
    ) -> Self {
        let balancer =
            Balancer::with_panic_threshold(cluster.lb, &endpoints, cluster.panic_threshold);
        let active = endpoints.iter().map(|_| AtomicU32::new(0)).collect();
        Self {
            cluster,
            endpoints,
            balancer,
            active,
            runtime,
        }
    }

    /// Requests in flight to endpoint `i`.
    pub fn active(&self, i: usize) -> u32 {
        self.active.get(i).map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// Counts a request to endpoint `i` until the guard drops.
    pub fn start(self: &Arc<Self>, i: usize) -> ActiveGuard {
        if let Some(a) = self.active.get(i) {
            a.fetch_add(1, Ordering::Relaxed);
        }
        ActiveGuard {
            cluster: self.clone(),
            index: i,
        }
    }

    /// The balancer's choice, never an ejected endpoint unless so many are ejected that the
    /// cluster panics (then any; with a panic threshold of 0, `None` when all are ejected),
    /// skipping `tried` endpoints (previous attempts) when it can.
    pub fn pick(&self, hash: Option<u64>, tried: &[usize]) -> Option<usize> {
        use rand::Rng;
        let mut rng = rand::rng();
        let now = Instant::now();
        let mut ejected = match self.cluster.outlier {
            Some(_) => self.runtime.ejected(&self.endpoints, now),
            None => Default::default(),
        };
        let total = self.endpoints.len();
        if panics(total - ejected.len(), total, self.cluster.panic_threshold) {
            // Envoy's panic mode: too few hosts left, so every host takes traffic.
            ejected.clear();
        }
        if total > 0 && ejected.len() >= total {
            return None;
        }
        let out = |i: usize| ejected.contains(&i);
        let first = self.balancer.pick(
            hash,
            &|i| self.active(i),
            &|i| out(i) || tried.contains(&i),
            &mut || rng.random(),
        )?;
        if !out(first) {
            return Some(first);
        }
        // Every endpoint left was tried: try one again rather than an ejected one.
        self.balancer
            .pick(hash, &|i| self.active(i), &out, &mut || rng.random())
    }
}

/// Decrements an endpoint's active count on drop.
#[derive(Debug)]
pub struct ActiveGuard {
    cluster: Arc<ClusterState>,
    index: usize,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Some(a) = self.cluster.active.get(self.index) {
            a.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One immutable view of the configuration.
#[derive(Debug, Default)]
pub struct State {
    pub config: Config,
    /// Clusters that have both a Cluster and (possibly empty) endpoints.
    pub clusters: HashMap<String, Arc<ClusterState>>,
    /// Listeners by the port they serve.
    pub by_port: BTreeMap<u16, Arc<Listener>>,
    /// Every endpoint address → its (first) cluster, for workload-addressed traffic.
    pub endpoints: HashMap<SocketAddr, String>,
}

impl State {
    /// Builds a state from `config`, reusing `previous`'s cluster states where unchanged.
    pub fn build(config: Config, previous: &State) -> State {
        let mut clusters = HashMap::new();
        let mut endpoints = HashMap::new();
        let none = Arc::new(Vec::new());
        for (name, cluster) in &config.clusters {
            let eps = config.endpoints.get(name).unwrap_or(&none);
            let state = match previous.clusters.get(name) {
                Some(old)
                    if Arc::ptr_eq(&old.cluster, cluster) && Arc::ptr_eq(&old.endpoints, eps) =>
                {
                    old.clone()
                }
                Some(old) => {
                    old.runtime.retain(eps);
                    Arc::new(ClusterState::new(
                        cluster.clone(),
                        eps.clone(),
                        old.runtime.clone(),
                    ))
                }
                None => Arc::new(ClusterState::new(
                    cluster.clone(),
                    eps.clone(),
                    Arc::default(),
                )),
            };
            for e in eps.iter() {
                endpoints.entry(e.address).or_insert_with(|| name.clone());
            }
            clusters.insert(name.clone(), state);
        }
        let by_port = config
            .listeners
            .values()
            .map(|l| (l.address.port(), l.clone()))
            .collect();
        State {
            config,
            clusters,
            by_port,
            endpoints,
        }
    }
}

/// The shared, swappable state.
#[derive(Debug, Clone)]
pub struct Store {
    tx: Arc<watch::Sender<Arc<State>>>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(Arc::new(State::default()));
        Self { tx: Arc::new(tx) }
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<State> {
        self.tx.borrow().clone()
    }

    /// Replaces the configuration.
    pub fn publish(&self, config: Config) {
        let state = State::build(config, &self.current());
        self.tx.send_replace(Arc::new(state));
    }

    /// Wakes on every publish.
    pub fn subscribe(&self) -> watch::Receiver<Arc<State>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::action::AttemptOutcome;
    use crate::model::{CircuitBreakers, LbPolicy, OutlierDetection};

    fn cluster_state(panic_threshold: u32, hosts: u16) -> ClusterState {
        let cluster = Cluster {
            name: "c".into(),
            lb: LbPolicy::RoundRobin,
            connect_timeout: Duration::from_secs(1),
            circuit_breakers: CircuitBreakers::default(),
            outlier: Some(OutlierDetection {
                consecutive_5xx: 1,
                consecutive_gateway_failure: None,
                interval: Duration::from_secs(1),
                base_ejection_time: Duration::from_secs(30),
                max_ejection_time: Duration::from_secs(300),
                max_ejection_percent: 100,
                always_eject_one_host: false,
            }),
            http2: false,
            panic_threshold,
            max_requests_per_connection: None,
        };
        let endpoints = (0..hosts)
            .map(|p| Endpoint {
                address: SocketAddr::from(([10, 0, 0, 1], 8000 + p)),
                weight: 1,
                healthy: true,
                workload: None,
                hbone: false,
                identity: None,
                priority: 0,
            })
            .collect();
        ClusterState::new(Arc::new(cluster), Arc::new(endpoints), Arc::default())
    }

    fn eject(cs: &ClusterState, i: usize) {
        let o = cs.cluster.outlier.unwrap();
        cs.runtime
            .record(&o, &cs.endpoints, i, &AttemptOutcome::Status(500), "c");
    }

    #[test]
    fn ejected_hosts_are_skipped_until_none_is_left() {
        let cs = cluster_state(0, 2);
        eject(&cs, 0);
        for _ in 0..10 {
            assert_eq!(cs.pick(None, &[]), Some(1));
        }
        // The only host left was tried already: it is tried again rather than the ejected one.
        assert_eq!(cs.pick(None, &[1]), Some(1));
        eject(&cs, 1);
        assert_eq!(cs.pick(None, &[]), None, "no healthy upstream");
    }

    #[test]
    fn below_the_panic_threshold_every_host_takes_traffic() {
        let cs = cluster_state(50, 4);
        eject(&cs, 0);
        let picks: std::collections::BTreeSet<_> =
            (0..12).map(|_| cs.pick(None, &[]).unwrap()).collect();
        assert_eq!(picks, [1, 2, 3].into(), "75 % left: no panic");
        eject(&cs, 1);
        eject(&cs, 2);
        let picks: std::collections::BTreeSet<_> =
            (0..12).map(|_| cs.pick(None, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 3].into(), "25 % left: panic, all hosts");
    }
}
