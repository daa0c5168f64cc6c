//! Open inbound connections and their authorization inputs, re-checked on every policy update
//! (spec §2.7: "all open inbound connections are re-checked; those now denied are closed").
//!
//! Owns the registry and the re-check loop. The verdict is [`crate::authz`]'s; closing is the
//! connection's own business once its token is cancelled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::authz::{self, ConnectionInfo, Verdict};
use crate::state::Snapshot;

struct Tracked {
    workload_uid: String,
    info: ConnectionInfo,
    cancel: CancellationToken,
}

/// Registry of open inbound connections. Cheap to clone.
#[derive(Clone, Default)]
pub struct ConnectionTracker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Tracked>>,
}

/// Removes the connection from the registry when dropped.
pub struct TrackGuard {
    id: u64,
    inner: Arc<Inner>,
    token: CancellationToken,
}

impl TrackGuard {
    /// Cancelled when a policy update denies the connection.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        self.inner.lock().remove(&self.id);
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Tracked>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ConnectionTracker {
    /// Tracks an authorized connection to `workload_uid`.
    pub fn track(&self, workload_uid: &str, info: ConnectionInfo) -> TrackGuard {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        self.inner.lock().insert(
            id,
            Tracked {
                workload_uid: workload_uid.to_owned(),
                info,
                cancel: token.clone(),
            },
        );
        TrackGuard {
            id,
            inner: self.inner.clone(),
            token,
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-evaluates every connection against `snap`; returns how many were closed.
    pub fn recheck(&self, snap: &Snapshot) -> usize {
        let conns = self.inner.lock();
        let mut closed = 0;
        for t in conns.values() {
            if t.cancel.is_cancelled() {
                continue;
            }
            let verdict = match snap.workload(&t.workload_uid) {
                Some(w) => authz::evaluate(
                    authz::applicable(snap.policies(), w)
                        .into_iter()
                        .map(|p| p.as_ref()),
                    &t.info,
                ),
                // The workload is gone: nothing left to authorize against.
                None => Verdict::Deny { policy: None },
            };
            if let Verdict::Deny { policy } = verdict {
                tracing::info!(
                    src.addr = %t.info.src_ip,
                    src.identity = ?t.info.src_identity.as_ref().map(|i| i.to_string()),
                    dst.addr = %std::net::SocketAddr::new(t.info.dst_ip, t.info.dst_port),
                    policy = policy.as_deref().unwrap_or("-"),
                    "policy update denies an open connection; closing it"
                );
                t.cancel.cancel();
                closed += 1;
            }
        }
        closed
    }

    /// Re-checks on every snapshot change until the channel closes.
    pub async fn run(self, mut updates: watch::Receiver<Arc<Snapshot>>) {
        while updates.changed().await.is_ok() {
            let snap = updates.borrow_and_update().clone();
            self.recheck(&snap);
        }
    }
}
