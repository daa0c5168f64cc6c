//! Real proxyless gRPC clients (Python grpcio's C-core and Node grpc-js with @grpc/grpc-js-xds) resolve
//! `xds:///` targets through our control plane: LDS → RDS → CDS → EDS over SotW ADS, weighted routes from
//! HTTPRoute/GRPCRoute, pushes on manifest changes, and the last good configuration kept when a manifest is bad.
//!
//! No root needed: everything runs as processes on 127.0.0.1 (the pods are manifests only; their "IP" is
//! 127.0.0.1 and their container ports are the ports of real grpcio echo servers started by the test).
//! The peers are installed by `scripts/install-deps.sh` into `.peers/`; the control plane must be built with
//! `cargo build -p control-plane --bin control-plane`. Set `PROXYLESS_TRACE=1` to get the clients' xDS traces in
//! their stderr logs (printed when a test fails).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::peers::{ControlPlaneProc, Proc, TempDir, peer_node_modules, peer_python, peer_script};

/// The port of Service `echo` (and of `echo-v1`/`echo-v2`): only a name here, clients dial the endpoints.
const SVC_PORT: u16 = 7070;
const TARGET_HOST: &str = "echo.grpc.svc.cluster.local";

const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

fn target() -> String {
    format!("xds:///{TARGET_HOST}:{SVC_PORT}")
}

// ---------------------------------------------------------------------------------------------------------------
// Manifests

/// Namespace `grpc`; pods `echo-v1`/`echo-v2` whose named container port `grpc` is the port of a real backend;
/// Services `echo-v1`, `echo-v2` (one version each) and `echo` (selecting `echo_selector`).
fn workloads(port_v1: u16, port_v2: u16, echo_selector: &str) -> String {
    let pod = |version: &str, port: u16| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: echo-{version}
  namespace: grpc
  labels: {{app: echo, version: {version}}}
spec:
  containers:
    - name: echo
      # Not run: the control plane only reads manifests. The test runs the real server on this port.
      command: ["sleep", "1"]
      ports: [{{name: grpc, containerPort: {port}}}]
status: {{podIP: 127.0.0.1}}
"#
        )
    };
    let service = |name: &str, selector: &str| {
        format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: grpc}}
spec:
  selector: {selector}
  ports: [{{name: grpc, port: {SVC_PORT}, targetPort: grpc, appProtocol: grpc}}]
"#
        )
    };
    [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: grpc}\n".to_string(),
        pod("v1", port_v1),
        pod("v2", port_v2),
        service("echo", echo_selector),
        service("echo-v1", "{app: echo, version: v1}"),
        service("echo-v2", "{app: echo, version: v2}"),
    ]
    .join("---")
}

/// The weighted backends of a route rule. `w1` is text so a test can write a bad value.
fn backends(w1: &str, w2: &str) -> String {
    format!(
        "      backendRefs:
        - {{name: echo-v1, port: {SVC_PORT}, weight: {w1}}}
        - {{name: echo-v2, port: {SVC_PORT}, weight: {w2}}}
"
    )
}

/// An HTTPRoute attached to Service `echo` (GAMMA: `parentRefs` kind Service) splitting `w1`/`w2`.
fn http_route(parent_port: &str, w1: &str, w2: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: echo, namespace: grpc}}
spec:
  parentRefs: [{{group: "", kind: Service, name: echo, port: {parent_port}}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /}}}}]
{}"#,
        backends(w1, w2)
    )
}

/// A GRPCRoute attached to Service `echo`, matching the method `echo.Echo/Call`, splitting `w1`/`w2`.
fn grpc_route(w1: u32, w2: u32) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: echo, namespace: grpc}}
spec:
  parentRefs: [{{group: "", kind: Service, name: echo, port: {SVC_PORT}}}]
  rules:
    - matches: [{{method: {{type: Exact, service: echo.Echo, method: Call}}}}]
{}"#,
        backends(&w1.to_string(), &w2.to_string())
    )
}

// ---------------------------------------------------------------------------------------------------------------
// The setup: two real gRPC backends, a manifest directory and the control plane.

struct Mesh {
    cp: ControlPlaneProc,
    _v1: Proc,
    _v2: Proc,
    python: PathBuf,
    manifests: TempDir,
    work: TempDir,
}

impl Mesh {
    /// Starts backends `v1` and `v2`, writes the workloads and `route` (as `route.yaml`), starts the control plane
    /// and waits until it has applied them. `echo_selector` is the selector of the parent Service `echo`.
    fn start(test: &str, echo_selector: &str, route: &str) -> Mesh {
        let python = peer_python();
        let work = TempDir::new(test);
        let manifests = TempDir::new(&format!("{test}-manifests"));
        let (v1, port_v1) = backend(&python, "v1", &work);
        let (v2, port_v2) = backend(&python, "v2", &work);
        manifests.write_atomic(
            "workloads.yaml",
            &workloads(port_v1, port_v2, echo_selector),
        );
        manifests.write_atomic("route.yaml", route);
        let cp = ControlPlaneProc::start(manifests.path(), work.path());
        let st = cp.wait_status(
            "the first manifest generation",
            Duration::from_secs(10),
            |s| s["generation"].as_u64() >= Some(1) || !s["error"].is_null(),
        );
        assert!(
            st["error"].is_null(),
            "the control plane rejected the test's manifests: {st:#}"
        );
        Mesh {
            cp,
            _v1: v1,
            _v2: v2,
            python,
            manifests,
            work,
        }
    }

    /// Replaces `route.yaml` atomically.
    fn write_route(&self, route: &str) {
        self.manifests.write_atomic("route.yaml", route);
    }

    fn generation(&self) -> u64 {
        self.cp.status()["generation"].as_u64().unwrap_or(0)
    }

    /// Waits (bounded) until the control plane has applied a generation after `before` without error.
    fn wait_applied(&self, before: u64) {
        let st = self.cp.wait_status(
            "the new manifest generation",
            Duration::from_secs(10),
            |s| s["generation"].as_u64() > Some(before) || !s["error"].is_null(),
        );
        assert!(st["error"].is_null(), "manifests rejected: {st:#}");
    }

    /// A Python grpcio client dialing the target through the control plane.
    fn python_client(&self, node_id: &str) -> Client {
        let bootstrap = self.cp.write_bootstrap(self.work.path(), node_id);
        let mut cmd = Command::new(&self.python);
        cmd.arg("-u")
            .arg(peer_script("grpc_echo.py"))
            .args(["client", &target()])
            .env("GRPC_XDS_BOOTSTRAP", &bootstrap)
            .env_remove("GRPC_XDS_BOOTSTRAP_CONFIG");
        trace(
            &mut cmd,
            "xds_client,xds_resolver,xds_cluster_manager_lb,weighted_target_lb",
        );
        Client::spawn(node_id, cmd, self)
    }

    /// A Node grpc-js client (with the @grpc/grpc-js-xds resolver) dialing the target through the control plane.
    fn node_client(&self, node_id: &str) -> Client {
        let modules = peer_node_modules();
        let bootstrap = self.cp.write_bootstrap(self.work.path(), node_id);
        let mut cmd = Command::new("node");
        cmd.arg(peer_script("grpc_echo.js"))
            .arg(target())
            .env("NODE_PATH", &modules)
            .env("GRPC_XDS_BOOTSTRAP", &bootstrap)
            .env_remove("GRPC_XDS_BOOTSTRAP_CONFIG");
        trace(
            &mut cmd,
            "xds_client,xds_resolver,xds_cluster_manager,weighted_target",
        );
        Client::spawn(node_id, cmd, self)
    }

    /// Waits (bounded) until `/debug/adsz` lists `node_id` with all four types sent and ACKed at the version sent,
    /// and without any NACK; returns its entry. A NACK fails the test at once with the client's message.
    fn wait_acked(&self, node_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let adsz = self.cp.adsz();
            let client = adsz["clients"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["node_id"] == node_id))
                .cloned();
            if let Some(c) = &client {
                for t in [LISTENER, ROUTE, CLUSTER, ENDPOINT] {
                    let nack = &c["types"][t]["last_nack"];
                    assert!(
                        nack.is_null(),
                        "{node_id} NACKed {t}: {nack:#}\nadsz entry: {c:#}"
                    );
                }
                let acked = [LISTENER, ROUTE, CLUSTER, ENDPOINT].iter().all(|t| {
                    let ty = &c["types"][*t];
                    !ty["last_sent"].is_null()
                        && ty["last_acked_version"] == ty["last_sent"]["version"]
                });
                if acked {
                    return c.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{node_id}: not every type ACKed at the version sent within 10 s: {adsz:#}\ncontrol plane:\n{}",
                self.cp.proc.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Starts a real grpcio echo server answering with `name`; returns it and its port.
fn backend(python: &Path, name: &str, work: &TempDir) -> (Proc, u16) {
    let mut cmd = Command::new(python);
    cmd.arg("-u")
        .arg(peer_script("grpc_echo.py"))
        .args(["server", name]);
    let mut p = Proc::spawn(&format!("backend-{name}"), cmd, work.path());
    let line = p.next_json(Duration::from_secs(20));
    let port = line["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or_else(|| panic!("backend {name}: no port in {line}"));
    (p, port)
}

/// With `PROXYLESS_TRACE=1`, turns on the client library's xDS tracers (written to the client's stderr log).
fn trace(cmd: &mut Command, tracers: &str) {
    if std::env::var_os("PROXYLESS_TRACE").is_some() {
        cmd.env("GRPC_TRACE", tracers)
            .env("GRPC_VERBOSITY", "DEBUG");
    } else {
        cmd.env("GRPC_VERBOSITY", "ERROR");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Clients

/// The outcome of a round of calls: answers per backend name and failures per status code.
#[derive(Debug, Default)]
struct Round {
    counts: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    first_error: Option<String>,
}

impl Round {
    fn of(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    fn answered(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// A long-lived client process: one channel, rounds of calls on request (so it follows pushes on one ADS stream).
struct Client {
    node_id: String,
    proc: Proc,
}

impl Client {
    fn spawn(node_id: &str, cmd: Command, mesh: &Mesh) -> Client {
        let proc = Proc::spawn(
            &format!("client-{}", node_id.replace(['~', '/'], "_")),
            cmd,
            mesh.work.path(),
        );
        Client {
            node_id: node_id.to_string(),
            proc,
        }
    }

    /// Makes `n` calls (each bounded by the client's 5 s deadline; a round stops after 3 failures).
    fn round(&mut self, n: u32) -> Round {
        self.proc.send_line(&n.to_string());
        let v = self
            .proc
            .next_json(Duration::from_secs(30) + Duration::from_millis(50) * n);
        let map = |v: &Value| -> BTreeMap<String, u64> {
            v.as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Round {
            counts: map(&v["counts"]),
            errors: map(&v["errors"]),
            first_error: v["first_error"].as_str().map(str::to_owned),
        }
    }

    /// A round of `n` calls that must all be answered.
    fn round_ok(&mut self, n: u32, mesh: &Mesh) -> Round {
        let r = self.round(n);
        if !r.errors.is_empty() {
            let adsz = mesh.cp.adsz();
            panic!(
                "{}: calls to {} failed ({}): {r:?}\nNACKs: {:#?}\nadsz: {adsz:#}\nclient stderr:\n{}\ncontrol plane stderr:\n{}",
                self.node_id,
                target(),
                r.first_error.as_deref().unwrap_or_default(),
                nacks(&adsz, &self.node_id),
                self.proc.stderr(),
                mesh.cp.proc.stderr()
            );
        }
        assert_eq!(r.answered(), u64::from(n), "{}: {r:?}", self.node_id);
        r
    }

    /// Rounds of 20 calls until all of a round go to `backend` (at most 20 s): the client followed a push.
    fn follow(&mut self, backend: &str, mesh: &Mesh) -> Duration {
        let started = Instant::now();
        let mut rounds = Vec::new();
        while started.elapsed() < Duration::from_secs(20) && rounds.len() < 200 {
            let r = self.round(20);
            if r.errors.is_empty() && r.of(backend) == 20 {
                return started.elapsed();
            }
            rounds.push(r);
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{}: calls did not all go to {backend} within 20 s; rounds: {rounds:?}\nadsz: {:#}\nclient stderr:\n{}",
            self.node_id,
            mesh.cp.adsz(),
            self.proc.stderr()
        );
    }
}

/// Asserts both backends answered and the share of `v1` is within `[lo, hi]`.
fn assert_split(r: &Round, lo: f64, hi: f64, who: &str) {
    let (v1, v2) = (r.of("v1"), r.of("v2"));
    assert_eq!(
        v1 + v2,
        r.answered(),
        "{who}: answers from unknown backends: {r:?}"
    );
    assert!(v1 > 0 && v2 > 0, "{who}: both backends must answer: {r:?}");
    let share = v1 as f64 / (v1 + v2) as f64;
    assert!(
        (lo..=hi).contains(&share),
        "{who}: v1 share {share:.2} is outside [{lo}, {hi}]: {r:?}"
    );
}

/// `type URL: message` of every NACK `/debug/adsz` holds for `node_id`: why a client rejected our config.
fn nacks(adsz: &Value, node_id: &str) -> Vec<String> {
    let clients = adsz["clients"].as_array().cloned().unwrap_or_default();
    clients
        .iter()
        .filter(|c| c["node_id"] == node_id)
        .filter_map(|c| c["types"].as_object())
        .flat_map(|types| {
            types.iter().filter_map(|(url, t)| {
                let msg = t["last_nack"]["message"].as_str()?;
                Some(format!("{url}: {msg}"))
            })
        })
        .collect()
}

/// Names the client subscribed to for a type, per `/debug/adsz`.
fn subscribed(entry: &Value, type_url: &str) -> Vec<String> {
    entry["types"][type_url]["names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// What a proxyless client must have subscribed to: the listener named as the target, and (through the route)
/// the EDS clusters of both backends.
fn assert_subscriptions(entry: &Value) {
    let node = &entry["node_id"];
    assert_eq!(
        entry["stream"], "sotw",
        "{node}: gRPC speaks SotW: {entry:#}"
    );
    let listeners = subscribed(entry, LISTENER);
    assert!(
        listeners.contains(&format!("{TARGET_HOST}:{SVC_PORT}")),
        "{node}: listener subscription {listeners:?}"
    );
    let clusters = subscribed(entry, CLUSTER);
    for v in ["echo-v1", "echo-v2"] {
        let name = format!("outbound|{SVC_PORT}||{v}.grpc.svc.cluster.local");
        assert!(
            clusters.contains(&name),
            "{node}: cluster {name} not subscribed: {clusters:?}"
        );
    }
    assert!(
        !subscribed(entry, ROUTE).is_empty() && !subscribed(entry, ENDPOINT).is_empty(),
        "{node}: no route or endpoint subscription: {entry:#}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Tests

#[test]
fn python_grpcio_resolves_xds_targets_and_follows_a_weighted_split() {
    let started = Instant::now();
    let mesh = Mesh::start(
        "proxyless-py",
        "{app: echo}",
        &http_route(&SVC_PORT.to_string(), "80", "20"),
    );
    let node = "sidecar~127.0.0.1~py-client.grpc~grpc.svc.cluster.local";
    let mut client = mesh.python_client(node);

    // 80/20: 200 calls. The parent Service alone would split 50/50, so the share proves the route applies.
    let r = client.round_ok(200, &mesh);
    assert_split(&r, 0.65, 0.92, "python 80/20");
    eprintln!("python 80/20: {:?}", r.counts);
    let entry = mesh.wait_acked(node);
    assert_subscriptions(&entry);
    let route_version = entry["types"][ROUTE]["last_acked_version"].clone();

    // 0/100: the connected client follows the push.
    let before = mesh.generation();
    mesh.write_route(&http_route(&SVC_PORT.to_string(), "0", "100"));
    mesh.wait_applied(before);
    let took = client.follow("v2", &mesh);
    let r = client.round_ok(100, &mesh);
    assert_eq!(r.of("v2"), 100, "python 0/100: {r:?}");
    let entry = mesh.wait_acked(node);
    assert_ne!(
        entry["types"][ROUTE]["last_acked_version"], route_version,
        "the route push was not ACKed at a new version: {entry:#}"
    );
    eprintln!(
        "python: 80/20 then 0/100 followed in {took:?}; test took {:?}",
        started.elapsed()
    );
}

#[test]
fn grpc_js_resolves_xds_targets_and_follows_a_weighted_split() {
    let started = Instant::now();
    // The parent Service selects only v1: without the route every call would go to v1.
    let mesh = Mesh::start(
        "proxyless-js",
        "{app: echo, version: v1}",
        &grpc_route(50, 50),
    );
    let node = "sidecar~127.0.0.1~js-client.grpc~grpc.svc.cluster.local";
    let mut client = mesh.node_client(node);

    let r = client.round_ok(200, &mesh);
    assert_split(&r, 0.35, 0.65, "grpc-js 50/50");
    eprintln!("grpc-js 50/50: {:?}", r.counts);
    let entry = mesh.wait_acked(node);
    assert_subscriptions(&entry);
    let route_version = entry["types"][ROUTE]["last_acked_version"].clone();

    let before = mesh.generation();
    mesh.write_route(&grpc_route(0, 100));
    mesh.wait_applied(before);
    let took = client.follow("v2", &mesh);
    let r = client.round_ok(100, &mesh);
    assert_eq!(r.of("v2"), 100, "grpc-js 0/100: {r:?}");
    let entry = mesh.wait_acked(node);
    assert_ne!(
        entry["types"][ROUTE]["last_acked_version"], route_version,
        "the route push was not ACKed at a new version: {entry:#}"
    );
    eprintln!(
        "grpc-js: 50/50 then 0/100 followed in {took:?}; test took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_bad_manifest_is_rejected_and_the_last_good_config_keeps_serving() {
    let started = Instant::now();
    // Everything to v1; each bad manifest below tries to move traffic to v2.
    let mesh = Mesh::start(
        "proxyless-bad",
        "{app: echo}",
        &http_route(&SVC_PORT.to_string(), "100", "0"),
    );
    let py_node = "sidecar~127.0.0.1~py-early.grpc~grpc.svc.cluster.local";
    let js_node = "sidecar~127.0.0.1~js-early.grpc~grpc.svc.cluster.local";
    let mut py = mesh.python_client(py_node);
    let mut js = mesh.node_client(js_node);
    assert_eq!(py.round_ok(20, &mesh).of("v1"), 20);
    assert_eq!(js.round_ok(20, &mesh).of("v1"), 20);
    mesh.wait_acked(py_node);
    mesh.wait_acked(js_node);
    let good = mesh.generation();

    // Two kinds of bad: a rule check (weight out of range; clamping it would send everything to v2) and a type
    // error (a port that is not a number).
    let bad = [
        (
            http_route(&SVC_PORT.to_string(), "-1", "100"),
            "spec.rules[0].backendRefs[0].weight",
        ),
        (http_route("seventy", "0", "100"), "spec.parentRefs[0].port"),
    ];
    for (i, (yaml, field)) in bad.iter().enumerate() {
        mesh.write_route(yaml);
        let st = mesh.cp.wait_status(
            &format!("the error for {field}"),
            Duration::from_secs(10),
            |s| s["error"].as_str().is_some_and(|e| e.contains(field)),
        );
        let error = st["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("HTTPRoute") && error.contains("grpc/echo"),
            "the error must name the object: {error}"
        );
        assert_eq!(
            st["generation"].as_u64(),
            Some(good),
            "a bad manifest must not make a generation: {st:#}"
        );

        // The connected clients keep the last good config, and a client that connects now gets it too.
        assert_eq!(py.round_ok(20, &mesh).of("v1"), 20, "python after bad {i}");
        assert_eq!(js.round_ok(20, &mesh).of("v1"), 20, "grpc-js after bad {i}");
        let late_node = format!("sidecar~127.0.0.1~py-late-{i}.grpc~grpc.svc.cluster.local");
        let mut late = mesh.python_client(&late_node);
        assert_eq!(late.round_ok(20, &mesh).of("v1"), 20, "late client {i}");
        mesh.wait_acked(&late_node);
    }
    // Nothing bad ever reached the clients.
    mesh.wait_acked(py_node);
    mesh.wait_acked(js_node);

    // Fixing the file clears the error and the fix is pushed.
    mesh.write_route(&http_route(&SVC_PORT.to_string(), "0", "100"));
    let st = mesh
        .cp
        .wait_status("the fixed manifest applied", Duration::from_secs(10), |s| {
            s["error"].is_null() && s["generation"].as_u64() > Some(good)
        });
    assert!(st["error"].is_null(), "{st:#}");
    py.follow("v2", &mesh);
    js.follow("v2", &mesh);
    mesh.wait_acked(py_node);
    mesh.wait_acked(js_node);
    eprintln!("bad manifests: test took {:?}", started.elapsed());
}
