//! The configuration the data path reads: one immutable [`State`] built from the typed xDS
//! resources, swapped whole through a watch channel whenever a resource changes. Requests take a
//! snapshot (`Store::current`) and never lock.
//!
//! Per cluster it holds the load balancer and the per-endpoint active-request counters; a
//! cluster whose resource and endpoints are unchanged keeps both (its round-robin cursor, ring
//! and counters survive unrelated pushes).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::watch;

use crate::model::lb::Balancer;
use crate::model::{Cluster, Config, Endpoint, Listener};

/// One cluster ready for use.
#[derive(Debug)]
pub struct ClusterState {
    pub cluster: Arc<Cluster>,
    pub endpoints: Arc<Vec<Endpoint>>,
    pub balancer: Balancer,
    active: Vec<AtomicU32>,
}

impl ClusterState {
    fn new(cluster: Arc<Cluster>, endpoints: Arc<Vec<Endpoint>>) -> Self {
        let balancer = Balancer::new(cluster.lb, &endpoints);
        let active = endpoints.iter().map(|_| AtomicU32::new(0)).collect();
        Self {
            cluster,
            endpoints,
            balancer,
            active,
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

    /// The balancer's choice, skipping `tried` endpoints (previous attempts) when it can.
    pub fn pick(&self, hash: Option<u64>, tried: &[usize]) -> Option<usize> {
        use rand::Rng;
        let mut rng = rand::rng();
        self.balancer.pick(
            hash,
            &|i| self.active(i),
            &|i| tried.contains(&i),
            &mut || rng.random(),
        )
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
                _ => Arc::new(ClusterState::new(cluster.clone(), eps.clone())),
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
