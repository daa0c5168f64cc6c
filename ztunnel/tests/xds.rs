//! The real `ztunnel` binary against our ADS server (no root needed): it subscribes to workloads and
//! policies over delta ADS, is ready only once both types were ACKed, NACKs a bad resource by name
//! while keeping the rest, and resumes after a server restart with `initial_resource_versions`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::istio::security as xsec;
use proto::istio::workload as pw;
use tokio::sync::watch;
use xds::server::{AdsServer, serve};
use xds::{SharedSnapshot, Snapshot, type_url};

struct Ztunnel(Child);

impl Drop for Ztunnel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn workload(uid: &str, ip: [u8; 4]) -> pw::Address {
    pw::Address {
        r#type: Some(pw::address::Type::Workload(pw::Workload {
            uid: uid.into(),
            name: uid.rsplit('/').next().unwrap().into(),
            namespace: "ns".into(),
            addresses: vec![ip.to_vec()],
            ..Default::default()
        })),
    }
}

fn snapshot(n: u8, with_policies: bool, bad: bool) -> Arc<Snapshot> {
    let mut s = Snapshot::new();
    s.declare(type_url::ADDRESS);
    for i in 0..n {
        let uid = format!("Kubernetes//Pod/ns/p{i}");
        s.add(type_url::ADDRESS, &uid, &workload(&uid, [10, 0, 0, i + 1]));
    }
    if bad {
        // Claims p0's address: contradictory, must be NACKed by name.
        let uid = "Kubernetes//Pod/ns/intruder";
        s.add(type_url::ADDRESS, uid, &workload(uid, [10, 0, 0, 1]));
    }
    if with_policies {
        s.declare(type_url::AUTHORIZATION);
        let p = xsec::Authorization {
            name: "deny".into(),
            namespace: "ns".into(),
            scope: xsec::Scope::Namespace as i32,
            action: xsec::Action::Deny as i32,
            ..Default::default()
        };
        s.add(type_url::AUTHORIZATION, "ns/deny", &p);
    }
    Arc::new(s)
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start_server(
    listener: std::net::TcpListener,
    rx: watch::Receiver<Arc<Snapshot>>,
) -> (AdsServer, tokio::sync::oneshot::Sender<()>) {
    let server = AdsServer::new(Arc::new(SharedSnapshot::new(rx)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    listener.set_nonblocking(true).unwrap();
    let l = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(serve(server.clone(), l, async {
        let _ = stopped.await;
    }));
    (server, stop)
}

fn ztunnel_types(server: &AdsServer) -> Option<serde_json::Value> {
    server.dump()["clients"]
        .as_array()?
        .iter()
        .find(|c| {
            c["node_id"]
                .as_str()
                .is_some_and(|n| n.starts_with("ztunnel~"))
        })
        .map(|c| c["types"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_both_types_nack_by_name_and_resume_after_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let xds_addr = free_addr();
    let (admin, ready) = (free_addr(), free_addr());
    let (tx, rx) = watch::channel(snapshot(3, false, false));
    let (server, stop) = start_server(std::net::TcpListener::bind(xds_addr).unwrap(), rx.clone());
    let child = Command::new(env!("CARGO_BIN_EXE_ztunnel"))
        .env_clear()
        .env("XDS_ADDRESS", format!("http://{xds_addr}"))
        .env("FAKE_CA", "true")
        .env("INPOD_UDS", dir.path().join("zds.sock"))
        .env("ADMIN_ADDR", admin.to_string())
        .env("STATS_ADDR", free_addr().to_string())
        .env("READINESS_ADDR", ready.to_string())
        .env("NODE_NAME", "node-x")
        .env("POD_NAME", "ztunnel-x")
        .env("INSTANCE_IP", "10.9.9.9")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ztunnel");
    let _z = Ztunnel(child);
    let pending = || http_get(ready, "/healthz/ready").1;

    // Workloads ACKed, policies never answered: the state manager stays pending.
    eventually("the Address ACK", || {
        ztunnel_types(&server)
            .is_some_and(|t| t[type_url::ADDRESS]["last_acked_version"].is_string())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(pending().contains("state manager"), "{}", pending());
    // Once policies arrive and are ACKed it is no longer pending (the workload proxy manager still
    // waits for a node agent, which this test does not run).
    tx.send_replace(snapshot(3, true, false));
    eventually("the state manager to be ready", || {
        let p = pending();
        p.contains("pending") && !p.contains("state manager")
    })
    .await;
    let dump = http_get(admin, "/config_dump").1;
    assert!(dump.matches("Kubernetes//Pod/ns/p").count() >= 3, "{dump}");

    // A contradictory workload is NACKed by name; the others stay.
    tx.send_replace(snapshot(3, true, true));
    eventually("the NACK", || {
        ztunnel_types(&server).is_some_and(|t| {
            t[type_url::ADDRESS]["last_nack"]["message"]
                .as_str()
                .is_some_and(|m| {
                    m.contains("Kubernetes//Pod/ns/intruder")
                        && m.contains("already belongs to workload Kubernetes//Pod/ns/p0")
                })
        })
    })
    .await;
    let dump = http_get(admin, "/config_dump").1;
    assert!(
        !dump.contains("intruder") && dump.contains("Kubernetes//Pod/ns/p2"),
        "{dump}"
    );

    // Server restart (same address): the tunnel reconnects carrying the 3 workloads it holds, and
    // then follows the new server.
    tx.send_replace(snapshot(3, true, false));
    drop(stop);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (tx2, rx2) = watch::channel(snapshot(4, true, false));
    let listener = loop {
        match std::net::TcpListener::bind(xds_addr) {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let (server2, _stop2) = start_server(listener, rx2);
    eventually("the reconnect with initial_resource_versions", || {
        ztunnel_types(&server2).is_some_and(|t| {
            t[type_url::ADDRESS]["initial_resource_versions"] == 3
                && t[type_url::ADDRESS]["last_acked_version"].is_string()
        })
    })
    .await;
    eventually("the new workload", || {
        http_get(admin, "/config_dump")
            .1
            .contains("Kubernetes//Pod/ns/p3")
    })
    .await;
    drop(tx2);
    drop(tx);
}
