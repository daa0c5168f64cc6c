//! Which snapshot each xDS client sees, by the kind of its node (see `translate::node_kind`):
//! node tunnels get workloads and policies, a waypoint gets its Gateway's Envoy resources, and
//! any other client (Envoy, proxyless gRPC) the proxyless set. A waypoint that connects before
//! its Gateway exists gets an empty set and is updated when it appears.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use xds::pb::envoy::config::core::v3::Node;
use xds::{Snapshot, SnapshotSource, type_url};

use crate::translate::{NodeKind, Translation, node_kind};

const ENVOY_TYPES: [&str; 4] = [
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::LISTENER,
    type_url::ROUTE,
];

fn declared(mut s: Snapshot, types: &[&str]) -> Arc<Snapshot> {
    for t in types {
        s.declare(t);
    }
    Arc::new(s)
}

type SnapshotTx = watch::Sender<Arc<Snapshot>>;

/// The snapshots of the current translation, one watch per audience.
pub struct MeshSource {
    ztunnel: watch::Sender<Arc<Snapshot>>,
    proxyless: watch::Sender<Arc<Snapshot>>,
    waypoints: Mutex<BTreeMap<(String, String), SnapshotTx>>,
}

impl Default for MeshSource {
    fn default() -> Self {
        MeshSource {
            ztunnel: watch::channel(declared(
                Snapshot::new(),
                &[type_url::ADDRESS, type_url::AUTHORIZATION],
            ))
            .0,
            proxyless: watch::channel(declared(Snapshot::new(), &ENVOY_TYPES)).0,
            waypoints: Mutex::default(),
        }
    }
}

impl MeshSource {
    /// Publishes a new translation; clients whose snapshot did not change are not woken.
    pub fn publish(&self, t: Translation) {
        let set = |tx: &watch::Sender<Arc<Snapshot>>, s: Arc<Snapshot>| {
            tx.send_if_modified(|cur| {
                if **cur == *s {
                    return false;
                }
                *cur = s;
                true
            });
        };
        set(
            &self.ztunnel,
            declared(t.ztunnel, &[type_url::ADDRESS, type_url::AUTHORIZATION]),
        );
        set(&self.proxyless, declared(t.proxyless, &ENVOY_TYPES));
        let mut waypoints = self.waypoints.lock().unwrap_or_else(|e| e.into_inner());
        let mut fresh = t.waypoints;
        for (key, tx) in waypoints.iter() {
            let snap = fresh.remove(key).unwrap_or_default();
            set(tx, declared(snap, &ENVOY_TYPES));
        }
        for (key, snap) in fresh {
            waypoints.insert(key, watch::channel(declared(snap, &ENVOY_TYPES)).0);
        }
    }

    /// The current snapshot of the node tunnels (for benchmarks and debugging).
    pub fn ztunnel_snapshot(&self) -> Arc<Snapshot> {
        self.ztunnel.borrow().clone()
    }
}

impl SnapshotSource for MeshSource {
    fn watch(&self, node: &Node) -> Result<watch::Receiver<Arc<Snapshot>>, tonic::Status> {
        Ok(match node_kind(node) {
            NodeKind::Ztunnel => self.ztunnel.subscribe(),
            NodeKind::Proxyless => self.proxyless.subscribe(),
            NodeKind::Waypoint { namespace, name } => {
                let mut w = self.waypoints.lock().unwrap_or_else(|e| e.into_inner());
                w.entry((namespace, name))
                    .or_insert_with(|| watch::channel(declared(Snapshot::new(), &ENVOY_TYPES)).0)
                    .subscribe()
            }
        })
    }
}
