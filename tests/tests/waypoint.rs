//! End-to-end: the waypoint in the local mesh. Namespace `mesh` is ambient and uses the waypoint
//! Gateway `waypoint` (`istio.io/use-waypoint`); meshctl runs the waypoint pod; clients' tunnels
//! send Service traffic to it over HBONE (spec §3.1 step 4); it routes, authorizes and forwards
//! over HBONE to the destination pods' tunnels under its own identity. Everything asserted is
//! observed from outside: what the servers saw, what the clients got, the metrics of the
//! waypoint and of the destination tunnel.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;
use tests::waypoint::{
    HTTP_PORT, Mode, SLEEP, counter, namespace_with_waypoint, node_get, pod, pod_ip, requests,
    server, service, vip, wait_ready, waypoint_pod,
};
use tests::{TestMesh, find, must};

/// A gRPC echo server (real grpcio) on 7070 answering every `/echo.Echo/Call` with its pod name.
fn grpc_server() -> String {
    let python = tests::peers::peer_python();
    format!(
        r#"
        - name: grpc
          command: ["{python}", "-u", "-c"]
          args:
            - |
              import os, grpc
              from concurrent import futures
              reply = os.environ["POD_NAME"].encode()
              h = grpc.method_handlers_generic_handler("echo.Echo", {{"Call": grpc.unary_unary_rpc_method_handler(lambda req, ctx: reply)}})
              s = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
              s.add_generic_rpc_handlers((h,))
              s.add_insecure_port("0.0.0.0:7070")
              s.start()
              s.wait_for_termination()
          env:
            - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
          ports: [{{name: grpc, containerPort: 7070}}]
"#,
        python = python.display()
    )
}

const ROUTES: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: backend, port: 80}]
  rules:
    - matches: [{headers: [{name: x-version, value: v2}]}]
      backendRefs: [{name: backend-v2, port: 80}]
    - matches: [{path: {type: PathPrefix, value: /old}}]
      filters:
        - type: RequestRedirect
          requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}
    - matches: [{path: {type: PathPrefix, value: /rewrite}}]
      filters:
        - type: URLRewrite
          urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /echoed}}
        - type: RequestHeaderModifier
          requestHeaderModifier: {add: [{name: x-added, value: by-waypoint}]}
      backendRefs: [{name: backend-v1, port: 80}]
    - backendRefs: [{name: backend-v1, port: 80, weight: 90}, {name: backend-v2, port: 80, weight: 10}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: slow, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: slow, port: 80}]
  rules:
    - timeouts: {request: 1s}
      backendRefs: [{name: slow, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: flaky, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: flaky, port: 80}]
  rules:
    - retry: {attempts: 2, codes: [503]}
      backendRefs: [{name: flaky, port: 80}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: mesh}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-a, namespace: mesh}
spec:
  targetRefs: [{group: "", kind: Service, name: guarded}]
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/mesh/sa/client-a"]}}]}]
"#;

fn topology(marker: &str) -> String {
    let mut y = namespace_with_waypoint(&["server", "client-a", "client-b"]);
    let plain = server(marker, Mode::Plain);
    y += &pod("v1", "node2", "server", "app: backend, version: v1", &plain);
    y += &pod("v2", "node2", "server", "app: backend, version: v2", &plain);
    y += &pod("slow", "node1", "server", "app: slow", &plain);
    y += &pod(
        "flaky",
        "node2",
        "server",
        "app: flaky",
        &server(marker, Mode::Flaky),
    );
    y += &pod("guarded", "node2", "server", "app: guarded", &plain);
    y += &pod("grpc", "node2", "server", "app: grpc", &grpc_server());
    y += &pod("client-a", "node1", "client-a", "app: a", SLEEP);
    y += &pod("client-b", "node1", "client-b", "app: b", SLEEP);
    y += &service("backend", "app: backend", HTTP_PORT);
    y += &service("backend-v1", "version: v1", HTTP_PORT);
    y += &service("backend-v2", "version: v2", HTTP_PORT);
    y += &service("slow", "app: slow", HTTP_PORT);
    y += &service("flaky", "app: flaky", HTTP_PORT);
    y += &service("guarded", "app: guarded", HTTP_PORT);
    y += &service(
        "grpc",
        "app: grpc",
        "{name: grpc, port: 7070, targetPort: grpc, appProtocol: grpc}",
    );
    y += &service("sticky", "app: backend", HTTP_PORT);
    y += "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: sticky, namespace: mesh}\nspec:\n  host: sticky.mesh.svc.cluster.local\n  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}\n";
    y += ROUTES;
    y
}

fn up(test: &str) -> (TestMesh, Value) {
    let mesh = TestMesh::new(test);
    let marker = format!("marker-{}", mesh.name);
    mesh.up(&topology(&marker), 2);
    let st = mesh.wait_status("clients enrolled", Duration::from_secs(20), |st| {
        ["client-a", "client-b"]
            .iter()
            .all(|c| find(&st["pods"], |p| p["name"] == *c).is_some_and(|p| p["enrolled"] == true))
    });
    wait_ready(&mesh, &st);
    (mesh, st)
}

#[test]
fn the_waypoint_routes_splits_authorizes_and_forwards_under_its_own_identity() {
    let (mesh, st) = up("waypoint-l7");
    let backend = vip(&st, "backend");
    let wp = waypoint_pod(&st);
    let wp_ip = pod_ip(&st, wp["name"].as_str().unwrap());

    // 90/10 split over 1,000 requests (±4 %).
    let r = requests(&mesh, "client-a", &format!("http://{backend}/"), 1000, &[]);
    assert_eq!(r["statuses"]["200"], 1000, "{r:#}");
    let v1 = r["pods"]["v1"].as_f64().unwrap_or(0.0);
    let v2 = r["pods"]["v2"].as_f64().unwrap_or(0.0);
    assert!((860.0..=940.0).contains(&v1), "v1 got {v1}, v2 {v2}");
    assert_eq!(v1 + v2, 1000.0);
    // The destination app sees the waypoint pod as its client (spoofed by its tunnel).
    assert_eq!(r["last"]["client"], wp_ip.as_str(), "{r:#}");

    // Header match pins v2.
    let r = requests(
        &mesh,
        "client-a",
        &format!("http://{backend}/"),
        20,
        &[("x-version", "v2")],
    );
    assert_eq!(r["pods"]["v2"], 20, "{r:#}");

    // Rewrite + request header added.
    let r = requests(
        &mesh,
        "client-a",
        &format!("http://{backend}/rewrite/x?q=1"),
        1,
        &[],
    );
    assert_eq!(r["last"]["path"], "/echoed/x?q=1", "{r:#}");
    assert_eq!(r["last"]["headers"]["x-added"], "by-waypoint", "{r:#}");
    assert!(r["last"]["headers"]["traceparent"].is_string(), "{r:#}");

    // Redirect.
    let r = requests(
        &mesh,
        "client-a",
        &format!("http://{backend}/old/page"),
        1,
        &[],
    );
    assert_eq!(r["statuses"]["301"], 1, "{r:#}");
    assert!(r["location"].as_str().unwrap().ends_with("/new"), "{r:#}");

    // Path-based DENY on the Gateway: 403 with a body; other paths still succeed.
    let r = requests(
        &mesh,
        "client-a",
        &format!("http://{backend}/admin/x"),
        3,
        &[],
    );
    assert_eq!(r["statuses"]["403"], 3, "{r:#}");
    assert_eq!(r["last"], "RBAC: access denied", "{r:#}");
    let r = requests(
        &mesh,
        "client-a",
        &format!("http://{backend}/public"),
        3,
        &[],
    );
    assert_eq!(r["statuses"]["200"], 3, "{r:#}");

    // ALLOW by identity on one Service: client-a passes, client-b gets 403.
    let guarded = vip(&st, "guarded");
    let r = requests(&mesh, "client-a", &format!("http://{guarded}/"), 3, &[]);
    assert_eq!(r["statuses"]["200"], 3, "{r:#}");
    let r = requests(&mesh, "client-b", &format!("http://{guarded}/"), 3, &[]);
    assert_eq!(r["statuses"]["403"], 3, "{r:#}");

    // A slow backend → 504 within the 1 s route timeout.
    let slow = vip(&st, "slow");
    let r = requests(&mesh, "client-a", &format!("http://{slow}/slow"), 2, &[]);
    assert_eq!(r["statuses"]["504"], 2, "{r:#}");
    for ms in r["elapsed_ms"].as_array().unwrap() {
        let ms = ms.as_u64().unwrap();
        assert!((900..2900).contains(&ms), "504 after {ms} ms: {r:#}");
    }

    // A backend failing every other request: every client request succeeds thanks to retries.
    let flaky = vip(&st, "flaky");
    let r = requests(&mesh, "client-a", &format!("http://{flaky}/flaky"), 20, &[]);
    assert_eq!(r["statuses"]["200"], 20, "{r:#}");

    // Consistent hash on a header pins each user to one pod; different users spread.
    let sticky = vip(&st, "sticky");
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..16 {
        let r = requests(
            &mesh,
            "client-a",
            &format!("http://{sticky}/"),
            10,
            &[("x-user", &format!("user-{user}"))],
        );
        let pods = r["pods"].as_object().unwrap();
        assert_eq!(pods.len(), 1, "user-{user} was not pinned: {r:#}");
        seen.extend(pods.keys().cloned());
    }
    assert_eq!(seen.len(), 2, "16 users all hashed to {seen:?}");

    // The waypoint's metrics carry the client's identity; the destination tunnel saw the
    // waypoint's identity.
    let m = node_get(&mesh, "node1", &format!("http://{wp_ip}:15020/metrics"));
    // The destination service is the backend the route chose (as Istio labels it).
    let from_a: f64 = ["backend-v1", "backend-v2"]
        .iter()
        .map(|svc| {
            counter(
                &m,
                "istio_requests_total",
                &[
                    ("reporter", "waypoint"),
                    (
                        "source_principal",
                        "spiffe://cluster.local/ns/mesh/sa/client-a",
                    ),
                    ("source_workload", "client-a"),
                    ("destination_service_name", svc),
                    (
                        "destination_principal",
                        "spiffe://cluster.local/ns/mesh/sa/server",
                    ),
                    ("response_code", "200"),
                    ("connection_security_policy", "mutual_tls"),
                ],
            )
        })
        .sum();
    assert!(
        from_a >= 1000.0,
        "waypoint counted {from_a} requests from client-a:\n{m}"
    );
    let denied = counter(
        &m,
        "istio_requests_total",
        &[
            (
                "source_principal",
                "spiffe://cluster.local/ns/mesh/sa/client-b",
            ),
            ("response_code", "403"),
        ],
    );
    assert_eq!(denied, 3.0, "{m}");
    let dst = node_get(&mesh, "node2", "http://127.0.0.1:15020/metrics");
    let via_wp = counter(
        &dst,
        "istio_tcp_connections_opened_total",
        &[
            ("reporter", "destination"),
            (
                "source_principal",
                "spiffe://cluster.local/ns/mesh/sa/waypoint",
            ),
        ],
    );
    assert!(
        via_wp >= 1.0,
        "destination tunnel saw no waypoint connection:\n{dst}"
    );
    let direct = counter(
        &dst,
        "istio_tcp_connections_opened_total",
        &[
            ("reporter", "destination"),
            (
                "source_principal",
                "spiffe://cluster.local/ns/mesh/sa/client-a",
            ),
        ],
    );
    assert_eq!(
        direct, 0.0,
        "client-a reached node2 without the waypoint:\n{dst}"
    );

    // gRPC (HTTP/2 end to end) through the waypoint.
    let grpc = vip(&st, "grpc");
    let python = tests::peers::peer_python();
    let out = mesh.exec(
        "mesh/client-a",
        &[
            python.to_str().unwrap(),
            "-c",
            &format!(
                "import grpc\nch = grpc.insecure_channel('{grpc}:7070')\nf = ch.unary_unary('/echo.Echo/Call')\nprint(','.join(f(b'', timeout=5).decode() for _ in range(5)))"
            ),
        ],
    );
    assert_eq!(must(&out, "gRPC call").trim(), "grpc,grpc,grpc,grpc,grpc");
    let m = node_get(&mesh, "node1", &format!("http://{wp_ip}:15020/metrics"));
    let grpc_ok = counter(
        &m,
        "istio_requests_total",
        &[
            ("request_protocol", "grpc"),
            ("destination_service", "grpc.mesh.svc.cluster.local"),
        ],
    );
    assert!(grpc_ok >= 5.0, "{m}");
}
