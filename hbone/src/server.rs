//! The HBONE server: mTLS + HTTP/2, one CONNECT stream per proxied TCP connection.
//!
//! Owns the accept loop, the TLS and H2 handshakes, PING keepalive, GOAWAY drain with a
//! forced-close deadline, status codes for malformed requests (`400`), and splicing bytes
//! once the caller's [`InboundHandler`] accepted a tunnel. Does not decide anything about
//! traffic: authorization and target resolution are the handler's (`401`/`503`).

mod handler;
mod request;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use http::{Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

pub use handler::{
    Accepted, InboundHandler, InboundRequest, Rejected, ServerCertificates, Upstream,
};
pub use request::{BadRequest, validate_connect};

use crate::h2_settings::{H2Settings, MAX_SEND_BUFFER, keepalive};
use crate::stream::{H2Stream, copy_bidirectional};
use crate::tls::{ALPN_H2, KeyExchange, TlsError, server_config, spiffe_identities};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Windows, frame size, header list (64 KiB), PING.
    pub h2: H2Settings,
    /// SETTINGS_MAX_CONCURRENT_STREAMS (200).
    pub max_concurrent_streams: u32,
    /// Request header bytes above which a CONNECT gets `400` (the tunnel client sends at most
    /// 16 KiB). Header blocks over `h2.max_header_list_size` never reach us: h2 answers `431`.
    pub max_request_header_bytes: usize,
    /// TLS + H2 handshake budget.
    pub handshake_timeout: Duration,
    /// After GOAWAY, streams still open are cut at this deadline (`CONNECTION_TERMINATION_DEADLINE`).
    pub drain_deadline: Duration,
    /// Key-exchange policy.
    pub key_exchange: KeyExchange,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            h2: H2Settings::server(),
            max_concurrent_streams: 200,
            max_request_header_bytes: 16 << 10,
            handshake_timeout: Duration::from_secs(10),
            drain_deadline: Duration::from_secs(5),
            key_exchange: KeyExchange::Default,
        }
    }
}

/// Server-side failures, per connection or at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no certificate to present on {local}")]
    NoCertificate { local: SocketAddr },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("TLS handshake with {peer}: {reason}")]
    Handshake { peer: SocketAddr, reason: String },
    #[error("peer {peer} did not negotiate ALPN h2")]
    Alpn { peer: SocketAddr },
    #[error("HTTP/2 with {peer}: {source}")]
    H2 {
        peer: SocketAddr,
        #[source]
        source: h2::Error,
    },
}

/// A bound HBONE listener.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    config: ServerConfig,
    certs: Arc<dyn ServerCertificates>,
    handler: Arc<dyn InboundHandler>,
}

/// `true` on the channel starts a drain.
pub type DrainWatch = watch::Receiver<bool>;

async fn drained(drain: &mut DrainWatch) {
    if drain.wait_for(|d| *d).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Server {
    /// Binds `addr` (failing at start-up, not later).
    pub async fn bind(
        addr: SocketAddr,
        config: ServerConfig,
        certs: Arc<dyn ServerCertificates>,
        handler: Arc<dyn InboundHandler>,
    ) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self::from_listener(listener, config, certs, handler))
    }

    /// Uses an already bound listener (e.g. one opened inside a pod's netns).
    pub fn from_listener(
        listener: TcpListener,
        config: ServerConfig,
        certs: Arc<dyn ServerCertificates>,
        handler: Arc<dyn InboundHandler>,
    ) -> Self {
        Self {
            listener,
            shared: Arc::new(Shared {
                config,
                certs,
                handler,
            }),
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until `drain` turns true; then stops accepting, sends GOAWAY on every
    /// connection, and returns once they finished or the drain deadline cut them.
    pub async fn run(self, mut drain: DrainWatch) {
        let mut conns = JoinSet::new();
        let mut backoff = crate::accept::AcceptBackoff::default();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        backoff.succeeded();
                        let shared = self.shared.clone();
                        let drain = drain.clone();
                        let span = tracing::debug_span!("hbone.inbound", src.addr = %peer);
                        conns.spawn(async move {
                            if let Err(e) = serve_connection(shared, tcp, peer, drain).await {
                                tracing::debug!(error = %e, "inbound connection ended with error");
                            }
                        }.instrument(span));
                    }
                    Err(e) => backoff.after_failure("hbone", &e).await,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                () = drained(&mut drain) => break,
            }
        }
        drop(self.listener);
        let grace = self.shared.config.drain_deadline + Duration::from_secs(1);
        if tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            conns.abort_all();
        }
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    mut drain: DrainWatch,
) -> Result<(), ServerError> {
    let config = &shared.config;
    let local = tcp.local_addr().unwrap_or(peer);
    let _ = tcp.set_nodelay(true);
    let cert = shared
        .certs
        .certificate(local)
        .await
        .ok_or(ServerError::NoCertificate { local })?;
    let acceptor = TlsAcceptor::from(server_config(&cert, config.key_exchange)?);
    let handshake = |reason: String| ServerError::Handshake { peer, reason };
    // One budget for the TLS handshake and the HTTP/2 preface: a peer that completes TLS and then says
    // nothing must not hold the connection (and its memory) forever.
    let budget = tokio::time::Instant::now() + config.handshake_timeout;
    let tls = tokio::time::timeout_at(budget, acceptor.accept(tcp))
        .await
        .map_err(|_| handshake("timed out".into()))?
        .map_err(|e| handshake(e.to_string()))?;
    let (_, session) = tls.get_ref();
    if session.alpn_protocol() != Some(ALPN_H2) {
        return Err(ServerError::Alpn { peer });
    }
    let peer_identity = session
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|leaf| spiffe_identities(leaf).ok())
        .and_then(|ids| ids.into_iter().next());
    let h2_err = |source| ServerError::H2 { peer, source };
    let conn = h2::server::Builder::new()
        .initial_window_size(config.h2.stream_window)
        .initial_connection_window_size(config.h2.connection_window)
        .max_frame_size(config.h2.max_frame_size)
        .max_header_list_size(config.h2.max_header_list_size)
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .handshake::<_, Bytes>(tls);
    let mut conn = tokio::time::timeout_at(budget, conn)
        .await
        .map_err(|_| handshake("no HTTP/2 preface within the handshake budget".into()))?
        .map_err(h2_err)?;
    let ping = conn.ping_pong();
    let keepalive = async move {
        match ping {
            Some(p) => keepalive(p, config.h2.ping_interval, config.h2.ping_timeout).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(keepalive);
    let deadline = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(deadline);
    let mut draining = false;
    let ctx = Arc::new(StreamContext {
        shared: shared.clone(),
        peer,
        local,
        peer_identity,
    });
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                None => return Ok(()),
                Some(Ok((req, respond))) => {
                    let ctx = ctx.clone();
                    tokio::spawn(serve_stream(ctx, req, respond).in_current_span());
                }
                Some(Err(e)) => return Err(h2_err(e)),
            },
            e = &mut keepalive => {
                tracing::info!(error = %e, "keepalive failed; closing connection");
                return Ok(());
            }
            () = drained(&mut drain), if !draining => {
                conn.graceful_shutdown();
                draining = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + config.drain_deadline);
            }
            () = &mut deadline, if draining => {
                tracing::info!("drain deadline reached; closing connection");
                return Ok(());
            }
        }
    }
}

struct StreamContext {
    shared: Arc<Shared>,
    peer: SocketAddr,
    local: SocketAddr,
    peer_identity: Option<crate::identity::Identity>,
}

fn respond_status(respond: &mut SendResponse<Bytes>, status: StatusCode) {
    let mut response = Response::new(());
    *response.status_mut() = status;
    if let Err(e) = respond.send_response(response, true) {
        tracing::debug!(error = %e, %status, "sending error response failed");
    }
}

async fn serve_stream(
    ctx: Arc<StreamContext>,
    req: Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let config = &ctx.shared.config;
    let authority = match validate_connect(&req, config.max_request_header_bytes) {
        Ok(a) => a,
        Err(bad) => {
            tracing::debug!(src.addr = %ctx.peer, error = %bad, "bad CONNECT");
            return respond_status(&mut respond, StatusCode::BAD_REQUEST);
        }
    };
    let (parts, body) = req.into_parts();
    let request = InboundRequest {
        peer_addr: ctx.peer,
        local_addr: ctx.local,
        peer_identity: ctx.peer_identity.clone(),
        authority: authority.clone(),
        headers: parts.headers,
    };
    let accepted = match ctx.shared.handler.handle(request).await {
        Ok(a) => a,
        Err(rejected) => {
            tracing::debug!(src.addr = %ctx.peer, dst.authority = %authority, reason = ?rejected, "CONNECT rejected");
            return respond_status(&mut respond, rejected.status());
        }
    };
    let Accepted {
        mut upstream,
        response_headers,
    } = accepted;
    let mut response = Response::new(());
    *response.headers_mut() = response_headers;
    let send = match respond.send_response(response, false) {
        Ok(s) => s,
        Err(e) => return tracing::debug!(error = %e, "sending 200 failed"),
    };
    let mut stream = H2Stream::new(send, body, None);
    match copy_bidirectional(&mut stream, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(
            src.addr = %ctx.peer, src.identity = ?ctx.peer_identity, dst.authority = %authority,
            bytes.sent = up, bytes.received = down, "tunnel closed"
        ),
        Err(e) => {
            tracing::debug!(src.addr = %ctx.peer, dst.authority = %authority, error = %e, "tunnel error")
        }
    }
}
