//! The connected clients, for the debug dump: one entry per open stream, removed when the stream ends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

use super::metrics::Metrics;
use super::session::{Dump, StreamKind};

/// Who is on a stream.
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    pub(crate) node_id: String,
    pub(crate) kind: StreamKind,
    pub(crate) peer: Option<SocketAddr>,
}

#[derive(Clone)]
struct Entry {
    info: ClientInfo,
    session: Arc<Mutex<dyn Dump>>,
}

/// Open streams by stream id.
#[derive(Default)]
pub(crate) struct Clients {
    streams: Mutex<BTreeMap<u64, Entry>>,
}

/// Locks a mutex whatever a panicking holder left behind (the state is still the best we have for a dump).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Clients {
    /// Adds a stream; the returned guard removes it when dropped.
    pub(crate) fn add(
        self: &Arc<Self>,
        id: u64,
        info: ClientInfo,
        session: Arc<Mutex<dyn Dump>>,
        metrics: &Metrics,
    ) -> Registration {
        lock(&self.streams).insert(id, Entry { info, session });
        metrics.connected().inc();
        Registration {
            clients: self.clone(),
            id,
            metrics: metrics.clone(),
        }
    }

    /// Every open stream: node, stream kind, peer, and per type its session state. Sessions are locked one
    /// at a time, after the list is released.
    pub(crate) fn dump(&self) -> Value {
        let entries: Vec<(u64, Entry)> = lock(&self.streams)
            .iter()
            .map(|(id, e)| (*id, e.clone()))
            .collect();
        let clients: Vec<Value> = entries
            .into_iter()
            .map(|(id, e)| {
                json!({
                    "node_id": e.info.node_id,
                    "stream": e.info.kind.as_str(),
                    "stream_id": id,
                    "peer": e.info.peer.map(|p| p.to_string()),
                    "types": lock(&*e.session).dump(),
                })
            })
            .collect();
        json!({ "clients": clients })
    }
}

/// Keeps a stream listed while alive.
pub(crate) struct Registration {
    clients: Arc<Clients>,
    id: u64,
    metrics: Metrics,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.clients.streams).remove(&self.id);
        self.metrics.connected().dec();
    }
}
