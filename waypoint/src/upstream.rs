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

/// An idle HTTP/1.1 connection and how many requests it has carried.
struct PooledH1 {
    sender: http1::SendRequest<ProxyBody>,
    used: u32,
}

#[derive(Default)]
struct Idle {
    h1: HashMap<SocketAddr, Vec<PooledH1>>,
    h2: HashMap<SocketAddr, http2::SendRequest<ProxyBody>>,
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

    /// A connection slot of the target's cluster, waiting in the pending queue while none is
    /// free; `Ok(None)` when an idle connection may have appeared (look again).
    async fn connection_slot(
        &self,
        t: &Target<'_>,
        pending: &mut Option<Slot>,
    ) -> Result<Option<Slot>, UpstreamError> {
        let rt = &t.cluster.runtime;
        let limits = t.cluster.cluster.circuit_breakers;
        let freed = rt.freed();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if let Some(slot) = rt.try_acquire(Resource::Connections, limits.max_connections) {
            return Ok(Some(slot));
        }
        if pending.is_none() {
            *pending = Some(
                rt.try_acquire(Resource::Pending, limits.max_pending_requests)
                    .ok_or_else(|| UpstreamError::Overflow {
                        cluster: t.cluster.cluster.name.clone(),
                    })?,
            );
        }
        freed.await;
        Ok(None)
    }

    async fn send_h1(
        &self,
        t: Target<'_>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        let addr = t.endpoint.address;
        let mut pending = None;
        let slot = loop {
            if let Some(sender) = self.idle_h1(addr).await {
                match self.try_h1(addr, sender, req, &t).await {
                    Ok(resp) => return Ok(resp),
                    Err(back) => req = back?,
                }
                continue;
            }
            if let Some(slot) = self.connection_slot(&t, &mut pending).await? {
                break slot;
            }
        };
        drop(pending);
        let io = self.dial(t).await?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|source| UpstreamError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "upstream HTTP/1.1 connection ended");
            }
            drop(slot);
        });
        let resp = sender
            .send_request(req)
            .await
            .map_err(|source| UpstreamError::Request { addr, source })?;
        let fresh = PooledH1 { sender, used: 0 };
        Ok(self.recycle_h1(addr, fresh, resp, &t))
    }

    /// An idle sender for `addr` that is ready to send, if any.
    async fn idle_h1(&self, addr: SocketAddr) -> Option<PooledH1> {
        loop {
            let pooled = {
                let mut idle = self.idle();
                let list = idle.h1.entry(addr).or_default();
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
        addr: SocketAddr,
        mut pooled: PooledH1,
        req: Request<ProxyBody>,
        t: &Target<'_>,
    ) -> Result<Response<ProxyBody>, Result<Request<ProxyBody>, UpstreamError>> {
        match pooled.sender.try_send_request(req).await {
            Ok(resp) => Ok(self.recycle_h1(addr, pooled, resp, t)),
            Err(mut e) => match e.take_message() {
                Some(back) => Err(Ok(back)),
                None => Err(Err(UpstreamError::Request {
                    addr,
                    source: e.into_error(),
                })),
            },
        }
    }

    /// Puts the sender back into the idle list as soon as its response body has been read to
    /// the end (synchronously, so the client's next request finds it); a body cut short, or a
    /// connection at the cluster's `max_requests_per_connection`, closes the connection instead.
    fn recycle_h1(
        &self,
        addr: SocketAddr,
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
                    let list = idle.h1.entry(addr).or_default();
                    if list.len() < MAX_IDLE_PER_ENDPOINT {
                        list.push(pooled);
                    }
                }
                runtime.connection_idle();
            }))
        })
    }

    async fn send_h2(
        &self,
        t: Target<'_>,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let addr = t.endpoint.address;
        let existing = {
            let mut idle = self.idle();
            match idle.h2.get(&addr) {
                Some(s) if !s.is_closed() => Some(s.clone()),
                Some(_) => {
                    idle.h2.remove(&addr);
                    None
                }
                None => None,
            }
        };
        let mut sender = match existing {
            Some(s) => s,
            None => {
                let mut pending = None;
                let slot = loop {
                    if let Some(slot) = self.connection_slot(&t, &mut pending).await? {
                        break slot;
                    }
                };
                drop(pending);
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
                self.idle().h2.insert(addr, sender.clone());
                sender
            }
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
                .get(&addr)
                .is_some_and(|s| s.is_closed() || !s.is_ready())
            {
                idle.h2.remove(&addr);
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
