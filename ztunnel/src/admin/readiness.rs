//! Readiness tracking: components register what they still wait for; the tunnel is ready when nothing is pending.
//!
//! Owns: the pending set and its guards. Does not own: serving it (see [`super::readiness_server`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The set of pending start-up items. Cheap to clone; clones share the set.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    inner: Arc<Mutex<Pending>>,
}

#[derive(Debug, Default)]
struct Pending {
    next_id: u64,
    items: BTreeMap<u64, String>,
}

impl Readiness {
    /// An empty (ready) tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `name` pending until the returned guard is dropped or [`BlockReady::ready`] is called. Names need not
    /// be unique (e.g. one `proxy` per pod).
    pub fn register(&self, name: &str) -> BlockReady {
        let mut pending = self.lock();
        let id = pending.next_id;
        pending.next_id += 1;
        pending.items.insert(id, name.to_owned());
        tracing::debug!(item = name, "readiness: pending");
        BlockReady {
            readiness: self.clone(),
            id,
        }
    }

    /// Pending items in registration order.
    pub fn pending(&self) -> Vec<String> {
        self.lock().items.values().cloned().collect()
    }

    /// True when nothing is pending.
    pub fn is_ready(&self) -> bool {
        self.lock().items.is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps one item pending while alive.
#[must_use = "the item is ready as soon as this guard is dropped"]
#[derive(Debug)]
pub struct BlockReady {
    readiness: Readiness,
    id: u64,
}

impl BlockReady {
    /// Marks the item ready (same as dropping the guard).
    pub fn ready(self) {}
}

impl Drop for BlockReady {
    fn drop(&mut self) {
        let mut pending = self.readiness.lock();
        if let Some(name) = pending.items.remove(&self.id) {
            tracing::debug!(item = %name, "readiness: ready");
            if pending.items.is_empty() {
                tracing::info!("ready: no start-up items pending");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_until_guards_go() {
        let readiness = Readiness::new();
        assert!(readiness.is_ready());
        let a = readiness.register("state manager");
        let b = readiness.register("proxy");
        let c = readiness.clone().register("proxy");
        assert_eq!(readiness.pending(), ["state manager", "proxy", "proxy"]);
        b.ready();
        assert_eq!(readiness.pending(), ["state manager", "proxy"]);
        drop(a);
        drop(c);
        assert!(readiness.is_ready());
        assert!(readiness.pending().is_empty());
    }
}
