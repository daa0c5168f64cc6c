//! Where a server's resources come from: a watch of the [`Snapshot`] a client should see,
//! chosen from the client's `Node` (sent on the first request of each stream).

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::watch;

use crate::Snapshot;

/// Chooses and follows the snapshot of one client. The server diffs each new snapshot against
/// what the client already has and sends only changes.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The snapshots for `node`, or a status (e.g. `permission_denied`, `invalid_argument`) that
    /// ends the stream.
    fn watch(&self, node: &Node) -> Result<watch::Receiver<Arc<Snapshot>>, tonic::Status>;
}

/// Every client sees the same snapshots.
#[derive(Debug, Clone)]
pub struct SharedSnapshot {
    rx: watch::Receiver<Arc<Snapshot>>,
}

impl SharedSnapshot {
    pub fn new(rx: watch::Receiver<Arc<Snapshot>>) -> Self {
        SharedSnapshot { rx }
    }
}

impl SnapshotSource for SharedSnapshot {
    fn watch(&self, _node: &Node) -> Result<watch::Receiver<Arc<Snapshot>>, tonic::Status> {
        Ok(self.rx.clone())
    }
}
