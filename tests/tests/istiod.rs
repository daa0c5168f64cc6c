//! Real istiod (`scripts/istiod.sh`, `tests::istiod::Istiod`) on the test Kubernetes API server: it becomes ready,
//! runs its own CA and publishes that CA's root in the namespaces, serves xDS over TLS with a certificate for
//! `istiod.istio-system.svc` that verifies against that root, and the istioctl built beside it runs.
//!
//! No root needed. Needs `scripts/kube.sh build` and `scripts/istiod.sh build` to have run (`scripts/test.sh` does).

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::istiod::Istiod;
use tests::kube::ApiServer;

/// The status line and body of `GET http://127.0.0.1:<port><path>` (HTTP/1.0: the server closes the connection).
fn http_get(port: u16, path: &str) -> (String, String) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}

/// `openssl s_client` to istiod's xDS TLS port, verifying the chain against istiod's root and the certificate's
/// name against `name` (SNI `name` too, ALPN h2 as gRPC clients offer).
fn tls_handshake(istiod: &Istiod, name: &str) -> Output {
    Command::new("openssl")
        .args(["s_client", "-brief", "-verify_return_error", "-alpn", "h2"])
        .args(["-connect", &istiod.xds_tls_address()])
        .args(["-servername", name, "-verify_hostname", name])
        .arg("-CAfile")
        .arg(istiod.root_cert_file())
        .stdin(Stdio::null())
        .output()
        .expect("cannot run openssl")
}

#[test]
fn istiod_runs_on_the_test_api_server() {
    let api = ApiServer::start("istiod").unwrap();
    let started = Instant::now();
    let istiod = Istiod::start(&api).unwrap_or_else(|e| panic!("{e:#}\n{}", api.log_tails()));
    eprintln!("istiod ready after {:.1?}", started.elapsed());
    let ctx = || istiod.log_tail(40);

    // (a) Readiness answers on the HTTP port, metrics on the monitoring port.
    let (status, body) = http_get(istiod.http_port(), "/ready");
    assert!(
        status.contains(" 200"),
        "/ready: {status} {body}\n{}",
        ctx()
    );
    let (status, metrics) = http_get(istiod.monitoring_port(), "/metrics");
    assert!(status.contains(" 200"), "/metrics: {status}\n{}", ctx());
    assert!(
        metrics.contains("pilot_"),
        "istiod's /metrics has no pilot_ series:\n{metrics}"
    );

    // (b) istiod's own CA: the istio-ca-secret it made, whose CA certificate is the root it publishes in the
    // istio-ca-root-cert ConfigMap of a namespace created after it started.
    let root = istiod.root_cert_pem().trim();
    assert!(root.starts_with("-----BEGIN CERTIFICATE-----"), "{root}");
    let ca_cert = api
        .kubectl(&[
            "get",
            "secret",
            "istio-ca-secret",
            "-n",
            "istio-system",
            "-o",
            r#"go-template={{index .data "ca-cert.pem" | base64decode}}"#,
        ])
        .unwrap();
    assert_eq!(
        ca_cert.trim(),
        root,
        "istio-ca-secret's CA is not the published root"
    );
    api.kubectl(&["create", "namespace", "istiod-probe"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let published = loop {
        let cm = api.get_json(&["configmap", "-n", "istiod-probe"]).unwrap();
        let found = cm["items"].as_array().unwrap().iter().find_map(|c| {
            (c["metadata"]["name"] == "istio-ca-root-cert")
                .then(|| c["data"]["root-cert.pem"].as_str().map(str::to_string))
                .flatten()
        });
        if let Some(pem) = found {
            break pem;
        }
        assert!(
            Instant::now() < deadline,
            "istiod did not publish istio-ca-root-cert in namespace istiod-probe within 30 s: {cm:#}\n{}",
            ctx()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(published.trim(), root, "the root published in istiod-probe");

    // (c) A real TLS handshake to the xDS TLS port (Istio's 15012) verifies against that root for the name
    // clients dial, and fails for a name the certificate does not carry.
    let out = tls_handshake(&istiod, "istiod.istio-system.svc");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("Verification: OK"),
        "TLS to istiod {} as istiod.istio-system.svc ({}):\n{text}\n{}",
        istiod.xds_tls_address(),
        out.status,
        ctx()
    );
    let out = tls_handshake(&istiod, "not-istiod.example.com");
    assert!(
        !out.status.success(),
        "the handshake verified a name istiod's certificate does not carry:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // (d) istioctl runs and reports the pinned build.
    let text = istiod.istioctl(&["version", "--remote=false"]).unwrap();
    assert!(text.contains("1.31-dev"), "istioctl version: {text}");
    let json: Value = serde_json::from_str(
        &istiod
            .istioctl(&["version", "--remote=false", "-o", "json"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        json["clientVersion"]["tag"],
        istiod.version(),
        "istioctl version -o json: {json:#}"
    );

    // istiod is still up after all that, and stopping it stops its process.
    assert!(
        std::path::Path::new(&format!("/proc/{}", istiod.pid())).exists(),
        "{}",
        ctx()
    );
    let pid = istiod.pid();
    let dir = istiod.dir().to_path_buf();
    drop(istiod);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty()
            || stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z')),
        "istiod {pid} still runs after down: {stat}"
    );
}
