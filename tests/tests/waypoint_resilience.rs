//! End-to-end: the waypoint's resilience features in the local mesh, configured from the
//! standard resources — circuit breaking and outlier detection from a DestinationRule, fault
//! injection and local rate limiting from `FaultInjection` / `LocalRateLimit` (an HTTPRoute
//! `ExtensionRef` and a Service `targetRef`), mirroring from an HTTPRoute `RequestMirror`.
//! Everything asserted is observed from outside: what the clients got, what the servers saw,
//! the waypoint's metrics and config dump.

#![allow(clippy::unwrap_used)]

use serde_json::Value;
use tests::waypoint::{
    HTTP_PORT, Mode, SLEEP, counter, namespace_with_waypoint, node_get, pod, pod_ip, requests,
    server, service, vip, wait_ready, waypoint_pod,
};
use tests::{TestMesh, find, must};

const POLICIES: &str = r#"---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: limited, namespace: mesh}
spec:
  host: limited.mesh.svc.cluster.local
  trafficPolicy:
    connectionPool: {http: {http2MaxRequests: 10}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ejecting, namespace: mesh}
spec:
  host: ejecting.mesh.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 4s, maxEjectionPercent: 100}
---
apiVersion: meshctl.dev/v1alpha1
kind: FaultInjection
metadata: {name: abort-fifth, namespace: mesh}
spec:
  abort: {httpStatus: 418, percentage: {value: 20}}
---
apiVersion: meshctl.dev/v1alpha1
kind: FaultInjection
metadata: {name: slow-down, namespace: mesh}
spec:
  delay: {fixedDelay: 200ms, percentage: {value: 100}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: faulty, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: faulty, port: 80}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /delayed}}]
      filters: [{type: ExtensionRef, extensionRef: {group: meshctl.dev, kind: FaultInjection, name: slow-down}}]
      backendRefs: [{name: faulty, port: 80}]
    - matches: [{path: {type: PathPrefix, value: /aborted}}]
      filters: [{type: ExtensionRef, extensionRef: {group: meshctl.dev, kind: FaultInjection, name: abort-fifth}}]
      backendRefs: [{name: faulty, port: 80}]
    - backendRefs: [{name: faulty, port: 80}]
---
apiVersion: meshctl.dev/v1alpha1
kind: LocalRateLimit
metadata: {name: hundred-per-second, namespace: mesh}
spec:
  targetRefs: [{kind: Service, name: rated}]
  tokenBucket: {maxTokens: 100, tokensPerFill: 10, fillInterval: 100ms}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mirrored, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: mirrored, port: 80}]
  rules:
    - filters:
        - type: RequestMirror
          requestMirror: {backendRef: {name: shadow, port: 80}}
      backendRefs: [{name: mirrored, port: 80}]
"#;

fn topology(marker: &str) -> String {
    let mut y = namespace_with_waypoint(&["server", "client"]);
    let plain = server(marker, Mode::Plain);
    y += &pod("limited", "node2", "server", "app: limited", &plain);
    y += &pod(
        "good",
        "node2",
        "server",
        "app: ejecting, health: good",
        &plain,
    );
    y += &pod(
        "bad",
        "node2",
        "server",
        "app: ejecting, health: bad",
        &server(marker, Mode::Fail),
    );
    y += &pod("faulty", "node2", "server", "app: faulty", &plain);
    y += &pod("rated", "node2", "server", "app: rated", &plain);
    y += &pod("primary", "node2", "server", "app: mirrored", &plain);
    y += &pod("shadow", "node1", "server", "app: shadow", &plain);
    y += &pod("client", "node1", "client", "app: client", SLEEP);
    for name in [
        "limited", "ejecting", "faulty", "rated", "mirrored", "shadow",
    ] {
        y += &service(name, &format!("app: {name}"), HTTP_PORT);
    }
    y += POLICIES;
    y
}

fn up(test: &str) -> (TestMesh, Value) {
    let mesh = TestMesh::new(test);
    let marker = format!("marker-{}", mesh.name);
    mesh.up(&topology(&marker), 2);
    let st = mesh.wait_status(
        "client enrolled",
        std::time::Duration::from_secs(20),
        |st| find(&st["pods"], |p| p["name"] == "client").is_some_and(|p| p["enrolled"] == true),
    );
    wait_ready(&mesh, &st);
    (mesh, st)
}

/// Runs a Python script in the client pod and parses the JSON it prints.
fn py(mesh: &TestMesh, what: &str, script: &str) -> Value {
    let out = mesh.exec("mesh/client", &["python3", "-c", script]);
    serde_json::from_str(&must(&out, what)).unwrap()
}

/// `n` concurrent GETs, one connection each: `[{status, ms, overloaded}]`.
fn concurrent(mesh: &TestMesh, url: &str, n: u32) -> Vec<Value> {
    let script = format!(
        r#"
import http.client, json, threading, time, urllib.parse
u = urllib.parse.urlsplit({url:?})
out = []
lock = threading.Lock()
def one():
    t = time.monotonic()
    try:
        c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=20)
        c.request("GET", u.path)
        r = c.getresponse()
        r.read()
        rec = {{"status": r.status, "overloaded": r.getheader("x-envoy-overloaded")}}
    except Exception as e:
        rec = {{"status": 0, "error": str(e)}}
    rec["ms"] = int((time.monotonic() - t) * 1000)
    with lock:
        out.append(rec)
threads = [threading.Thread(target=one) for _ in range({n})]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(out))
"#
    );
    py(mesh, "concurrent requests", &script)
        .as_array()
        .unwrap()
        .clone()
}

/// A burst of `n` GETs on one keep-alive connection: `{statuses, seconds, limited_headers}`
/// (the `x-ratelimit-*` headers of the first 429).
fn burst(mesh: &TestMesh, url: &str, n: u32) -> Value {
    let script = format!(
        r#"
import http.client, json, time, urllib.parse
u = urllib.parse.urlsplit({url:?})
c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
out = {{"statuses": {{}}, "limited_headers": None}}
t = time.monotonic()
for i in range({n}):
    c.request("GET", u.path)
    r = c.getresponse()
    r.read()
    out["statuses"][str(r.status)] = out["statuses"].get(str(r.status), 0) + 1
    if r.status == 429 and out["limited_headers"] is None:
        out["limited_headers"] = {{k: r.getheader(k) for k in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]}}
out["seconds"] = time.monotonic() - t
print(json.dumps(out))
"#
    );
    py(mesh, "request burst", &script)
}

fn status_count(v: &Value, code: &str) -> u64 {
    v["statuses"][code].as_u64().unwrap_or(0)
}

fn median(mut xs: Vec<u64>) -> u64 {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

/// What a server pod has served (`/seen`), asked from node1.
fn seen(mesh: &TestMesh, st: &Value, pod: &str) -> Value {
    let ip = pod_ip(st, pod);
    serde_json::from_str(&node_get(mesh, "node1", &format!("http://{ip}:8080/seen"))).unwrap()
}

#[test]
fn the_waypoint_breaks_circuits_ejects_outliers_injects_faults_limits_rates_and_mirrors() {
    let (mesh, st) = up("waypoint-res");
    let wp_ip = pod_ip(&st, waypoint_pod(&st)["name"].as_str().unwrap());
    // The admin port listens on the waypoint pod's loopback only.
    let wp_pod = format!("mesh/{}", waypoint_pod(&st)["name"].as_str().unwrap());
    let dump = || -> Value {
        let out = mesh.exec(
            &wp_pod,
            &[
                "curl",
                "-sS",
                "--max-time",
                "3",
                "http://127.0.0.1:15000/config_dump",
            ],
        );
        serde_json::from_str(&must(&out, "config dump")).unwrap()
    };
    let metrics = || node_get(&mesh, "node1", &format!("http://{wp_ip}:15020/metrics"));
    let [limited, ejecting, faulty, rated, mirrored] =
        ["limited", "ejecting", "faulty", "rated", "mirrored"].map(|s| vip(&st, s));

    // Circuit breaking: maxRequests 10, 50 concurrent slow requests.
    let results = concurrent(&mesh, &format!("http://{limited}/slow"), 50);
    let ok: Vec<&Value> = results.iter().filter(|r| r["status"] == 200).collect();
    let refused: Vec<&Value> = results.iter().filter(|r| r["status"] == 503).collect();
    assert!(
        (1..=10).contains(&ok.len()) && ok.len() + refused.len() == 50,
        "50 concurrent requests under maxRequests 10: {results:?}"
    );
    assert!(
        refused.len() >= 35,
        "most of the excess is refused: {results:?}"
    );
    assert!(
        refused.iter().all(|r| r["overloaded"] == "true"),
        "refusals carry x-envoy-overloaded: {refused:?}"
    );
    let refused_ms = median(refused.iter().map(|r| r["ms"].as_u64().unwrap()).collect());
    assert!(
        refused_ms < 1500,
        "refusals come at once, not after the 3 s backend: median {refused_ms} ms"
    );
    let limited = seen(&mesh, &st, "limited");
    println!(
        "circuit breaking: {} ok, {} refused (median {refused_ms} ms), backend max in flight {}",
        ok.len(),
        refused.len(),
        limited["max_inflight"]
    );
    assert!(
        limited["max_inflight"].as_u64().unwrap() <= 10,
        "the backend never sees more than 10 at once: {limited}"
    );
    let m = metrics();
    assert!(
        counter(
            &m,
            "istio_requests_total",
            &[("response_flags", "UO"), ("response_code", "503")]
        ) >= refused.len() as f64,
        "UO in the request metrics"
    );
    assert!(
        counter(
            &m,
            "envoy_cluster_upstream_rq_pending_overflow",
            &[(
                "cluster_name",
                "outbound|80||limited.mesh.svc.cluster.local"
            )]
        ) >= refused.len() as f64,
        "overflows counted per cluster:\n{m}"
    );

    // Outlier detection: `bad` always answers 503; 3 in a row eject it for 4 s.
    let first = requests(&mesh, "client", &format!("http://{ejecting}/"), 30, &[]);
    assert_eq!(
        status_count(&first, "503"),
        3,
        "exactly three failures eject the bad host: {first}"
    );
    let after = requests(&mesh, "client", &format!("http://{ejecting}/"), 20, &[]);
    assert_eq!(
        (status_count(&after, "200"), &after["pods"]),
        (20, &serde_json::json!({"good": 20})),
        "while it is ejected the healthy host answers everything: {after}"
    );
    let d = dump();
    let cluster = find(&d["clusters"], |c| {
        c["name"] == "outbound|80||ejecting.mesh.svc.cluster.local"
    })
    .unwrap();
    let bad_ip = pod_ip(&st, "bad");
    let bad = find(&cluster["endpoints"], |e| {
        e["address"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{bad_ip}:"))
    })
    .unwrap();
    assert_eq!(bad["health_status"], "FAILED_OUTLIER_CHECK", "{cluster:#}");
    assert_eq!(bad["outlier"]["ejected"], true, "{cluster:#}");
    assert_eq!(cluster["outlier_detection"]["ejections_active"], 1);
    std::thread::sleep(std::time::Duration::from_millis(4500));
    let back = requests(&mesh, "client", &format!("http://{ejecting}/"), 10, &[]);
    assert!(
        status_count(&back, "503") >= 1,
        "after the ejection time the bad host gets traffic again: {back}"
    );

    // Fault injection: 20 % aborts with 418 over 1,000 requests; a 200 ms delay in the median.
    let aborted = requests(
        &mesh,
        "client",
        &format!("http://{faulty}/aborted"),
        1000,
        &[],
    );
    let teapots = status_count(&aborted, "418");
    assert!(
        (150..=250).contains(&teapots) && teapots + status_count(&aborted, "200") == 1000,
        "20 % ± 5 % of 1,000 aborted with 418: {}",
        aborted["statuses"]
    );
    let plain = requests(&mesh, "client", &format!("http://{faulty}/"), 21, &[]);
    let delayed = requests(
        &mesh,
        "client",
        &format!("http://{faulty}/delayed"),
        21,
        &[],
    );
    let ms = |v: &Value| {
        median(
            v["elapsed_ms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect(),
        )
    };
    let (plain_ms, delayed_ms) = (ms(&plain), ms(&delayed));
    println!("faults: {teapots}/1000 aborted; p50 {plain_ms} ms plain, {delayed_ms} ms delayed");
    assert!(
        delayed_ms >= 200 && delayed_ms >= plain_ms + 150,
        "p50 with a 200 ms delay: {delayed_ms} ms, without: {plain_ms} ms"
    );
    let m = metrics();
    assert!(
        counter(
            &m,
            "istio_requests_total",
            &[("response_flags", "FI"), ("response_code", "418")]
        ) == teapots as f64,
        "FI in the request metrics"
    );
    assert!(
        counter(&m, "istio_requests_total", &[("response_flags", "DI")]) >= 21.0,
        "DI in the request metrics"
    );

    // Local rate limit: 100/s (10 tokens every 100 ms, 100 at most) on the `rated` host.
    let b = burst(&mesh, &format!("http://{rated}/"), 1000);
    let (allowed, limited) = (status_count(&b, "200"), status_count(&b, "429"));
    let seconds = b["seconds"].as_f64().unwrap();
    let most = 100 + 10 * ((seconds / 0.1).ceil() as u64 + 1);
    println!("rate limit: {allowed} allowed, {limited} limited in {seconds:.2} s (at most {most})");
    assert!(
        allowed + limited == 1000 && (100..=most).contains(&allowed),
        "1,000 requests in {seconds:.2} s under 100/s: {allowed} allowed (at most {most}), {limited} limited"
    );
    assert!(limited > 0, "a burst that fast must be limited: {b}");
    assert_eq!(b["limited_headers"]["x-ratelimit-limit"], "100", "{b}");
    assert_eq!(b["limited_headers"]["x-ratelimit-remaining"], "0", "{b}");
    let m = metrics();
    assert_eq!(
        counter(
            &m,
            "istio_requests_total",
            &[("response_flags", "RL"), ("response_code", "429")]
        ),
        limited as f64,
        "RL in the request metrics"
    );

    // Mirroring: the client sees the primary; the shadow sees each request, Host `…-shadow`.
    let answers = requests(&mesh, "client", &format!("http://{mirrored}/"), 20, &[]);
    assert_eq!(
        (&answers["statuses"], &answers["pods"]),
        (
            &serde_json::json!({"200": 20}),
            &serde_json::json!({"primary": 20})
        ),
        "{answers}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let shadow = loop {
        let s = seen(&mesh, &st, "shadow");
        if s["count"].as_u64() >= Some(20) || std::time::Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(shadow["count"], 20, "every request mirrored once: {shadow}");
    assert!(
        shadow["hosts"]
            .as_object()
            .unwrap()
            .keys()
            .all(|h| h.starts_with(&format!("{mirrored}-shadow"))),
        "mirrors carry the shadow Host: {shadow}"
    );
}
