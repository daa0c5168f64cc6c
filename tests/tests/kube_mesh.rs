//! End-to-end on a real Kubernetes API server: the local mesh runs as the nodes and kubelets of a real
//! `kube-apiserver` (`meshctl up --kubeconfig`), the control plane reads the cluster from that API server
//! (`control-plane serve --kubeconfig`), and objects written with `kubectl` — not through meshctl — configure
//! the node tunnels: image-only Pods, AuthorizationPolicies, and a policy we cannot translate, which is
//! reported on the object while the rest keeps applying.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::kube::ApiServer;
use tests::{TestMesh, echo_container, find, must};

const SLEEP: &str = "\n        - {name: main, command: [sleep, infinity]}\n";

fn pod(name: &str, node: &str, sa: &str, app: &str, containers: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: mesh, labels: {{app: {app}}}}}\nspec:\n  nodeName: {node}\n  serviceAccountName: {sa}\n  containers:{containers}\n"
    )
}

/// Ambient namespace `mesh`: a server on each node behind Service `server`, clients `a` and `b` on node1 with
/// their own service accounts.
fn topology(marker: &str) -> String {
    let mut y = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: mesh, labels: {istio.io/dataplane-mode: ambient}}\n",
    );
    for sa in ["server", "client-a", "client-b", "web"] {
        y += &format!(
            "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: mesh}}\n"
        );
    }
    let server = echo_container(marker);
    y += &pod("server1", "node1", "server", "server", &server);
    y += &pod("server2", "node2", "server", "server", &server);
    y += &pod("client-a", "node1", "client-a", "a", SLEEP);
    y += &pod("client-b", "node1", "client-b", "b", SLEEP);
    y += "---\napiVersion: v1\nkind: Service\nmetadata: {name: server, namespace: mesh}\nspec:\n  selector: {app: server}\n  ports: [{port: 80, targetPort: 8080}]\n";
    y
}

fn config_dump(mesh: &TestMesh, node: &str) -> Value {
    let out = mesh.exec(
        &format!("node/{node}"),
        &[
            "curl",
            "-sS",
            "--max-time",
            "3",
            "localhost:15000/config_dump",
        ],
    );
    serde_json::from_str(&must(&out, "config_dump")).unwrap_or(Value::Null)
}

fn has_workload(dump: &Value, name: &str) -> bool {
    find(&dump["workloads"], |w| {
        w["name"] == name && w["namespace"] == "mesh"
    })
    .is_some()
}

fn has_policy(dump: &Value, name: &str) -> bool {
    find(&dump["policies"], |p| p["name"] == name).is_some()
}

/// Polls `f` every 50 ms until it holds; returns how long that took, or fails after `limit`.
fn within(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(mesh: &TestMesh, from: &str, url: &str) -> Result<String, String> {
    mesh.http_get(from, url).map_err(|e| e.to_string())
}

/// The control plane's admin address, from `meshctl status`.
fn control_plane_admin(mesh: &TestMesh) -> String {
    let status = mesh.status();
    let cp = find(&status["components"], |c| c["kind"] == "control-plane")
        .expect("control plane listed in status");
    cp["adminAddress"].as_str().unwrap().to_owned()
}

fn curl(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-m", "3", url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_control_plane_follows_objects_written_to_a_real_api_server() {
    tests::require_root();
    let api = ApiServer::start("kube_mesh").unwrap();
    let mut mesh = TestMesh::new("kubemesh");
    let marker = format!("marker-{}", mesh.name);
    let kubeconfig = api.kubeconfig().display().to_string();
    mesh.up_with(&topology(&marker), 2, &["--kubeconfig", &kubeconfig]);

    // The mesh's pods are in the API server, with the status a kubelet would write.
    let pods = api.get_json(&["pods", "-n", "mesh"]).unwrap();
    let server1 =
        find(&pods["items"], |p| p["metadata"]["name"] == "server1").expect("server1 in the API");
    assert_eq!(server1["spec"]["nodeName"], "node1");
    assert_eq!(server1["status"]["phase"], "Running");
    let vip = api.get_json(&["service", "server", "-n", "mesh"]).unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();

    // Traffic between the pods, over HBONE, configured from the API server.
    mesh.wait_status("pods enrolled", Duration::from_secs(15), |st| {
        st["pods"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["enrolled"] == true)
    });
    let url = format!("http://{vip}/");
    within(
        "client-a reaches the Service",
        Duration::from_secs(10),
        || get(&mesh, "mesh/client-a", &url).is_ok_and(|b| b.contains("saw")),
    );
    let metrics = must(
        &mesh.exec(
            "node/node1",
            &["curl", "-sS", "--max-time", "3", "localhost:15020/metrics"],
        ),
        "metrics",
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_tcp_connections_opened_total")
                && l.contains("source_principal=\"spiffe://cluster.local/ns/mesh/sa/client-a\"")
                && l.contains("connection_security_policy=\"mutual_tls\"")),
        "client-a's connections are mutual TLS: {metrics}"
    );

    // An image-only Pod written with kubectl (no command: the API server's shape), status set as a kubelet
    // would: both node tunnels know it within a second; deleted, it is gone within a second.
    api.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: mesh, labels: {app: web}}\nspec:\n  nodeName: node2\n  serviceAccountName: web\n  containers: [{name: web, image: nginx:1.27, ports: [{containerPort: 80}]}]\n",
    )
    .unwrap();
    api.set_pod_status("mesh", "web", "10.244.1.200", true)
        .unwrap();
    let took = within(
        "the image-only pod in node1's tunnel",
        Duration::from_secs(1),
        || has_workload(&config_dump(&mesh, "node1"), "web"),
    );
    eprintln!("kubectl apply → node1 config_dump: {took:?}");
    api.kubectl(&[
        "delete",
        "pod",
        "web",
        "-n",
        "mesh",
        "--grace-period=0",
        "--force",
    ])
    .unwrap();
    let took = within(
        "the deleted pod leaves node1's tunnel",
        Duration::from_secs(1),
        || !has_workload(&config_dump(&mesh, "node1"), "web"),
    );
    eprintln!("kubectl delete → gone from node1 config_dump: {took:?}");

    // A DENY written with kubectl holds within 2 s; other identities are unaffected; deleting it restores.
    api.apply(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-a, namespace: mesh}\nspec:\n  selector: {matchLabels: {app: server}}\n  action: DENY\n  rules: [{from: [{source: {principals: [cluster.local/ns/mesh/sa/client-a]}}]}]\n",
    )
    .unwrap();
    within(
        "the DENY reaches node1's tunnel",
        Duration::from_secs(1),
        || has_policy(&config_dump(&mesh, "node1"), "deny-a"),
    );
    within("client-a is denied", Duration::from_secs(2), || {
        get(&mesh, "mesh/client-a", &url).is_err()
    });
    get(&mesh, "mesh/client-b", &url).expect("client-b is not denied");

    // A policy the CRD schema accepts but the node tunnels cannot enforce (AUDIT) is rejected on its own:
    // an Event on the object, a metric, /debug/status; the DENY keeps applying.
    api.apply(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: audit, namespace: mesh}\nspec:\n  action: AUDIT\n  rules: [{to: [{operation: {ports: [\"8080\"]}}]}]\n",
    )
    .unwrap();
    let events = within(
        "a Warning Event on the rejected policy",
        Duration::from_secs(5),
        || {
            let ev = api
                .get_json(&[
                    "events",
                    "-n",
                    "mesh",
                    "--field-selector",
                    "involvedObject.name=audit",
                ])
                .unwrap_or(Value::Null);
            find(&ev["items"], |e| {
                e["type"] == "Warning"
                    && e["reason"] == "ConfigurationRejected"
                    && e["involvedObject"]["kind"] == "AuthorizationPolicy"
                    && e["message"].as_str().is_some_and(|m| m.contains("AUDIT"))
            })
            .is_some()
        },
    );
    eprintln!("rejection Event after {events:?}");
    let admin = control_plane_admin(&mesh);
    let metrics = curl(&format!("http://{admin}/metrics"));
    assert!(
        metrics.lines().any(
            |l| l.starts_with("control_plane_rejected_objects{kind=\"AuthorizationPolicy\"} 1")
        ),
        "rejected-objects gauge: {metrics}"
    );
    let status: Value =
        serde_json::from_str(&curl(&format!("http://{admin}/debug/status"))).unwrap();
    assert!(
        find(&status["rejected"], |r| r["object"]
            == "AuthorizationPolicy mesh/audit")
        .is_some(),
        "{status}"
    );
    assert!(status["error"].is_null(), "the rest applies: {status}");
    assert!(
        get(&mesh, "mesh/client-a", &url).is_err(),
        "the DENY still holds"
    );

    api.kubectl(&[
        "delete",
        "authorizationpolicy",
        "deny-a",
        "audit",
        "-n",
        "mesh",
    ])
    .unwrap();
    within("client-a is allowed again", Duration::from_secs(3), || {
        get(&mesh, "mesh/client-a", &url).is_ok()
    });

    let out = mesh.down();
    assert!(
        out.status.success(),
        "meshctl down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the mesh wrote is gone; the namespace stays (there is no namespace controller to finalize it).
    let pods = api.get_json(&["pods", "-n", "mesh"]).unwrap();
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(0), "{pods}");
}
