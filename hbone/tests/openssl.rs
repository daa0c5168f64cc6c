//! A real OpenSSL client (`openssl s_client`, TLS 1.3, ALPN h2, a workload certificate) completes mutual TLS
//! with our HBONE server configuration and exchanges bytes. OpenSSL parses the server's CertificateRequest
//! strictly: its certificate-authorities hint must hold DER Names (it failed with `parse_ca_names: wrong tag`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hbone::Identity;
use hbone::test_util::TestCa;
use hbone::tls::{KeyExchange, server_config};
use rustls_pki_types::PrivateKeyDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Writes `der` as PEM (`kind` is `x509` or `pkey`) with the openssl CLI.
fn pem(dir: &Path, name: &str, kind: &str, der: &[u8]) -> String {
    let der_path = dir.join(format!("{name}.der"));
    let pem_path = dir.join(format!("{name}.pem"));
    std::fs::write(&der_path, der).unwrap();
    let out = Command::new("openssl")
        .args([kind, "-inform", "der", "-in"])
        .arg(&der_path)
        .arg("-out")
        .arg(&pem_path)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pem_path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openssl_client_completes_mutual_tls_with_the_hbone_server() {
    let hour = Duration::from_secs(3600);
    let ca = TestCa::new(hour);
    let server_id: Identity = "spiffe://cluster.local/ns/default/sa/server"
        .parse()
        .unwrap();
    let client_id: Identity = "spiffe://cluster.local/ns/default/sa/client"
        .parse()
        .unwrap();
    let server = server_config(&ca.issue(&server_id, hour), KeyExchange::Default).unwrap();
    let client = ca.issue(&client_id, hour);

    let dir = std::env::temp_dir().join(format!("hbone-openssl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = pem(&dir, "client", "x509", client.chain()[0].as_ref());
    let key = match client.key() {
        PrivateKeyDer::Pkcs8(k) => pem(&dir, "client-key", "pkey", k.secret_pkcs8_der()),
        _ => unreachable!("test CA keys are PKCS#8"),
    };
    let root = pem(&dir, "root", "x509", client.roots()[0].as_ref());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        // OpenSSL sends its leaf and the chain it built up to the CA file's root.
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|c| !c.is_empty());
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((peer, buf))
    });
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("timeout")
            .args([
                "10",
                "openssl",
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["-tls1_3", "-alpn", "h2", "-quiet", "-verify_return_error"])
            .args(["-cert", &cert, "-key", &key, "-CAfile", &root])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"ping").unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let server = tokio::time::timeout(Duration::from_secs(10), accept)
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(server, Ok((true, *b"ping")), "openssl said: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "pong",
        "openssl said: {stderr}"
    );
}
