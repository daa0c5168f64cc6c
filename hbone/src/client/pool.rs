//! The connection pool: reservation of stream slots, one dial per key, idle release.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::time::Instant;
use tracing::Instrument;

use super::connect::{ConnectRequest, Dialer, dial};
use super::{ClientCertificates, ClientConfig, ClientError, PoolKey};
use crate::h2_settings::keepalive;
use crate::stream::H2Stream;

/// Attempts per `connect` when a pooled connection turns out dead (GOAWAY, reset).
const ATTEMPTS: usize = 3;

/// A pooled HBONE client. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("connections", &self.total_connections())
            .finish()
    }
}

struct Inner {
    config: ClientConfig,
    certs: Arc<dyn ClientCertificates>,
    dialer: Arc<dyn Dialer>,
    state: Mutex<HashMap<PoolKey, Entry>>,
}

#[derive(Default)]
struct Entry {
    conns: Vec<Arc<Conn>>,
    dial: Arc<tokio::sync::Mutex<()>>,
}

struct Conn {
    send: h2::client::SendRequest<Bytes>,
    limit: usize,
    /// Open streams; changed only under the pool lock.
    active: AtomicUsize,
    idle_since: Mutex<Instant>,
    dead: AtomicBool,
}

/// Holds one stream slot; released on drop.
struct Slot {
    pool: Weak<Inner>,
    conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(inner) = self.pool.upgrade() {
            let _state = inner.lock();
            if self.conn.active.fetch_sub(1, Ordering::SeqCst) == 1 {
                *self
                    .conn
                    .idle_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Instant::now();
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<PoolKey, Entry>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reserve(self: &Arc<Self>, key: &PoolKey) -> Option<Slot> {
        let state = self.lock();
        let conn = state.get(key)?.conns.iter().find(|c| {
            !c.dead.load(Ordering::SeqCst) && c.active.load(Ordering::SeqCst) < c.limit
        })?;
        conn.active.fetch_add(1, Ordering::SeqCst);
        Some(Slot {
            pool: Arc::downgrade(self),
            conn: conn.clone(),
        })
    }

    fn forget(&self, key: &PoolKey, conn: &Arc<Conn>) {
        conn.dead.store(true, Ordering::SeqCst);
        let mut state = self.lock();
        if let Some(entry) = state.get_mut(key) {
            entry.conns.retain(|c| !Arc::ptr_eq(c, conn));
            if entry.conns.is_empty() && Arc::strong_count(&entry.dial) == 1 {
                state.remove(key);
            }
        }
    }

    /// Removes `conn` if it has been idle for the release timeout; true if removed.
    fn release_if_idle(&self, key: &PoolKey, conn: &Arc<Conn>) -> bool {
        {
            let _state = self.lock();
            let idle_since = *conn.idle_since.lock().unwrap_or_else(|e| e.into_inner());
            if conn.active.load(Ordering::SeqCst) != 0
                || idle_since.elapsed() < self.config.idle_timeout
            {
                return false;
            }
            conn.dead.store(true, Ordering::SeqCst);
        }
        self.forget(key, conn);
        true
    }

    async fn dial_and_reserve(self: &Arc<Self>, key: &PoolKey) -> Result<Slot, ClientError> {
        let dial_lock = self.lock().entry(key.clone()).or_default().dial.clone();
        let _one_dial = dial_lock.lock().await;
        if let Some(slot) = self.reserve(key) {
            return Ok(slot);
        }
        let no_cert = || ClientError::NoCertificate {
            identity: key.src_identity().clone(),
        };
        let cert = self
            .certs
            .certificate(key.src_identity())
            .await
            .ok_or_else(no_cert)?;
        if cert.is_expired(std::time::SystemTime::now()) {
            return Err(no_cert());
        }
        let dialled = dial(&self.config, self.dialer.as_ref(), cert, key).await?;
        let conn = Arc::new(Conn {
            send: dialled.send,
            limit: dialled.stream_limit,
            active: AtomicUsize::new(1),
            idle_since: Mutex::new(Instant::now()),
            dead: AtomicBool::new(false),
        });
        self.lock()
            .entry(key.clone())
            .or_default()
            .conns
            .push(conn.clone());
        tracing::debug!(dst.addr = %key.dst(), streams.limit = conn.limit, "HBONE connection established");
        let span = tracing::debug_span!("hbone.outbound", dst.addr = %key.dst());
        tokio::spawn(
            drive(
                Arc::downgrade(self),
                key.clone(),
                conn.clone(),
                dialled.connection,
                dialled.ping,
            )
            .instrument(span),
        );
        Ok(Slot {
            pool: Arc::downgrade(self),
            conn,
        })
    }
}

type Connection =
    h2::client::Connection<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Bytes>;

/// Drives one connection: I/O, keepalive, idle release. Dropping the h2 connection closes it.
async fn drive(
    pool: Weak<Inner>,
    key: PoolKey,
    conn: Arc<Conn>,
    mut connection: Connection,
    ping: Option<h2::PingPong>,
) {
    let Some(config) = pool.upgrade().map(|p| p.config.clone()) else {
        return;
    };
    let keepalive = async move {
        match ping {
            Some(p) => keepalive(p, config.h2.ping_interval, config.h2.ping_timeout).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(keepalive);
    let tick = (config.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(10));
    let mut ticker = tokio::time::interval(tick);
    loop {
        tokio::select! {
            r = &mut connection => {
                tracing::debug!(result = ?r.err(), "HBONE connection closed");
                break;
            }
            e = &mut keepalive => {
                tracing::info!(error = %e, "HBONE keepalive failed");
                break;
            }
            _ = ticker.tick() => {
                let Some(inner) = pool.upgrade() else { break };
                if inner.release_if_idle(&key, &conn) {
                    tracing::debug!("idle HBONE connection released");
                    break;
                }
            }
        }
    }
    if let Some(inner) = pool.upgrade() {
        inner.forget(&key, &conn);
    }
}

/// Whether a stream error means "this connection is unusable, try another".
fn retriable(e: &h2::Error) -> bool {
    e.is_go_away() || e.is_io() || e.reason() == Some(h2::Reason::REFUSED_STREAM)
}

impl Pool {
    /// A pool that gets certificates from `certs` and opens TCP with `dialer`.
    pub fn new(
        config: ClientConfig,
        certs: Arc<dyn ClientCertificates>,
        dialer: Arc<dyn Dialer>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                certs,
                dialer,
                state: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Opens a tunnel: reuses a pooled connection with a free slot or dials a new one.
    /// Any non-200 answer is an error and no byte is sent.
    pub async fn connect(
        &self,
        key: &PoolKey,
        request: &ConnectRequest,
    ) -> Result<H2Stream, ClientError> {
        let authority = request.authority.to_string();
        let http = request.to_http().map_err(|e| ClientError::Status {
            dst: key.dst(),
            authority: format!("{authority} ({e})"),
            status: StatusCode::BAD_REQUEST,
            headers: Box::default(),
        })?;
        for _ in 0..ATTEMPTS {
            let slot = match self.inner.reserve(key) {
                Some(slot) => slot,
                None => self.inner.dial_and_reserve(key).await?,
            };
            let stream_err = |source| ClientError::Stream {
                dst: key.dst(),
                authority: authority.clone(),
                source,
            };
            let opened = async {
                let mut send = slot.conn.send.clone().ready().await?;
                let (response, send_stream) = send.send_request(http.clone(), false)?;
                Ok::<_, h2::Error>((response.await?, send_stream))
            }
            .await;
            let (response, send_stream) = match opened {
                Ok(ok) => ok,
                Err(e) if retriable(&e) => {
                    self.inner.forget(key, &slot.conn);
                    continue;
                }
                Err(e) => return Err(stream_err(e)),
            };
            if response.status() != StatusCode::OK {
                return Err(ClientError::Status {
                    dst: key.dst(),
                    authority,
                    status: response.status(),
                    headers: Box::new(response.headers().clone()),
                });
            }
            let recv = response.into_body();
            return Ok(H2Stream::new(send_stream, recv, Some(Box::new(slot))));
        }
        Err(ClientError::Exhausted {
            dst: key.dst(),
            attempts: ATTEMPTS,
        })
    }

    /// Live pooled connections for `key`.
    pub fn connection_count(&self, key: &PoolKey) -> usize {
        self.inner.lock().get(key).map_or(0, |e| e.conns.len())
    }

    /// Live pooled connections overall.
    pub fn total_connections(&self) -> usize {
        self.inner.lock().values().map(|e| e.conns.len()).sum()
    }
}
