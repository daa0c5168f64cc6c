//! Helpers for the waypoint's end-to-end tests: server and pod manifests, an in-pod request
//! loop, status look-ups, metric sums and the readiness wait. A missing pod, service or
//! malformed answer is a test failure, so look-ups panic with what was missing.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{TestMesh, find, must};

/// What [`server`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 with the echo JSON.
    Plain,
    /// Every other `/flaky…` request gets a 503.
    Flaky,
    /// Every request gets a 503 (`/seen` aside).
    Fail,
}

/// An HTTP server on 8080 answering JSON `{pod, client, path, headers}`; `/slow…` waits 3 s;
/// `GET /seen` answers what it has served: `{"count", "max_inflight", "hosts"}` (itself not
/// counted). [`Mode`] says which requests fail.
pub fn server(marker: &str, mode: Mode) -> String {
    format!(
        r#"
        - name: http
          command: ["python3", "-u", "-c"]
          args:
            - |
              import http.server, json, os, threading, time
              lock = threading.Lock()
              seen = {{"count": 0, "flaky": 0, "inflight": 0, "max_inflight": 0, "hosts": {{}}}}
              mode = os.environ["MODE"]
              class Echo(http.server.BaseHTTPRequestHandler):
                  protocol_version = "HTTP/1.1"
                  # Headers and body are two writes: without this, Nagle holds the body for the
                  # peer's delayed ACK (40 ms a request on a keep-alive connection).
                  disable_nagle_algorithm = True
                  def reply(self, code, body):
                      self.send_response(code)
                      self.send_header("Content-Length", str(len(body)))
                      self.end_headers()
                      self.wfile.write(body)
                  def do_GET(self):
                      if self.path == "/seen":
                          with lock:
                              body = json.dumps(seen).encode()
                          return self.reply(200, body)
                      with lock:
                          seen["count"] += 1
                          seen["inflight"] += 1
                          seen["max_inflight"] = max(seen["max_inflight"], seen["inflight"])
                          host = self.headers.get("host", "")
                          seen["hosts"][host] = seen["hosts"].get(host, 0) + 1
                      try:
                          self.serve()
                      finally:
                          with lock:
                              seen["inflight"] -= 1
                  def serve(self):
                      if self.path.startswith("/slow"):
                          time.sleep(3)
                      if mode == "fail":
                          return self.reply(503, b"failing")
                      if mode == "flaky" and self.path.startswith("/flaky"):
                          with lock:
                              seen["flaky"] += 1
                              fail = seen["flaky"] % 2 == 1
                          if fail:
                              return self.reply(503, b"flaky")
                      body = json.dumps({{"pod": os.environ["POD_NAME"], "client": self.client_address[0],
                                         "path": self.path, "headers": {{k.lower(): v for k, v in self.headers.items()}}}}).encode()
                      self.reply(200, body)
                  def log_message(self, *args):
                      pass
              http.server.ThreadingHTTPServer(("", 8080), Echo).serve_forever()
            - "{marker}"
          env:
            - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
            - {{name: MODE, value: "{mode}"}}
          ports: [{{name: http, containerPort: 8080}}]
"#,
        mode = match mode {
            Mode::Plain => "plain",
            Mode::Flaky => "flaky",
            Mode::Fail => "fail",
        }
    )
}

/// Namespace `mesh` (ambient, using waypoint Gateway `waypoint` for its Services), the given
/// service accounts, and that Gateway.
pub fn namespace_with_waypoint(service_accounts: &[&str]) -> String {
    let mut y = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: mesh, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}\n",
    );
    for sa in service_accounts {
        y += &format!(
            "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: mesh}}\n"
        );
    }
    y += "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: mesh, labels: {istio.io/waypoint-for: service}}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n";
    y
}

/// A pod in namespace `mesh`.
pub fn pod(name: &str, node: &str, sa: &str, labels: &str, containers: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: mesh, labels: {{{labels}}}}}\nspec:\n  nodeName: {node}\n  serviceAccountName: {sa}\n  containers:{containers}\n"
    )
}

/// A Service in namespace `mesh`.
pub fn service(name: &str, selector: &str, port: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: mesh}}\nspec:\n  selector: {{{selector}}}\n  ports: [{port}]\n"
    )
}

/// A container that only sleeps.
pub const SLEEP: &str = "\n        - {name: main, command: [sleep, infinity]}\n";
/// Port 80 → the container port `http`, HTTP.
pub const HTTP_PORT: &str = "{name: http, port: 80, targetPort: http, appProtocol: http}";

/// Makes `n` GETs on one keep-alive connection from inside the pod (Python `http.client`):
/// `{"statuses": {code: n}, "pods": {pod: n}, "last": {...last JSON body...}, "location": ...}`.
pub fn requests(mesh: &TestMesh, from: &str, url: &str, n: u32, headers: &[(&str, &str)]) -> Value {
    let hdrs: BTreeMap<&str, &str> = headers.iter().copied().collect();
    let script = format!(
        r#"
import http.client, json, sys, urllib.parse
u = urllib.parse.urlsplit({url:?})
c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
out = {{"statuses": {{}}, "pods": {{}}, "last": None, "location": None, "elapsed_ms": []}}
import time
for i in range({n}):
    t = time.monotonic()
    c.request("GET", u.path + ("?" + u.query if u.query else ""), headers={hdrs})
    r = c.getresponse()
    body = r.read()
    out["elapsed_ms"].append(int((time.monotonic() - t) * 1000))
    out["statuses"][str(r.status)] = out["statuses"].get(str(r.status), 0) + 1
    out["location"] = r.getheader("location")
    try:
        j = json.loads(body)
        out["pods"][j["pod"]] = out["pods"].get(j["pod"], 0) + 1
        out["last"] = j
    except Exception:
        out["last"] = body.decode(errors="replace")
print(json.dumps(out))
"#,
        hdrs = serde_json::to_string(&hdrs).unwrap()
    );
    let out = mesh.exec(&format!("mesh/{from}"), &["python3", "-c", &script]);
    serde_json::from_str(&must(&out, &format!("requests to {url} from {from}"))).unwrap()
}

pub fn vip(st: &Value, name: &str) -> String {
    find(&st["services"], |s| s["name"] == name).unwrap()["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn pod_ip(st: &Value, name: &str) -> String {
    find(&st["pods"], |p| p["name"] == name).unwrap()["ip"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The waypoint pod of Gateway `waypoint` (labelled with the Gateway's name).
pub fn waypoint_pod(st: &Value) -> Value {
    find(&st["pods"], |p| {
        p["namespace"] == "mesh" && p["waypoint"] == "waypoint"
    })
    .unwrap_or_else(|| panic!("no waypoint pod in status: {st:#}"))
}

pub fn node_get(mesh: &TestMesh, node: &str, url: &str) -> String {
    must(
        &mesh.exec(
            &format!("node/{node}"),
            &["curl", "-sS", "--max-time", "3", url],
        ),
        url,
    )
}

/// Sums a counter's samples whose label set contains every `want` pair.
pub fn counter(metrics: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| {
            want.iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the waypoint pod of Gateway `waypoint` answers ready on 15021 (it has its
/// configuration and certificate), asked from node1.
pub fn wait_ready(mesh: &TestMesh, st: &Value) {
    let wp = pod_ip(st, waypoint_pod(st)["name"].as_str().unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = mesh.exec(
            "node/node1",
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                &format!("http://{wp}:15021/healthz/ready"),
            ],
        );
        if String::from_utf8_lossy(&out.stdout) == "200" {
            break;
        }
        assert!(Instant::now() < deadline, "waypoint never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}
