//! End-to-end: the node tunnels in the local mesh. Pods of an ambient namespace are captured by
//! the real CNI chain (bridge + host-local + istio-cni), redirected by the agent's nftables rules,
//! and carried by the ztunnels over HBONE; everything asserted here is observed from outside
//! (what the server saw, the tunnels' metrics and admin, a capture on the underlay).

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::{TestMesh, find, must};

/// An HTTP server on 8080 and 9090 answering `<pod> saw <client ip> on <port>`.
fn server_container(marker: &str) -> String {
    format!(
        r#"
        - name: http
          command: ["python3", "-u", "-c"]
          args:
            - |
              import http.server, os, threading
              class Echo(http.server.BaseHTTPRequestHandler):
                  protocol_version = "HTTP/1.1"
                  def do_GET(self):
                      body = f"{{os.environ['POD_NAME']}} saw {{self.client_address[0]}} on {{self.server.server_port}}\n".encode()
                      self.send_response(200)
                      self.send_header("Content-Length", str(len(body)))
                      self.end_headers()
                      self.wfile.write(body)
                  def log_message(self, *args):
                      pass
              for port in (8080, 9090):
                  s = http.server.ThreadingHTTPServer(("", port), Echo)
                  threading.Thread(target=s.serve_forever, daemon=True).start()
              threading.Event().wait()
            - "{marker}"
          env:
            - name: POD_NAME
              valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
          ports: [{{name: http, containerPort: 8080}}, {{name: alt, containerPort: 9090}}]
"#
    )
}

fn pod(ns: &str, name: &str, node: &str, sa: &str, labels: &str, containers: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\nspec:\n  nodeName: {node}\n  serviceAccountName: {sa}\n  containers:{containers}\n"
    )
}

const SLEEP: &str = "\n        - {name: main, command: [sleep, infinity]}\n";

/// Ambient namespace `mesh` (servers on both nodes behind a Service, clients `a` and `b` on
/// node1 with their own service accounts) and plain namespace `plain` (a client, a server).
fn topology(marker: &str) -> String {
    let mut y = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: mesh, labels: {istio.io/dataplane-mode: ambient}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: plain}\n",
    );
    for (ns, sa) in [
        ("mesh", "server"),
        ("mesh", "client-a"),
        ("mesh", "client-b"),
        ("plain", "default"),
    ] {
        y += &format!(
            "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: {ns}}}\n"
        );
    }
    let server = server_container(marker);
    y += &pod("mesh", "server1", "node1", "server", "app: server", &server);
    y += &pod("mesh", "server2", "node2", "server", "app: server", &server);
    y += &pod("mesh", "client-a", "node1", "client-a", "app: a", SLEEP);
    y += &pod("mesh", "client-b", "node1", "client-b", "app: b", SLEEP);
    y += &pod("mesh", "client-c", "node2", "client-a", "app: c", SLEEP);
    y += &pod(
        "plain",
        "outsider",
        "node1",
        "default",
        "app: outsider",
        SLEEP,
    );
    y += &pod(
        "plain",
        "plainserver",
        "node2",
        "default",
        "app: plainserver",
        &server,
    );
    y += "---\napiVersion: v1\nkind: Service\nmetadata: {name: server, namespace: mesh}\nspec:\n  selector: {app: server}\n  ports: [{name: http, port: 80, targetPort: http}]\n";
    y
}

struct Ips {
    st: Value,
}

impl Ips {
    fn of(&self, name: &str) -> String {
        find(&self.st["pods"], |p| p["name"] == name).unwrap()["ip"]
            .as_str()
            .unwrap()
            .to_string()
    }
    fn vip(&self) -> String {
        find(&self.st["services"], |s| s["name"] == "server").unwrap()["clusterIP"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// GET from a node's netns (admin/metrics endpoints of its ztunnel).
fn node_get(mesh: &TestMesh, node: &str, url: &str) -> String {
    must(
        &mesh.exec(
            &format!("node/{node}"),
            &["curl", "-sS", "--max-time", "3", url],
        ),
        url,
    )
}

fn up(test: &str) -> (TestMesh, Ips, String) {
    let mesh = TestMesh::new(test);
    let marker = format!("marker-{}", mesh.name);
    mesh.up(&topology(&marker), 2);
    let st = mesh.wait_status("pods enrolled", Duration::from_secs(10), |st| {
        st["pods"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["enrolled"] == (p["namespace"] == "mesh"))
    });
    (mesh, Ips { st }, marker)
}

/// `curl` from `from`; Ok(body) or Err(curl's error).
fn get(mesh: &TestMesh, from: &str, url: &str) -> Result<String, String> {
    mesh.http_get(from, url).map_err(|e| e.to_string())
}

#[test]
fn meshed_traffic_crosses_both_tunnels_over_hbone_and_is_never_plaintext_on_the_wire() {
    let (mesh, ips, marker) = up("hbone");
    let client = ips.of("client-a");

    // A capture on the underlay bridge while a cross-node request carries the marker.
    let pcap = std::env::temp_dir().join(format!("{}.pcap", mesh.name));
    let mut capture = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}.underlay", mesh.name),
            "tcpdump",
            "-i",
            "ul0",
            "-U",
            "-s",
            "0",
            "-w",
        ])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Send nothing before tcpdump says it listens (a fixed sleep lost the start on a loaded machine).
    let stderr = capture.stderr.take().unwrap();
    let (listening_tx, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening on") {
                let _ = listening_tx.send(());
            }
        }
    });
    listening
        .recv_timeout(Duration::from_secs(15))
        .expect("tcpdump started listening on the underlay");

    // Pod → pod, same node and across nodes: the app sees the client pod's own IP.
    for server in ["server1", "server2"] {
        let body = get(
            &mesh,
            "mesh/client-a",
            &format!("http://{}:8080/{marker}", ips.of(server)),
        )
        .unwrap();
        assert_eq!(body.trim(), format!("{server} saw {client} on 8080"));
    }
    // Pod → Service VIP: spread over both endpoints, source kept.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..16 {
        let body = get(
            &mesh,
            "mesh/client-a",
            &format!("http://{}/{marker}", ips.vip()),
        )
        .unwrap();
        let (server, rest) = body.trim().split_once(' ').unwrap();
        assert_eq!(rest, format!("saw {client} on 8080"));
        seen.insert(server.to_owned());
    }
    assert_eq!(seen.len(), 2, "VIP load went to {seen:?}");
    // Control: plain pods (not in the mesh) do send the marker in clear text across the wire,
    // so the capture would see it if the tunnels leaked it.
    let plain = get(
        &mesh,
        "plain/outsider",
        &format!("http://{}:8080/{marker}-plain", ips.of("plainserver")),
    )
    .unwrap();
    assert!(plain.contains("plainserver saw"), "{plain}");

    // tcpdump writes each packet as it goes but may lag on a loaded machine: wait (bounded) until
    // the control request is in the file before stopping it.
    let read = || {
        let mut bytes = Vec::new();
        std::fs::File::open(&pcap)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    };
    let control = format!("{marker}-plain");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !String::from_utf8_lossy(&read()).contains(&control)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = capture.kill();
    let _ = capture.wait();
    let bytes = read();
    let _ = std::fs::remove_file(&pcap);
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains(&format!("{marker}-plain")),
        "the capture missed the plaintext control request"
    );
    let leaked =
        text.matches(marker.as_str()).count() - text.matches(&format!("{marker}-plain")).count();
    assert_eq!(leaked, 0, "the marker crossed the underlay in clear text");

    // The destination tunnel (node2) saw the client's identity over mTLS; the source tunnel
    // reported its side.
    let dst = node_get(&mesh, "node2", "http://127.0.0.1:15020/metrics");
    let inbound = dst
        .lines()
        .find(|l| {
            l.starts_with("istio_tcp_connections_opened_total{")
                && l.contains("reporter=\"destination\"")
                && l.contains("destination_workload=\"server2\"")
        })
        .unwrap_or_else(|| panic!("no inbound connection metric on node2:\n{dst}"));
    assert!(
        inbound.contains("source_principal=\"spiffe://cluster.local/ns/mesh/sa/client-a\""),
        "{inbound}"
    );
    assert!(
        inbound.contains("connection_security_policy=\"mutual_tls\""),
        "{inbound}"
    );
    assert!(
        inbound.contains("source_workload_namespace=\"mesh\""),
        "{inbound}"
    );
    let src = node_get(&mesh, "node1", "http://127.0.0.1:15020/stats/prometheus");
    assert!(
        src.lines()
            .any(|l| l.starts_with("istio_tcp_connections_opened_total{")
                && l.contains("reporter=\"source\"")
                && l.contains("destination_service=\"server.mesh.svc.cluster.local\"")),
        "no outbound Service metric on node1:\n{src}"
    );

    // /config_dump names workloads, services, policies and certificates with the spec's keys.
    let dump: Value = serde_json::from_str(&node_get(
        &mesh,
        "node1",
        "http://127.0.0.1:15000/config_dump",
    ))
    .unwrap();
    for key in [
        "workloads",
        "services",
        "policies",
        "certificates",
        "workloadState",
        "stagedServices",
        "config",
    ] {
        assert!(dump.get(key).is_some(), "config_dump lacks {key}: {dump:#}");
    }
    assert!(
        find(&dump["workloads"], |w| w["name"] == "server2"
            && w["protocol"] == "HBONE")
        .is_some()
    );
    assert!(
        find(&dump["workloads"], |w| w["name"] == "plainserver"
            && w["protocol"] == "TCP")
        .is_some()
    );
    let svc = find(&dump["services"], |s| {
        s["hostname"] == "server.mesh.svc.cluster.local"
    })
    .unwrap();
    assert_eq!(svc["endpoints"].as_object().unwrap().len(), 2, "{svc:#}");
    let cert = find(&dump["certificates"], |c| {
        c["identity"] == "spiffe://cluster.local/ns/mesh/sa/client-a"
    })
    .unwrap();
    assert_eq!(cert["state"], "Available");
    assert!(
        cert["certChain"][0]["pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert!(
        cert["certChain"][0]["expirationTime"].is_string()
            && cert["rootCerts"].as_array().unwrap().len() == 1
    );
    assert!(
        !dump.to_string().contains("PRIVATE KEY"),
        "config_dump must never carry a key"
    );
    assert_eq!(
        dump["workloadState"].as_object().unwrap().len(),
        3,
        "three meshed pods on node1"
    );
}

/// Applies `spec` as AuthorizationPolicy `mesh/p` (replacing the previous one).
fn policy(mesh: &TestMesh, yaml: &str) {
    let path = mesh.manifest("policy.yaml", yaml);
    must(
        &mesh.meshctl(&["apply", "-f", tests::path_str(&path)]),
        "meshctl apply",
    );
}

fn ap(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: mesh}}\nspec:\n{spec}"
    )
}

/// `(client pod, server port, allowed)`.
type Verdict = (&'static str, u16, bool);

/// Waits (bounded) until every `(client, port, allowed)` verdict holds.
fn expect(mesh: &TestMesh, ips: &Ips, case: &str, want: &[Verdict]) {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let got: Vec<Verdict> = want
            .iter()
            .map(|(from, port, _)| {
                let url = format!("http://{}:{port}/", ips.of("server2"));
                (*from, *port, get(mesh, from, &url).is_ok())
            })
            .collect();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{case}: want {want:?}, got {got:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn l4_authorization_gives_the_verdicts_of_the_spec_table() {
    let (mesh, ips, _) = up("authz");
    const A: &str = "mesh/client-a";
    const B: &str = "mesh/client-b";
    const OUT: &str = "plain/outsider";
    let a_ip = ips.of("client-a");
    let cases: Vec<(&str, String, Vec<Verdict>)> = vec![
        ("no policy: everything allowed", ap("  action: DENY\n"), vec![(A, 8080, true), (B, 8080, true), (OUT, 8080, true)]),
        ("ALLOW without rules denies all", ap("  {}\n"), vec![(A, 8080, false), (B, 8080, false), (OUT, 8080, false)]),
        ("ALLOW rules: [{}] allows all", ap("  rules: [{}]\n"), vec![(A, 8080, true), (B, 8080, true), (OUT, 8080, true)]),
        (
            "ALLOW principals",
            ap("  rules: [{from: [{source: {principals: [cluster.local/ns/mesh/sa/client-a]}}]}]\n"),
            vec![(A, 8080, true), (B, 8080, false), (OUT, 8080, false)],
        ),
        (
            "ALLOW principal wildcard suffix",
            ap("  rules: [{from: [{source: {principals: [\"*/sa/client-b\"]}}]}]\n"),
            vec![(A, 8080, false), (B, 8080, true)],
        ),
        (
            "ALLOW namespaces (identity-less plaintext has no namespace)",
            ap("  rules: [{from: [{source: {namespaces: [mesh]}}]}]\n"),
            vec![(A, 8080, true), (B, 8080, true), (OUT, 8080, false)],
        ),
        (
            "DENY principals",
            ap("  action: DENY\n  rules: [{from: [{source: {principals: [cluster.local/ns/mesh/sa/client-b]}}]}]\n"),
            vec![(A, 8080, true), (B, 8080, false), (OUT, 8080, true)],
        ),
        (
            "DENY notPrincipals presence rejects identity-less clients (STRICT)",
            ap("  action: DENY\n  rules: [{from: [{source: {notPrincipals: [\"*\"]}}]}]\n"),
            vec![(A, 8080, true), (OUT, 8080, false)],
        ),
        ("ALLOW ports", ap("  rules: [{to: [{operation: {ports: [\"9090\"]}}]}]\n"), vec![(A, 8080, false), (A, 9090, true)]),
        (
            "DENY notPorts",
            ap("  action: DENY\n  rules: [{to: [{operation: {notPorts: [\"8080\"]}}]}]\n"),
            vec![(A, 8080, true), (A, 9090, false)],
        ),
        (
            "ALLOW ipBlocks",
            ap(&format!("  rules: [{{from: [{{source: {{ipBlocks: [{a_ip}/32]}}}}]}}]\n")),
            vec![(A, 8080, true), (B, 8080, false)],
        ),
        (
            "ALLOW with an HTTP-only field never matches at L4",
            ap("  rules: [{to: [{operation: {methods: [GET]}}]}]\n"),
            vec![(A, 8080, false), (B, 8080, false)],
        ),
        (
            "DENY with an HTTP-only field widens to the L4 part (deny all)",
            ap("  action: DENY\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n"),
            vec![(A, 8080, false), (OUT, 8080, false)],
        ),
        (
            "dry-run DENY does not enforce",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: mesh, annotations: {istio.io/dry-run: \"true\"}}\nspec:\n  action: DENY\n  rules: [{}]\n".into(),
            vec![(A, 8080, true), (B, 8080, true)],
        ),
        (
            "selector policy applies to selected workloads only (server2 is app=server)",
            ap("  selector: {matchLabels: {app: other}}\n  rules: [{from: [{source: {principals: [nobody]}}]}]\n"),
            vec![(A, 8080, true)],
        ),
    ];
    for (case, yaml, want) in &cases {
        policy(&mesh, yaml);
        expect(&mesh, &ips, case, want);
    }
    // PeerAuthentication STRICT in the root namespace: plaintext clients are rejected.
    policy(&mesh, &ap("  action: DENY\n"));
    let strict = "apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n";
    policy(&mesh, strict);
    expect(
        &mesh,
        &ips,
        "PeerAuthentication STRICT",
        &[(A, 8080, true), (OUT, 8080, false)],
    );
}

#[test]
fn a_new_deny_closes_an_open_connection() {
    let (mesh, ips, _) = up("revoke");
    let url = format!("http://{}:8080/", ips.of("server2"));
    // One keep-alive connection making a request every 200 ms for up to 30 s.
    let script = format!(
        "import http.client,time,sys\nc=http.client.HTTPConnection('{}',8080,timeout=5)\nfor i in range(150):\n    try:\n        c.request('GET','/'); r=c.getresponse(); r.read()\n    except Exception as e:\n        print('closed after',i,type(e).__name__,flush=True); sys.exit(3)\n    print('ok',i,flush=True); time.sleep(0.2)\n",
        ips.of("server2")
    );
    assert!(get(&mesh, "mesh/client-a", &url).is_ok());
    let mut child = Command::new(tests::meshctl_bin())
        .args([
            "--mesh",
            &mesh.name,
            "exec",
            "mesh/client-a",
            "--",
            "python3",
            "-c",
            &script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let applied = Instant::now();
    policy(
        &mesh,
        &ap(
            "  action: DENY\n  rules: [{from: [{source: {principals: [cluster.local/ns/mesh/sa/client-a]}}]}]\n",
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the open connection survived the DENY policy");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let closed_after = applied.elapsed();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(status.code(), Some(3), "{out}");
    assert!(
        out.contains("ok 5"),
        "the connection worked before the policy: {out}"
    );
    assert!(
        closed_after < Duration::from_secs(5),
        "closed {closed_after:?} after the DENY was applied"
    );
    // And new connections are refused too.
    assert!(get(&mesh, "mesh/client-a", &url).is_err());
    assert!(get(&mesh, "mesh/client-b", &url).is_ok());
}

#[test]
fn passthrough_reserved_ports_and_hostile_connections() {
    let (mesh, ips, _) = up("edge");
    // A destination outside the mesh (a server in node2's own netns) is reached by passthrough,
    // and so is a pod that is not in the mesh.
    let node2_ip = find(&ips.st["nodes"], |n| n["name"] == "node2").unwrap()["ip"]
        .as_str()
        .unwrap()
        .to_string();
    let mut outside = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}.node.node2", mesh.name),
            "python3",
            "-m",
            "http.server",
            "18080",
            "--bind",
            &node2_ip,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let reached = loop {
        match get(&mesh, "mesh/client-a", &format!("http://{node2_ip}:18080/")) {
            Ok(body) => break body,
            Err(e) if Instant::now() > deadline => panic!("passthrough failed: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let _ = outside.kill();
    let _ = outside.wait();
    assert!(reached.contains("Directory listing"), "{reached}");
    let plain = get(
        &mesh,
        "mesh/client-a",
        &format!("http://{}:8080/", ips.of("plainserver")),
    )
    .unwrap();
    assert_eq!(
        plain.trim(),
        format!("plainserver saw {} on 8080", ips.of("client-a"))
    );

    // From outside the pod: 15001 and 15006 are not a way in, plaintext to 15008 is not HBONE.
    let server = ips.of("server2");
    for port in [15001, 15006] {
        let r = get(&mesh, "plain/outsider", &format!("http://{server}:{port}/"));
        assert!(r.is_err(), "port {port} answered: {r:?}");
    }
    let r = get(&mesh, "plain/outsider", &format!("http://{server}:15008/"));
    assert!(r.is_err(), "plaintext HTTP to 15008 answered: {r:?}");
    // In the pod, the app cannot use the tunnel's loopback ports either.
    let r = get(&mesh, "mesh/client-a", "http://127.0.0.1:15001/");
    assert!(r.is_err(), "loopback 15001 answered: {r:?}");
    // Nothing crashed: traffic still flows and the tunnels never restarted.
    let body = get(&mesh, "mesh/client-a", &format!("http://{server}:8080/")).unwrap();
    assert!(body.starts_with("server2 saw"), "{body}");
    let st = mesh.status();
    for c in st["components"].as_array().unwrap() {
        assert_eq!(c["healthy"], true, "{c:#}");
    }
}

/// Pids of the processes named `comm` in `netns`.
fn pids_in(netns: &str, comm: &str) -> Vec<i32> {
    let out = Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|pid: &i32| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

/// A keep-alive HTTP client making `n` requests 100 ms apart; exit 3 when the connection breaks.
fn keepalive_script(ip: &str, n: u32) -> String {
    format!(
        "import http.client,time,sys\nc=http.client.HTTPConnection('{ip}',8080,timeout=5)\nfor i in range({n}):\n    try:\n        c.request('GET','/'); r=c.getresponse(); r.read()\n    except Exception as e:\n        print('closed after',i,type(e).__name__,flush=True); sys.exit(3)\n    time.sleep(0.1)\nprint('done',flush=True)\n"
    )
}

#[test]
fn restarting_a_ztunnel_replays_its_pods_and_leaves_other_nodes_alone() {
    let (mesh, ips, _) = up("restart");
    let node1 = format!("{}.node.node1", mesh.name);
    let old = pids_in(&node1, "ztunnel");
    assert_eq!(old.len(), 1, "one ztunnel on node1: {old:?}");
    // A connection between two pods of node2 stays up while node1's tunnel restarts.
    let mut other = Command::new(tests::meshctl_bin())
        .args([
            "--mesh",
            &mesh.name,
            "exec",
            "mesh/client-c",
            "--",
            "python3",
            "-c",
            &keepalive_script(&ips.of("server2"), 60),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    // SIGTERM: the tunnel drains and exits; the supervisor starts a new one, which connects to
    // the node agent and gets every pod of node1 replayed.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old[0]),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = format!("http://{}:8080/", ips.of("server2"));
    let body = loop {
        let new = pids_in(&node1, "ztunnel");
        if new.len() == 1
            && new != old
            && let Ok(b) = get(&mesh, "mesh/client-a", &url)
        {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "node1's ztunnel did not come back (pids {new:?})"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        body.trim(),
        format!("server2 saw {} on 8080", ips.of("client-a"))
    );
    let dump: Value = serde_json::from_str(&node_get(
        &mesh,
        "node1",
        "http://127.0.0.1:15000/config_dump",
    ))
    .unwrap();
    assert_eq!(
        dump["workloadState"].as_object().unwrap().len(),
        3,
        "all node1 pods replayed: {:#}",
        dump["workloadState"]
    );
    let status = other.wait().unwrap();
    let mut out = String::new();
    other
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        status.success() && out.contains("done"),
        "node2's connection was disturbed: {out}"
    );
}

/// `/debug/adsz` of the mesh's control plane (its admin address from `meshctl status`).
fn adsz(mesh: &TestMesh) -> Value {
    let status = mesh.status();
    let cp = find(&status["components"], |c| c["kind"] == "control-plane")
        .expect("control plane listed in status");
    let admin = cp["adminAddress"].as_str().unwrap();
    let out = Command::new("curl")
        .args(["-s", "-m", "3", &format!("http://{admin}/debug/adsz")])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Node-tunnel delta streams in an adsz dump: node id → per-type state.
fn ztunnel_streams(dump: &Value) -> Vec<(String, Value)> {
    dump["clients"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|c| {
            c["node_id"]
                .as_str()
                .is_some_and(|n| n.starts_with("ztunnel~"))
        })
        .map(|c| {
            assert_eq!(c["stream"], "delta", "node tunnels use delta ADS: {c}");
            (
                c["node_id"].as_str().unwrap().to_owned(),
                c["types"].clone(),
            )
        })
        .collect()
}

const ADDRESS: &str = "type.googleapis.com/istio.workload.Address";
const AUTHZ: &str = "type.googleapis.com/istio.security.Authorization";

#[test]
fn node_tunnels_follow_the_control_plane_over_delta_ads_and_outlive_its_restart() {
    let (mesh, ips, _) = up("cprestart");
    // Both node tunnels hold a delta stream with both types ACKed.
    let streams = ztunnel_streams(&adsz(&mesh));
    assert_eq!(streams.len(), 2, "one stream per node: {streams:?}");
    for (node, types) in &streams {
        for t in [ADDRESS, AUTHZ] {
            assert!(
                types[t]["last_acked_version"].is_string() && types[t]["wildcard"] == true,
                "{node} {t}: {}",
                types[t]
            );
        }
        assert!(types[ADDRESS]["resources"].as_u64().unwrap() > 5, "{types}");
    }
    // Kill the control plane: traffic keeps flowing on what the tunnels hold (configuration and
    // certificates, which a first request has made them fetch).
    let url = format!("http://{}:8080/", ips.of("server2"));
    get(&mesh, "mesh/client-a", &url).expect("traffic before the restart");
    let marker = format!("{}/control-plane/manifests", mesh.name);
    let old = tests::processes_with(&marker);
    assert_eq!(old.len(), 1, "one control plane: {old:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for _ in 0..3 {
        let body =
            get(&mesh, "mesh/client-a", &url).expect("traffic while the control plane is down");
        assert_eq!(
            body.trim(),
            format!("server2 saw {} on 8080", ips.of("client-a"))
        );
    }
    // The supervisor brings it back; the tunnels reconnect carrying what they hold.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = tests::processes_with(&marker);
        let streams = if now.len() == 1 && now != old {
            ztunnel_streams(&adsz(&mesh))
        } else {
            vec![]
        };
        let resumed = streams.len() == 2
            && streams.iter().all(|(_, t)| {
                t[ADDRESS]["initial_resource_versions"]
                    .as_u64()
                    .unwrap_or(0)
                    > 5
                    && t[ADDRESS]["last_acked_version"].is_string()
                    && t[AUTHZ]["last_acked_version"].is_string()
            });
        if resumed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tunnels did not resume with initial_resource_versions: pids {now:?}, {streams:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // And changes flow again over the new streams: a DENY for client-a reaches node2.
    policy(
        &mesh,
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-a, namespace: mesh}
spec:
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/mesh/sa/client-a"]}}]}]
"#,
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(&mesh, "mesh/client-a", &url).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the DENY never took effect after the restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A manifest the control plane cannot translate is refused by `meshctl apply`, naming the
    // object and the field, and nothing changes.
    let bad = mesh.manifest(
        "bad-route.yaml",
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: server, port: 8080}]
  rules: [{backendRefs: [{name: server, port: 8080, weight: -1}]}]
"#,
    );
    let out = mesh.meshctl(&["apply", "-f", tests::path_str(&bad)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad route was accepted");
    assert!(
        err.contains("HTTPRoute mesh/broken") && err.contains("weight"),
        "the error names the object and field: {err}"
    );
    let status = mesh.status();
    let cp = find(&status["components"], |c| c["kind"] == "control-plane").unwrap();
    assert_eq!(
        cp["healthy"], true,
        "the control plane still serves the last good config: {cp}"
    );
}
