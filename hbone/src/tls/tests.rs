//! Real TLS handshakes over 127.0.0.1 with certificates from the test CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::identity::Identity;
use crate::test_util::TestCa;

fn id(s: &str) -> Identity {
    s.parse().unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

/// Runs one handshake; Ok((client_ok, server_ok)) as results of each side.
async fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
) -> (Result<(), String>, Result<(), String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(ALPN_H2));
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    });
    let client_res = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::IpAddress(addr.ip().into());
        let mut tls = TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        // TLS 1.3: a server-side rejection of the client cert surfaces on first read.
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"ping");
        Ok::<(), String>(())
    }
    .await;
    let server_res = tokio::time::timeout(Duration::from_secs(10), server_task)
        .await
        .expect("server side bounded")
        .unwrap();
    (client_res, server_res)
}

struct Pair {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

fn pair(ca: &TestCa, client_id: &str, server_id: &str, expected: &[&str]) -> Pair {
    let c = ca.issue(&id(client_id), HOUR);
    let s = ca.issue(&id(server_id), HOUR);
    Pair {
        client: client_config(
            &c,
            expected.iter().map(|e| id(e)).collect(),
            KeyExchange::Default,
        )
        .unwrap(),
        server: server_config(&s, KeyExchange::Default).unwrap(),
    }
}

const A: &str = "spiffe://cluster.local/ns/default/sa/a";
const B: &str = "spiffe://cluster.local/ns/default/sa/b";
const B_WRONG_SA: &str = "spiffe://cluster.local/ns/default/sa/not-b";
const FOREIGN: &str = "spiffe://other.domain/ns/default/sa/a";

#[tokio::test]
async fn mutual_tls_with_expected_identity_succeeds() {
    let ca = TestCa::new(HOUR);
    let p = pair(&ca, A, B, &[B_WRONG_SA, B]);
    let (c, s) = handshake(p.client, p.server).await;
    assert_eq!((c, s), (Ok(()), Ok(())));
}

#[tokio::test]
async fn post_quantum_only_key_exchange_works() {
    let ca = TestCa::new(HOUR);
    let c = ca.issue(&id(A), HOUR);
    let s = ca.issue(&id(B), HOUR);
    let client = client_config(&c, vec![id(B)], KeyExchange::PostQuantumOnly).unwrap();
    let server = server_config(&s, KeyExchange::PostQuantumOnly).unwrap();
    let (c, s) = handshake(client, server).await;
    assert_eq!((c, s), (Ok(()), Ok(())));
}

#[tokio::test]
async fn client_rejects_server_with_wrong_service_account() {
    let ca = TestCa::new(HOUR);
    let p = pair(&ca, A, B_WRONG_SA, &[B]);
    let (c, s) = handshake(p.client, p.server).await;
    assert!(c.is_err(), "client must reject, got {c:?}");
    assert!(s.is_err());
}

#[tokio::test]
async fn server_rejects_client_from_other_trust_domain() {
    let ca = TestCa::new(HOUR);
    let p = pair(&ca, FOREIGN, B, &[B]);
    let (c, s) = handshake(p.client, p.server).await;
    assert!(s.is_err(), "server must reject, got {s:?}");
    assert!(c.is_err());
}

#[tokio::test]
async fn expired_certificates_are_rejected_both_ways() {
    let ca = TestCa::new(HOUR);
    let past = SystemTime::now() - 2 * HOUR;
    let expired_b = ca.issue_window(&id(B), past, past + HOUR / 2);
    let good_a = ca.issue(&id(A), HOUR);
    let client = client_config(&good_a, vec![id(B)], KeyExchange::Default).unwrap();
    let server = server_config(&expired_b, KeyExchange::Default).unwrap();
    let (c, _) = handshake(client, server).await;
    let c = c.unwrap_err();
    assert!(
        c.to_lowercase().contains("expired"),
        "client sees expired server cert: {c}"
    );

    let expired_a = ca.issue_window(&id(A), past, past + HOUR / 2);
    let good_b = ca.issue(&id(B), HOUR);
    let client = client_config(&expired_a, vec![id(B)], KeyExchange::Default).unwrap();
    let server = server_config(&good_b, KeyExchange::Default).unwrap();
    let (_, s) = handshake(client, server).await;
    let s = s.unwrap_err();
    assert!(
        s.to_lowercase().contains("expired"),
        "server sees expired client cert: {s}"
    );
}

#[tokio::test]
async fn missing_client_certificate_fails_handshake() {
    let ca = TestCa::new(HOUR);
    let b = ca.issue(&id(B), HOUR);
    let provider = crypto_provider(KeyExchange::Default);
    let verifier = ExpectedIdentityServerVerifier::new(
        b.roots(),
        vec![id(B)],
        provider.signature_verification_algorithms,
    )
    .unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    client.alpn_protocols = vec![ALPN_H2.to_vec()];
    let server = server_config(&b, KeyExchange::Default).unwrap();
    let (c, s) = handshake(Arc::new(client), server).await;
    assert!(s.is_err() && c.is_err(), "client {c:?} server {s:?}");
}

#[tokio::test]
async fn certificate_from_unknown_root_is_rejected() {
    let ca = TestCa::new(HOUR);
    let other = TestCa::new(HOUR);
    let c = ca.issue(&id(A), HOUR);
    let s = other.issue(&id(B), HOUR);
    let client = client_config(&c, vec![id(B)], KeyExchange::Default).unwrap();
    let server = server_config(&s, KeyExchange::Default).unwrap();
    let (c, _) = handshake(client, server).await;
    let c = c.unwrap_err();
    assert!(c.to_lowercase().contains("issuer"), "{c}");
}

#[tokio::test]
async fn trust_bundle_with_several_roots_accepts_either() {
    let old = TestCa::new(HOUR);
    let new = TestCa::new(HOUR);
    // The client's bundle holds both roots (rotation); the server's cert is from the new root.
    let a = old.issue(&id(A), HOUR);
    let mut roots = a.roots().to_vec();
    let s = new.issue(&id(B), HOUR);
    roots.extend(s.roots().iter().cloned());
    let a = WorkloadCertificate::from_der(&id(A), pkcs8(&a), a.chain().to_vec(), roots.clone())
        .unwrap();
    let s = WorkloadCertificate::from_der(&id(B), pkcs8(&s), s.chain().to_vec(), roots).unwrap();
    let client = client_config(&a, vec![id(B)], KeyExchange::Default).unwrap();
    let server = server_config(&s, KeyExchange::Default).unwrap();
    let (c, s) = handshake(client, server).await;
    assert_eq!((c, s), (Ok(()), Ok(())));
}

fn pkcs8(cert: &WorkloadCertificate) -> Vec<u8> {
    match cert.key() {
        rustls_pki_types::PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        _ => unreachable!("test CA keys are PKCS#8"),
    }
}

#[test]
fn ca_response_parsing_checks_shape_and_identity() {
    let ca = TestCa::new(HOUR);
    let csr = crate::ca::generate_csr(&id(A)).unwrap();
    let chain = ca.signer().sign(&csr.pem, &id(A), HOUR).unwrap();
    assert_eq!(chain.len(), 2, "leaf + root bundle");
    let cert =
        WorkloadCertificate::from_ca_response(&id(A), csr.key_pkcs8_der.clone(), &chain).unwrap();
    assert_eq!(cert.identity(), &id(A));
    assert!(cert.refresh_at() > cert.not_before() && cert.refresh_at() < cert.not_after());
    assert!(matches!(
        WorkloadCertificate::from_ca_response(&id(B), csr.key_pkcs8_der.clone(), &chain),
        Err(CertificateError::WrongIdentity { .. })
    ));
    assert!(matches!(
        WorkloadCertificate::from_ca_response(&id(A), csr.key_pkcs8_der.clone(), &chain[..1]),
        Err(CertificateError::ChainTooShort { .. })
    ));
    let garbage = vec![chain[0].clone(), "not pem".to_string()];
    assert!(matches!(
        WorkloadCertificate::from_ca_response(&id(A), csr.key_pkcs8_der, &garbage),
        Err(CertificateError::Pem { .. })
    ));
    // The signer refuses a CSR for a different identity.
    assert!(ca.signer().sign(&csr.pem, &id(B), HOUR).is_err());
}
