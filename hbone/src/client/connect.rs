//! Dialling one HBONE connection (TCP → TLS → H2) and building CONNECT requests.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request};
use rustls_pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use super::{ClientConfig, ClientError, PoolKey};
use crate::ca::BoxFuture;
use crate::h2_settings::MAX_SEND_BUFFER;
use crate::headers::{Authority, Baggage, TraceParent, format_forwarded, names};
use crate::tls::{ALPN_H2, WorkloadCertificate, client_config};

/// Opens the TCP connection for a key. The node tunnel supplies one that dials from inside the
/// source pod's netns with SO_MARK; [`TcpDialer`] binds `src_ip` in the current netns.
pub trait Dialer: Send + Sync + 'static {
    /// Connects to `key.dst()`.
    fn dial<'a>(&'a self, key: &'a PoolKey) -> BoxFuture<'a, std::io::Result<TcpStream>>;
}

/// Plain dialer: binds the key's source IP (if any) and connects.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDialer;

impl Dialer for TcpDialer {
    fn dial<'a>(&'a self, key: &'a PoolKey) -> BoxFuture<'a, std::io::Result<TcpStream>> {
        Box::pin(async move {
            let socket = if key.dst().is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if let Some(ip) = key.src_ip() {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            let tcp = socket.connect(key.dst()).await?;
            tcp.set_nodelay(true)?;
            Ok(tcp)
        })
    }
}

/// One tunnel request: the target authority plus the headers the tunnel sends (spec §2.3).
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// `:authority`.
    pub authority: Authority,
    /// Source workload description (`baggage`), if known.
    pub baggage: Option<Baggage>,
    /// Original client address and targeted Service hostname (`forwarded`).
    pub forwarded: Option<(SocketAddr, Option<String>)>,
    /// Any other headers (e.g. `x-forwarded-network` on double HBONE).
    pub extra_headers: HeaderMap,
}

impl ConnectRequest {
    /// A request for `authority` with no optional headers.
    pub fn new(authority: Authority) -> Self {
        Self {
            authority,
            baggage: None,
            forwarded: None,
            extra_headers: HeaderMap::new(),
        }
    }

    /// The h2 request: CONNECT, no :scheme/:path, plus `baggage`, `forwarded`, `traceparent`.
    pub(crate) fn to_http(&self) -> Result<Request<()>, http::Error> {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri(self.authority.to_string())
            .body(())?;
        let headers = req.headers_mut();
        headers.extend(self.extra_headers.clone());
        if let Some(baggage) = self
            .baggage
            .as_ref()
            .map(Baggage::to_header)
            .filter(|b| !b.is_empty())
        {
            headers.insert(names::BAGGAGE, HeaderValue::try_from(baggage)?);
        }
        if let Some((client, host)) = &self.forwarded {
            let value = format_forwarded(*client, host.as_deref());
            headers.insert(names::FORWARDED, HeaderValue::try_from(value)?);
        }
        headers.insert(
            names::TRACEPARENT,
            HeaderValue::try_from(TraceParent::random().to_string())?,
        );
        Ok(req)
    }
}

/// A freshly dialled connection: request handle, effective stream limit, and the driver.
pub(crate) struct Dialled {
    pub(crate) send: h2::client::SendRequest<Bytes>,
    pub(crate) stream_limit: usize,
    pub(crate) connection:
        h2::client::Connection<tokio_rustls::client::TlsStream<TcpStream>, Bytes>,
    pub(crate) ping: Option<h2::PingPong>,
}

pub(crate) async fn dial(
    config: &ClientConfig,
    dialer: &dyn Dialer,
    cert: Arc<WorkloadCertificate>,
    key: &PoolKey,
) -> Result<Dialled, ClientError> {
    let dst = key.dst();
    let tcp = tokio::time::timeout(config.connect_timeout, dialer.dial(key))
        .await
        .map_err(|_| ClientError::ConnectTimeout { dst })?
        .map_err(|source| ClientError::Connect { dst, source })?;
    let tls_err = |reason: String| ClientError::Tls { dst, reason };
    let tls_config = client_config(&cert, key.dst_identities().to_vec(), config.key_exchange)
        .map_err(|e| tls_err(e.to_string()))?;
    // No SNI is sent (enable_sni = false); the name only satisfies the API.
    let name = ServerName::IpAddress(dst.ip().into());
    let tls = tokio::time::timeout(
        config.handshake_timeout,
        TlsConnector::from(tls_config).connect(name, tcp),
    )
    .await
    .map_err(|_| tls_err("handshake timed out".into()))?
    .map_err(|e| tls_err(e.to_string()))?;
    if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
        return Err(tls_err("server did not select ALPN h2".into()));
    }
    let h2_err = |e: h2::Error| ClientError::H2Handshake {
        dst,
        reason: e.to_string(),
    };
    let (send, mut connection) = h2::client::Builder::new()
        .initial_window_size(config.h2.stream_window)
        .initial_connection_window_size(config.h2.connection_window)
        .max_frame_size(config.h2.max_frame_size)
        .max_header_list_size(config.h2.max_header_list_size)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .enable_push(false)
        .handshake::<_, Bytes>(tls)
        .await
        .map_err(h2_err)?;
    // One PING round trip: the server's SETTINGS precede its PONG, so afterwards we know its
    // MAX_CONCURRENT_STREAMS.
    let mut ping = connection.ping_pong();
    if let Some(p) = ping.as_mut() {
        p.send_ping(h2::Ping::opaque()).map_err(h2_err)?;
        let pong = futures_util::future::poll_fn(|cx| p.poll_pong(cx));
        let settled = tokio::time::timeout(config.handshake_timeout, async {
            tokio::select! {
                pong = pong => pong.map(|_| ()),
                closed = &mut connection => closed.and(Err(h2::Error::from(h2::Reason::PROTOCOL_ERROR))),
            }
        })
        .await
        .map_err(|_| ClientError::H2Handshake { dst, reason: "no SETTINGS/PONG".into() })?;
        settled.map_err(h2_err)?;
    }
    let stream_limit = config
        .max_streams_per_connection
        .min(send.current_max_send_streams())
        .max(1);
    Ok(Dialled {
        send,
        stream_limit,
        connection,
        ping,
    })
}
