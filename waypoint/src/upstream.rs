//! Upstream connections: dial an endpoint (HBONE to its node tunnel at `ip:15008` under the
//! waypoint's identity, expecting the endpoint's identity, authority `podIP:targetPort`; or plain
//! TCP for endpoints outside the mesh), then HTTP/1.1 or HTTP/2 on top, pooled per endpoint.
//!
//! HTTP/1.1 senders go back to an idle list once their response has been read to the end
//! (hyper's `ready()` resolves then); an idle connection the server closed is detected when the
//! request could not be written (hyper hands the request back) and the request goes on a fresh
//! connection. HTTP/2 uses one multiplexed connection per endpoint.
//!
//! Circuit breaking: every connection holds a slot of its cluster's `max_connections` for its
//! lifetime. A request that finds no idle connection and no free slot waits in the pending
//! queue (a slot of `max_pending_requests`) until a connection is idle again or closes; a full
//! queue is an overflow (`UO`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hbone::Identity;
use hbone::client::{ConnectRequest, Pool, PoolKey};
use hbone::headers::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::body::{Observed, ProxyBody, boxed};
use crate::model::Endpoint;
use crate::runtime::{Resource, Slot};
use crate::state::ClusterState;

/// Idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 64;
/// How long a pooled HTTP/1.1 sender may take to become ready again.
const READY_WAIT: Duration = Duration::from_millis(100);
/// The node tunnel's HBONE port.
pub const HBONE_PORT: u16 = 15008;

/// Any upstream byte stream.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Why an upstream attempt failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {addr} timed out")]
    ConnectTimeout { addr: SocketAddr },
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HBONE to {addr}: {source}")]
    Hbone {
        addr: SocketAddr,
        #[source]
        source: hbone::client::ClientError,
    },
    #[error("HTTP handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("request to {addr}: {source}")]
    Request {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    /// No idle connection, no connection slot, and the pending queue is full.
    #[error("overflow: {cluster} is at max connections and max pending requests")]
    Overflow { cluster: String },
}

impl UpstreamError {
    /// Whether the connection never carried the request (connect-failure, for retries).
    pub fn is_connect_failure(&self) -> bool {
        !matches!(
            self,
            UpstreamError::Request { .. } | UpstreamError::Overflow { .. }
        )
    }
    /// Envoy's `response_flags` for this failure.
    pub fn response_flag(&self) -> &'static str {
        match self {
            UpstreamError::Request { .. } => "UR",
            UpstreamError::Overflow { .. } => "UO",
            _ => "UF",
        }
    }
}

/// Where and how to send one attempt.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub endpoint: &'a Endpoint,
    pub http2: bool,
    /// The endpoint's cluster: connect timeout, circuit breakers and their counters.
    pub cluster: &'a ClusterState,
    /// The downstream client, for the tunnel's `forwarded` header.
    pub client: SocketAddr,
}

impl Target<'_> {
    fn connect_timeout(&self) -> Duration {
        self.cluster.cluster.connect_timeout
    }
}

/// The pending queue is full.
struct Overflowed;

fn overflow(t: &Target<'_>) -> UpstreamError {
    UpstreamError::Overflow {
        cluster: t.cluster.cluster.name.clone(),
    }
}

/// An idle HTTP/1.1 connection and how many requests it has carried.
struct PooledH1 {
    sender: http1::SendRequest<ProxyBody>,
    used: u32,
}

/// Pools are per cluster (its runtime, stable across pushes) and endpoint: a connection holds a
/// slot of the cluster that opened it and is used by that cluster only.
type Key = (usize, SocketAddr);

fn key(t: &Target<'_>) -> Key {
    (Arc::as_ptr(&t.cluster.runtime) as usize, t.endpoint.address)
}

#[derive(Default)]
struct Idle {
    h1: HashMap<Key, Vec<PooledH1>>,
    h2: HashMap<Key, http2::SendRequest<ProxyBody>>,
}

/// The upstream side of the proxy. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    hbone: Pool,
    identity: Identity,
    idle: Arc<Mutex<Idle>>,
}

impl Upstream {
    pub fn new(hbone: Pool, identity: Identity) -> Self {
        Self {
            hbone,
            identity,
            idle: Arc::default(),
        }
    }

    fn idle(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a byte stream to the endpoint (for HTTP, TCP proxying or an upgraded connection).
    pub async fn dial(&self, t: Target<'_>) -> Result<Box<dyn Io>, UpstreamError> {
        let ep = t.endpoint;
        if ep.hbone {
            let dst = SocketAddr::new(ep.address.ip(), HBONE_PORT);
            let key = PoolKey::new(
                self.identity.clone(),
                ep.identity.iter().cloned().collect(),
                None,
                dst,
            );
            let mut req = ConnectRequest::new(Authority::Addr(ep.address));
            req.forwarded = Some((t.client, None));
            let stream = tokio::time::timeout(t.connect_timeout(), self.hbone.connect(&key, &req))
                .await
                .map_err(|_| UpstreamError::ConnectTimeout { addr: dst })?
                .map_err(|source| UpstreamError::Hbone { addr: dst, source })?;
            return Ok(Box::new(stream));
        }
        let addr = ep.address;
        let tcp = tokio::time::timeout(t.connect_timeout(), TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout { addr })?
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        Ok(Box::new(tcp))
    }

    /// Sends one request and waits for the response head.
    pub async fn send(
        &self,
        t: Target<'_>,
        req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        if t.http2 {
            Ok(self.send_h2(t, req).await?.map(boxed))
        } else {
            self.send_h1(t, req).await
        }
    }

    /// A connection slot of the target's cluster, or `None` when none is free: the request
    /// then holds a pending slot (none left: overflow) and the caller waits for a wake-up. To
    /// free a slot, an idle HTTP/1.1 connection of the cluster to another endpoint is closed
    /// (else idle connections elsewhere could starve this endpoint for good).
    fn connection_slot(
        &self,
        t: &Target<'_>,
        pending: &mut Option<Slot>,
    ) -> Result<Option<Slot>, Overflowed> {
        let rt = &t.cluster.runtime;
        let limits = t.cluster.cluster.circuit_breakers;
        // Counted as an overflow once per request, not on every wake-up.
        let slot = if pending.is_none() {
            rt.try_acquire(Resource::Connections, limits.max_connections)
        } else {
            rt.try_acquire_quiet(Resource::Connections, limits.max_connections)
        };
        if slot.is_some() {
            return Ok(slot);
        }
        self.evict_idle_elsewhere(key(t));
        if pending.is_none() {
            *pending = Some(
                rt.try_acquire(Resource::Pending, limits.max_pending_requests)
                    .ok_or(Overflowed)?,
            );
        }
        Ok(None)
    }

    /// Closes one idle HTTP/1.1 connection of the same cluster to another endpoint (its slot is
    /// released, and the pending queue woken, when its connection task ends).
    fn evict_idle_elsewhere(&self, k: Key) {
        let mut idle = self.idle();
        let victim = idle
            .h1
            .iter_mut()
            .find(|(other, list)| other.0 == k.0 && other.1 != k.1 && !list.is_empty())
            .and_then(|(_, list)| list.pop());
        drop(idle);
        drop(victim);
    }

    async fn send_h1(
        &self,
        t: Target<'_>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        let k = key(&t);
        let addr = t.endpoint.address;
        let mut pending = None;
        let mut listening = None;
        let slot = loop {
            if let Some(pooled) = self.idle_h1(k).await {
                match self.try_h1(k, pooled, req, &t).await {
                    Ok(resp) => return Ok(resp),
                    Err(back) => req = back?,
                }
                continue;
            }
            if let Some(slot) = self
                .connection_slot(&t, &mut pending)
                .map_err(|Overflowed| overflow(&t))?
            {
                break slot;
            }
            // Nothing free: listen, look once more, then wait.
            match listening.take() {
                None => listening = Some(t.cluster.runtime.listen()),
                Some(l) => l.wait().await,
            }
        };
        drop(listening);
        drop(pending);
        let io = self.dial(t).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|source| UpstreamError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "upstream HTTP/1.1 connection ended");
            }
            drop(slot);
        });
        let mut fresh = PooledH1 { sender, used: 0 };
        let resp = fresh
            .sender
            .send_request(req)
            .await
            .map_err(|source| UpstreamError::Request { addr, source })?;
        Ok(self.recycle_h1(k, fresh, resp, &t))
    }

    /// An idle sender for `k` that is ready to send, if any.
    async fn idle_h1(&self, k: Key) -> Option<PooledH1> {
        loop {
            let pooled = {
                let mut idle = self.idle();
                let list = idle.h1.entry(k).or_default();
                let mut found = None;
                while let Some(p) = list.pop() {
                    if !p.sender.is_closed() {
                        found = Some(p);
                        break;
                    }
                }
                found
            };
            let mut pooled = pooled?;
            // Returned at the end of its previous response body: ready in a moment.
            if tokio::time::timeout(READY_WAIT, pooled.sender.ready())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                return Some(pooled);
            }
        }
    }

    /// Sends on a pooled sender; `Err(Ok(req))` hands the request back when it was never
    /// written (the idle connection was gone).
    async fn try_h1(
        &self,
        k: Key,
        mut pooled: PooledH1,
        req: Request<ProxyBody>,
        t: &Target<'_>,
    ) -> Result<Response<ProxyBody>, Result<Request<ProxyBody>, UpstreamError>> {
        match pooled.sender.try_send_request(req).await {
            Ok(resp) => Ok(self.recycle_h1(k, pooled, resp, t)),
            Err(mut e) => match e.take_message() {
                Some(back) => Err(Ok(back)),
                None => Err(Err(UpstreamError::Request {
                    addr: k.1,
                    source: e.into_error(),
                })),
            },
        }
    }

    /// Puts the sender back into the idle list as soon as its response body has been read to
    /// the end (synchronously, so the client's next request finds it) and wakes the cluster's
    /// pending queue; a body cut short, or a connection at the cluster's
    /// `max_requests_per_connection`, closes the connection instead.
    fn recycle_h1(
        &self,
        k: Key,
        mut pooled: PooledH1,
        resp: Response<Incoming>,
        t: &Target<'_>,
    ) -> Response<ProxyBody> {
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the upgrade.
            return resp.map(boxed);
        }
        let idle = self.idle.clone();
        let runtime = t.cluster.runtime.clone();
        pooled.used += 1;
        let retired = t
            .cluster
            .cluster
            .max_requests_per_connection
            .is_some_and(|max| pooled.used >= max);
        resp.map(move |body| {
            boxed(Observed::new(body, move |_, clean| {
                if !clean || retired || pooled.sender.is_closed() {
                    return;
                }
                {
                    let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
                    let list = idle.h1.entry(k).or_default();
                    if list.len() < MAX_IDLE_PER_ENDPOINT {
                        list.push(pooled);
                    }
                }
                runtime.connection_idle();
            }))
        })
    }

    /// The endpoint's HTTP/2 connection, if one is open.
    fn idle_h2(&self, k: Key) -> Option<http2::SendRequest<ProxyBody>> {
        let mut idle = self.idle();
        match idle.h2.get(&k) {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                idle.h2.remove(&k);
                None
            }
            None => None,
        }
    }

    async fn send_h2(
        &self,
        t: Target<'_>,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let k = key(&t);
        let addr = t.endpoint.address;
        let mut pending = None;
        let mut listening = None;
        let mut sender = loop {
            if let Some(s) = self.idle_h2(k) {
                break s;
            }
            let Some(slot) = self
                .connection_slot(&t, &mut pending)
                .map_err(|Overflowed| overflow(&t))?
            else {
                // Nothing free: listen, look once more, then wait.
                match listening.take() {
                    None => listening = Some(t.cluster.runtime.listen()),
                    Some(l) => l.wait().await,
                }
                continue;
            };
            drop(listening.take());
            drop(pending.take());
            let io = self.dial(t).await?;
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(20)))
                .keep_alive_timeout(Duration::from_secs(20))
                .keep_alive_while_idle(true)
                .handshake(TokioIo::new(io))
                .await
                .map_err(|source| UpstreamError::Handshake { addr, source })?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%addr, error = %e, "upstream HTTP/2 connection ended");
                }
                drop(slot);
            });
            self.idle().h2.insert(k, sender.clone());
            // Requests queued for a connection can share this one.
            t.cluster.runtime.connection_idle();
            break sender;
        };
        let sent = match sender.ready().await {
            Ok(()) => sender.send_request(req).await,
            Err(e) => Err(e),
        };
        if sent.is_err() {
            // A failed connection is not handed out again.
            let mut idle = self.idle();
            if idle
                .h2
                .get(&k)
                .is_some_and(|s| s.is_closed() || !s.is_ready())
            {
                idle.h2.remove(&k);
            }
        }
        sent.map_err(|source| UpstreamError::Request { addr, source })
    }

    /// Pooled connections: (idle HTTP/1.1, HTTP/2), for the config dump.
    pub fn counts(&self) -> (usize, usize) {
        let idle = self.idle();
        (idle.h1.values().map(Vec::len).sum(), idle.h2.len())
    }
}
