//! The small HTTP/1.1 server the three admin listeners share: bind at start-up, accept until shutdown, then drain.
//!
//! Owns: listener lifecycle, per-connection serving (hyper http1), graceful + forced shutdown, response helpers.
//! Does not own: routing; each server passes a synchronous handler from request head to response.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::AdminError;

/// Response body of every admin endpoint.
pub(crate) type Body = Full<Bytes>;

/// How long open connections may take to finish after shutdown before they are aborted.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Slow or idle clients get this long to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A bound listener of one named server.
#[derive(Debug)]
pub(crate) struct Listener {
    server: &'static str,
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl Listener {
    /// Binds `addr`; fails at start-up with the server name and address.
    pub(crate) async fn bind(server: &'static str, addr: SocketAddr) -> Result<Self, AdminError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind {
                server,
                addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| AdminError::Bind {
            server,
            addr,
            source,
        })?;
        Ok(Self {
            server,
            listener,
            local_addr,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `handler` until `shutdown` turns true (or its sender is dropped), then lets open connections finish
    /// their current request for up to [`DRAIN_TIMEOUT`].
    pub(crate) async fn serve<H>(self, handler: H, mut shutdown: watch::Receiver<bool>)
    where
        H: Fn(&Parts) -> Response<Body> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let mut connections = JoinSet::new();
        tracing::info!(server = self.server, addr = %self.local_addr, "admin listener started");
        loop {
            tokio::select! {
                _ = shutdown_signalled(&mut shutdown) => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let conn = serve_connection(stream, handler.clone(), shutdown.clone());
                        connections.spawn(async move {
                            if let Err(error) = conn.await {
                                tracing::debug!(%peer, %error, "admin connection ended with an error");
                            }
                        });
                    }
                    Err(error) => {
                        tracing::warn!(server = self.server, %error, "admin listener cannot accept");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(self.listener);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while connections.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            tracing::warn!(
                server = self.server,
                open = connections.len(),
                "aborting admin connections after drain timeout"
            );
            connections.abort_all();
        }
        tracing::info!(server = self.server, "admin listener stopped");
    }
}

async fn serve_connection<H>(
    stream: TcpStream,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    H: Fn(&Parts) -> Response<Body> + Send + Sync + 'static,
{
    let service = service_fn(move |request: http::Request<Incoming>| {
        let (parts, _body) = request.into_parts();
        let response = handler(&parts);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown_signalled(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// Resolves once shutdown is requested; a dropped sender counts as a request.
async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// A response with `status`, `content_type` and `body`.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A `text/plain` response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body)
}

/// 404 for unknown paths.
pub(crate) fn not_found(parts: &Parts) -> Response<Body> {
    text(
        StatusCode::NOT_FOUND,
        format!("no handler for {}\n", parts.uri.path()),
    )
}

/// 405 with the `allow` header, or `None` when `parts.method` is `allowed`.
pub(crate) fn require_method(parts: &Parts, allowed: Method) -> Option<Response<Body>> {
    if parts.method == allowed {
        return None;
    }
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} only accepts {allowed}\n", parts.uri.path()),
    );
    if let Ok(value) = HeaderValue::from_str(allowed.as_str()) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    Some(response)
}
