//! Certificate rotation and CA outage with the real manager, TLS and sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hbone::cert_manager::{CertManager, CertManagerConfig, Priority};
use hbone::client::{ClientConfig, ClientError};
use hbone::server::ServerConfig;
use hbone::test_util::TestCa;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn echo_round(stream: &mut hbone::stream::H2Stream, i: u32) {
    let msg = i.to_be_bytes();
    stream.write_all(&msg).await.unwrap();
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg);
}

#[tokio::test]
async fn long_lived_stream_survives_renewals_and_new_connections_use_new_certs() {
    // 4 s certificates: renewal every ~2 s.
    let ca = TestCa::new(Duration::from_secs(4));
    let manager = CertManager::new(Arc::new(ca.clone()), CertManagerConfig::default());
    let first = manager.get(&id(CLIENT), Priority::Blocking).await.unwrap();
    let server = start_server(
        Arc::new(manager.server_certificates(id(SERVER))),
        ServerConfig::default(),
    )
    .await;
    let echo = echo_backend().await;
    let pool = pool(Arc::new(manager.clone()), ClientConfig::default());
    let k = key(server.addr, &[SERVER]);
    let mut stream = pool.connect(&k, &request_to(echo)).await.unwrap();
    // ~6 s of traffic (past the first certificates' expiry), 30 bounded rounds.
    for i in 0..30 {
        echo_round(&mut stream, i).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        SystemTime::now() > first.not_after(),
        "the test outlived the first certificate"
    );
    let now = manager.get(&id(CLIENT), Priority::Blocking).await.unwrap();
    assert_ne!(now.serial(), first.serial(), "renewed");
    assert!(ca.issued() >= 4, "renewals happened: {}", ca.issued());
    // A fresh pool handshakes with renewed certificates on both sides.
    let fresh = support::pool(Arc::new(manager.clone()), ClientConfig::default());
    let mut s2 = fresh.connect(&k, &request_to(echo)).await.unwrap();
    echo_round(&mut s2, 99).await;
    echo_round(&mut stream, 100).await;
}

#[tokio::test]
async fn ca_outage_keeps_old_certificate_until_expiry_then_fails_closed() {
    let ca = TestCa::new(Duration::from_secs(3));
    let manager = CertManager::new(Arc::new(ca.clone()), CertManagerConfig::default());
    let cert = manager.get(&id(CLIENT), Priority::Blocking).await.unwrap();
    ca.set_down(true);
    // Before expiry: the same certificate is still served (refresh fails in the background).
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let still = manager.get(&id(CLIENT), Priority::Blocking).await.unwrap();
    assert_eq!(still.serial(), cert.serial());
    // The server trusts the outage CA's root too (the server side is not under test here).
    let server_cert = Arc::new(ca.issue(&id(SERVER), Duration::from_secs(3600)));
    let server = start_server(Arc::new(server_cert), ServerConfig::default()).await;
    let echo = echo_backend().await;
    let k = key(server.addr, &[SERVER]);
    let p = pool(Arc::new(manager.clone()), ClientConfig::default());
    let mut stream = p.connect(&k, &request_to(echo)).await.unwrap();
    echo_round(&mut stream, 1).await;
    drop(stream);
    // After expiry: the manager withdraws it, and a new connection fails closed.
    let expired = eventually(Duration::from_secs(10), || {
        SystemTime::now() > cert.not_after()
    })
    .await;
    assert!(expired);
    let gone = async {
        for _ in 0..100 {
            if manager.get(&id(CLIENT), Priority::Blocking).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    assert!(gone.await, "expired certificate withdrawn");
    let fresh = pool(Arc::new(manager.clone()), ClientConfig::default());
    let err = fresh.connect(&k, &request_to(echo)).await.unwrap_err();
    assert!(matches!(err, ClientError::NoCertificate { .. }), "{err}");
    assert_eq!(err.response_flag(), "IDENTITY_ERROR");
    // Recovery: the CA comes back and the manager fetches again (its backoff is ≤ 150 s, but it
    // also retries right at expiry; give it a bounded window).
    ca.set_down(false);
    let back = async {
        for _ in 0..400 {
            if manager.get(&id(CLIENT), Priority::Blocking).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    assert!(back.await, "recovered after the outage");
}
