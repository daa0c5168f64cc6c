//! HBONE client ⇄ server over real TLS and sockets on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use hbone::client::{ClientConfig, ClientError, ConnectRequest};
use hbone::headers::{Authority, Baggage, parse_baggage, parse_forwarded, parse_traceparent};
use hbone::server::ServerConfig;
use hbone::test_util::TestCa;
use http::{Method, Request, StatusCode};
use rustls_pki_types::ServerName;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn tunnel_carries_bytes_and_headers() {
    let backend = echo_backend().await;
    let Tunnel {
        mut server, pool, ..
    } = tunnel(ServerConfig::default(), ClientConfig::default()).await;
    let mut req = request_to(backend);
    req.baggage = Some(Baggage {
        namespace: "default".into(),
        workload_type: "deployment".into(),
        workload_name: "client".into(),
        ..Baggage::default()
    });
    req.forwarded = Some((
        "10.9.8.7:5555".parse().unwrap(),
        Some("svc.default.svc.cluster.local".into()),
    ));
    let mut stream = pool
        .connect(&key(server.addr, &[SERVER]), &req)
        .await
        .unwrap();
    stream.write_all(b"hello hbone").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"hello hbone");

    let seen = server.seen.recv().await.unwrap();
    assert_eq!(seen.peer_identity, Some(id(CLIENT)));
    assert_eq!(seen.authority, Authority::Addr(backend));
    let h = |n: &str| seen.headers.get(n).unwrap().to_str().unwrap().to_owned();
    assert_eq!(
        parse_baggage(&h("baggage")).unwrap().workload_name,
        "client"
    );
    let fwd = parse_forwarded(&h("forwarded")).unwrap();
    assert_eq!(fwd[0].for_addr(), Some("10.9.8.7:5555".parse().unwrap()));
    assert_eq!(
        fwd[0].host.as_deref(),
        Some("svc.default.svc.cluster.local")
    );
    assert!(parse_traceparent(&h("traceparent")).is_ok());
    assert!(
        !seen
            .headers
            .keys()
            .any(|k| k.as_str().starts_with("x-istio"))
    );
}

#[tokio::test]
async fn half_close_in_both_directions_delivers_all_bytes() {
    let Tunnel { server, pool, .. } =
        tunnel(ServerConfig::default(), ClientConfig::default()).await;
    let k = key(server.addr, &[SERVER]);

    // Client → server FIN: 3 MiB up, then shutdown; the echo answers only after EOF.
    let echo = echo_backend().await;
    let payload: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut stream = pool.connect(&k, &request_to(echo)).await.unwrap();
    let (mut r, mut w) = tokio::io::split(&mut stream);
    let up = payload.clone();
    let writer = async move {
        w.write_all(&up).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let reader = async {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        got
    };
    let ((), got) = tokio::join!(writer, reader);
    assert_eq!(got.len(), payload.len());
    assert!(got == payload);

    // Server → client FIN: the backend speaks first and half-closes; we answer afterwards.
    let greeting = vec![7u8; 1 << 20];
    let (speaker, mut reports) = speak_first_backend(greeting.clone()).await;
    let mut stream = pool.connect(&k, &request_to(speaker)).await.unwrap();
    let mut heard = Vec::new();
    stream.read_to_end(&mut heard).await.unwrap();
    assert_eq!(heard, greeting);
    stream.write_all(b"reply after your FIN").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(reports.recv().await.unwrap(), b"reply after your FIN");
}

#[tokio::test]
async fn handler_decisions_map_to_401_and_503_and_hostname_authority_works() {
    let Tunnel { server, pool, .. } =
        tunnel(ServerConfig::default(), ClientConfig::default()).await;
    let k = key(server.addr, &[SERVER]);
    let status = |r: Result<hbone::stream::H2Stream, ClientError>| match r {
        Err(ClientError::Status { status, .. }) => status,
        other => panic!("expected a status error, got {other:?}"),
    };
    let denied = pool
        .connect(&k, &request_to(([127, 0, 0, 1], DENIED_PORT).into()))
        .await;
    let flag = denied.as_ref().err().map(ClientError::response_flag);
    assert_eq!(status(denied), StatusCode::UNAUTHORIZED);
    assert_eq!(flag, Some("DENY"));
    // A port nothing listens on: the app connect fails.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    assert_eq!(
        status(pool.connect(&k, &request_to(closed_addr)).await),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let unknown = ConnectRequest::new(Authority::Host {
        host: "nowhere.local".into(),
        port: 80,
    });
    assert_eq!(
        status(pool.connect(&k, &unknown).await),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let echo = echo_backend().await;
    let by_name = ConnectRequest::new(Authority::Host {
        host: "echo.local".into(),
        port: echo.port(),
    });
    let mut stream = pool.connect(&k, &by_name).await.unwrap();
    stream.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    stream.read_exact(&mut one).await.unwrap();
    assert_eq!(&one, b"x");
}

/// A raw h2 client over our mTLS, to send requests the pool never would.
async fn raw_h2(
    server: std::net::SocketAddr,
    cert: &hbone::tls::WorkloadCertificate,
) -> h2::client::SendRequest<Bytes> {
    let tls = hbone::tls::client_config(cert, vec![id(SERVER)], hbone::tls::KeyExchange::Default)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(server).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::IpAddress(server.ip().into()), tcp)
        .await
        .unwrap();
    let (send, conn) = h2::client::Builder::new()
        .max_header_list_size(1 << 20)
        .handshake(tls)
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn status_of(send: &h2::client::SendRequest<Bytes>, req: Request<()>) -> StatusCode {
    let mut send = send.clone().ready().await.unwrap();
    let (resp, _body) = send.send_request(req, true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .unwrap()
        .unwrap()
        .status()
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_server_survives() {
    let ca = TestCa::new(HOUR);
    let certs = static_certs(&ca);
    let s = certs.server.clone();
    let server = start_server(s, ServerConfig::default()).await;
    let send = raw_h2(server.addr, &certs.client_cert).await;
    let get = Request::builder()
        .method(Method::GET)
        .uri("https://10.0.0.1:80/")
        .body(())
        .unwrap();
    assert_eq!(status_of(&send, get).await, StatusCode::BAD_REQUEST);
    let post = Request::builder()
        .method(Method::POST)
        .uri("https://10.0.0.1:80/x")
        .body(())
        .unwrap();
    assert_eq!(status_of(&send, post).await, StatusCode::BAD_REQUEST);
    for bad in [
        "10.0.0.1:0",
        "a..b:80",
        "10.0.0.1:99999",
        "-x.local:80",
        "300.1.1.1:80",
    ] {
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri(bad)
            .body(())
            .unwrap();
        assert_eq!(
            status_of(&send, req).await,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    // Over our 16 KiB request-header budget but under the advertised 64 KiB list: 400.
    let big = Request::builder()
        .method(Method::CONNECT)
        .uri("10.0.0.1:80")
        .header("x-big", "a".repeat(20 << 10))
        .body(())
        .unwrap();
    assert_eq!(status_of(&send, big).await, StatusCode::BAD_REQUEST);
    // Over the advertised SETTINGS_MAX_HEADER_LIST_SIZE: h2 itself refuses (431), no panic.
    let huge = Request::builder()
        .method(Method::CONNECT)
        .uri("10.0.0.1:80")
        .header("x-huge", "a".repeat(100 << 10))
        .body(())
        .unwrap();
    assert_eq!(
        status_of(&send, huge).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    // The connection and server still work.
    let echo = echo_backend().await;
    let ok = Request::builder()
        .method(Method::CONNECT)
        .uri(echo.to_string())
        .body(())
        .unwrap();
    assert_eq!(status_of(&send, ok).await, StatusCode::OK);
}

#[tokio::test]
async fn streams_150_use_two_connections_and_idle_ones_are_released() {
    let echo = echo_backend().await;
    let config = ClientConfig {
        idle_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let Tunnel { server, pool, .. } = tunnel(ServerConfig::default(), config).await;
    let k = key(server.addr, &[SERVER]);
    let mut opens = tokio::task::JoinSet::new();
    for _ in 0..150 {
        let (pool, k) = (pool.clone(), k.clone());
        opens.spawn(async move { pool.connect(&k, &request_to(echo)).await });
    }
    let mut streams = Vec::new();
    while let Some(s) = opens.join_next().await {
        streams.push(s.unwrap().unwrap());
    }
    assert_eq!(streams.len(), 150);
    assert_eq!(pool.connection_count(&k), 2);
    // All 150 really carry bytes.
    for (i, s) in streams.iter_mut().enumerate() {
        let msg = format!("stream {i:03}");
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    // A different key never shares those connections.
    let other =
        hbone::client::PoolKey::new(id(CLIENT), vec![id(SERVER), id(CLIENT)], None, server.addr);
    let extra = pool.connect(&other, &request_to(echo)).await.unwrap();
    assert_eq!(pool.connection_count(&other), 1);
    assert_eq!(pool.total_connections(), 3);
    drop(streams);
    drop(extra);
    assert!(
        eventually(Duration::from_secs(10), || pool.total_connections() == 0).await,
        "idle connections released"
    );
}

#[tokio::test]
async fn stream_limit_is_bounded_by_peer_max_concurrent_streams() {
    let config = ServerConfig {
        max_concurrent_streams: 10,
        ..ServerConfig::default()
    };
    let echo = echo_backend().await;
    let Tunnel { server, pool, .. } = tunnel(config, ClientConfig::default()).await;
    let k = key(server.addr, &[SERVER]);
    let mut streams = Vec::new();
    for _ in 0..25 {
        streams.push(pool.connect(&k, &request_to(echo)).await.unwrap());
    }
    assert_eq!(pool.connection_count(&k), 3);
}

#[tokio::test]
async fn wrong_server_identity_fails_with_tls_failure() {
    let Tunnel { server, pool, .. } =
        tunnel(ServerConfig::default(), ClientConfig::default()).await;
    let wrong = key(
        server.addr,
        &["spiffe://cluster.local/ns/default/sa/someone-else"],
    );
    let err = pool
        .connect(&wrong, &request_to(echo_backend().await))
        .await
        .unwrap_err();
    assert_eq!(err.response_flag(), "TLS_FAILURE", "{err}");
    assert_eq!(pool.total_connections(), 0);
}

#[tokio::test]
async fn drain_sends_goaway_keeps_open_streams_then_stops() {
    let echo = echo_backend().await;
    let Tunnel { server, pool, .. } =
        tunnel(ServerConfig::default(), ClientConfig::default()).await;
    let k = key(server.addr, &[SERVER]);
    let mut stream = pool.connect(&k, &request_to(echo)).await.unwrap();
    server.drain.send(true).unwrap();
    // The open stream keeps working during the drain.
    for i in 0..5u8 {
        stream.write_all(&[i]).await.unwrap();
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await.unwrap();
        assert_eq!(b[0], i);
    }
    // New tunnels cannot start: GOAWAY on the pooled connection, listener closed for new dials.
    let refused =
        tokio::time::timeout(Duration::from_secs(10), pool.connect(&k, &request_to(echo)))
            .await
            .unwrap();
    assert!(refused.is_err(), "no new stream after GOAWAY");
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    drop(stream);
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn drain_deadline_forces_close_of_lingering_streams() {
    let config = ServerConfig {
        drain_deadline: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let echo = echo_backend().await;
    let Tunnel { server, pool, .. } = tunnel(config, ClientConfig::default()).await;
    let mut stream = pool
        .connect(&key(server.addr, &[SERVER]), &request_to(echo))
        .await
        .unwrap();
    server.drain.send(true).unwrap();
    // We never close our stream; the server must still finish, by cutting it at the deadline.
    tokio::time::timeout(Duration::from_secs(30), server.task)
        .await
        .unwrap()
        .unwrap();
    let mut buf = Vec::new();
    let res = stream.read_to_end(&mut buf).await;
    assert!(res.is_err() || buf.is_empty());
}

/// A peer that completes mutual TLS and then never sends the HTTP/2 preface is closed once the handshake
/// budget (TLS + preface) is spent, instead of holding its connection forever.
#[tokio::test]
async fn a_peer_silent_after_tls_is_closed_at_the_handshake_budget() {
    let ca = TestCa::new(HOUR);
    let certs = static_certs(&ca);
    let config = ServerConfig {
        handshake_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    };
    let server = start_server(certs.server.clone(), config).await;
    let tls = hbone::tls::client_config(
        &certs.client_cert,
        vec![id(SERVER)],
        hbone::tls::KeyExchange::Default,
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::IpAddress(server.addr.ip().into()), tcp)
        .await
        .unwrap();
    // Say nothing; read what the server sends (its SETTINGS) until it closes the connection.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 1024];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the silent connection was still open after 10 s"
    );
}
