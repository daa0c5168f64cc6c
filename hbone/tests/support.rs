//! Shared fixtures for the integration tests: a test CA, an HBONE server on 127.0.0.1 with a
//! scriptable handler, and TCP backends.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hbone::Identity;
use hbone::ca::BoxFuture;
use hbone::client::{ClientCertificates, ClientConfig, ConnectRequest, Pool, PoolKey, TcpDialer};
use hbone::headers::Authority;
use hbone::server::{
    Accepted, InboundHandler, InboundRequest, Rejected, Server, ServerCertificates, ServerConfig,
};
use hbone::test_util::TestCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

pub const CLIENT: &str = "spiffe://cluster.local/ns/default/sa/client";
pub const SERVER: &str = "spiffe://cluster.local/ns/default/sa/server";
/// Port in an authority that the test handler denies (401).
pub const DENIED_PORT: u16 = 4010;
pub const HOUR: Duration = Duration::from_secs(3600);

pub fn id(s: &str) -> Identity {
    s.parse().unwrap()
}

/// Test policy: port 4010 → 401; `echo.local:<port>` → 127.0.0.1:<port>; connect failure → 503.
/// Every accepted request's headers are sent to `seen`.
pub struct TestHandler {
    pub seen: mpsc::UnboundedSender<InboundRequest>,
}

impl InboundHandler for TestHandler {
    fn handle(&self, request: InboundRequest) -> BoxFuture<'_, Result<Accepted, Rejected>> {
        Box::pin(async move {
            let _ = self.seen.send(request.clone());
            let target: SocketAddr = match &request.authority {
                Authority::Addr(a) if a.port() == DENIED_PORT => {
                    return Err(Rejected::Unauthorized("test deny".into()));
                }
                Authority::Addr(a) => *a,
                Authority::Host { host, port } if host == "echo.local" => {
                    SocketAddr::from(([127, 0, 0, 1], *port))
                }
                Authority::Host { .. } => return Err(Rejected::Unavailable("unknown host".into())),
            };
            let upstream = TcpStream::connect(target)
                .await
                .map_err(|e| Rejected::Unavailable(e.to_string()))?;
            Ok(Accepted {
                upstream: Box::new(upstream),
                response_headers: http::HeaderMap::new(),
            })
        })
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub drain: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
    pub seen: mpsc::UnboundedReceiver<InboundRequest>,
}

pub async fn start_server(certs: Arc<dyn ServerCertificates>, config: ServerConfig) -> TestServer {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let handler = Arc::new(TestHandler { seen: seen_tx });
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config, certs, handler)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (drain, drain_rx) = watch::channel(false);
    let task = tokio::spawn(server.run(drain_rx));
    TestServer {
        addr,
        drain,
        task,
        seen,
    }
}

/// Echo backend: copies every connection back to itself (half-close aware).
pub async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Backend that writes `greeting`, half-closes, then reports how many bytes it read to EOF.
pub async fn speak_first_backend(
    greeting: Vec<u8>,
) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (tx, greeting) = (tx.clone(), greeting.clone());
            tokio::spawn(async move {
                tcp.write_all(&greeting).await.unwrap();
                tcp.shutdown().await.unwrap();
                let mut got = Vec::new();
                tcp.read_to_end(&mut got).await.unwrap();
                let _ = tx.send(got);
            });
        }
    });
    (addr, rx)
}

pub fn pool(certs: Arc<dyn ClientCertificates>, config: ClientConfig) -> Pool {
    Pool::new(config, certs, Arc::new(TcpDialer))
}

pub fn key(server: SocketAddr, expected: &[&str]) -> PoolKey {
    PoolKey::new(
        id(CLIENT),
        expected.iter().map(|e| id(e)).collect(),
        None,
        server,
    )
}

pub fn request_to(target: SocketAddr) -> ConnectRequest {
    ConnectRequest::new(Authority::Addr(target))
}

/// Static certificates from one CA for client and server.
pub struct Certs {
    pub client_cert: Arc<hbone::tls::WorkloadCertificate>,
    pub client: Arc<dyn ClientCertificates>,
    pub server: Arc<dyn ServerCertificates>,
}

pub fn static_certs(ca: &TestCa) -> Certs {
    let client_cert = Arc::new(ca.issue(&id(CLIENT), HOUR));
    let server_cert = Arc::new(ca.issue(&id(SERVER), HOUR));
    Certs {
        client: Arc::new(client_cert.clone()),
        server: Arc::new(server_cert),
        client_cert,
    }
}

/// Polls `cond` every 20 ms for at most `limit`; returns whether it became true.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// A test CA, an HBONE server presenting `SERVER` and a pool presenting `CLIENT`: the setup most tunnel tests share.
pub struct Tunnel {
    pub ca: TestCa,
    pub certs: Certs,
    pub server: TestServer,
    pub pool: Pool,
}

pub async fn tunnel(server_config: ServerConfig, client_config: ClientConfig) -> Tunnel {
    let ca = TestCa::new(HOUR);
    let certs = static_certs(&ca);
    let server = start_server(certs.server.clone(), server_config).await;
    let pool = pool(certs.client.clone(), client_config);
    Tunnel {
        ca,
        certs,
        server,
        pool,
    }
}
