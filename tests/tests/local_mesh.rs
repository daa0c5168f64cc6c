//! End-to-end: the local mesh itself (nodes, pods, Services, the CLI), with real namespaces, the real CNI
//! plugins, real processes and real traffic.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use tests::{
    TestMesh, echo_container, find, must, netns_with_prefix, path_str, processes_with, root_links,
};

fn four_pods(marker: &str) -> String {
    let server = |name: &str, node: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: e2e, labels: {{app: server}}}}\nspec:\n  nodeName: {node}\n  containers:{}\n",
            echo_container(marker)
        )
    };
    let client = |name: &str, node: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: e2e}}\nspec:\n  nodeName: {node}\n  containers: [{{name: main, command: [sleep, infinity]}}]\n"
        )
    };
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: e2e}}\n{}{}{}{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: server, namespace: e2e}}\nspec:\n  selector: {{app: server}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n",
        server("server1", "node1"),
        server("server2", "node2"),
        client("client1", "node1"),
        client("client2", "node2"),
    )
}

#[test]
fn pods_reach_pods_and_services_within_and_across_nodes_and_down_leaves_nothing() {
    let links_before = root_links().unwrap();
    let mut mesh = TestMesh::new("traffic");
    let marker = format!("marker-{}", mesh.name);
    mesh.up(&four_pods(&marker), 2);
    let st = mesh.status();
    assert_eq!(st["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(st["pods"].as_array().unwrap().len(), 4);
    let ip = |name: &str| {
        find(&st["pods"], |p| p["name"] == name).unwrap()["ip"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let svc = find(&st["services"], |s| s["name"] == "server").unwrap();
    let vip = svc["clusterIP"].as_str().unwrap().to_string();
    assert_eq!(svc["endpoints"].as_array().unwrap().len(), 2, "{svc:#}");

    for client in ["client1", "client2"] {
        let target = format!("e2e/{client}");
        // Pod → pod by IP, same node and across nodes; the server sees the client's own address.
        for server in ["server1", "server2"] {
            let body = mesh
                .http_get(&target, &format!("http://{}:8080/", ip(server)))
                .unwrap();
            assert_eq!(body.trim(), format!("{server} saw {}", ip(client)));
        }
        // Pod → Service address: both endpoints answer (one per node), always seeing the client's address.
        let mut answered = BTreeSet::new();
        for _ in 0..40 {
            let body = mesh.http_get(&target, &format!("http://{vip}/")).unwrap();
            let mut words = body.split_whitespace();
            answered.insert(words.next().unwrap().to_string());
            assert_eq!(words.nth(1), Some(ip(client).as_str()), "{body}");
            if answered.len() == 2 {
                break;
            }
        }
        assert_eq!(
            answered.len(),
            2,
            "{client} reached only {answered:?} through {vip}"
        );
    }
    // A pod reaching itself through its own Service (hairpin) works too.
    for _ in 0..10 {
        mesh.http_get("e2e/server1", &format!("http://{vip}/"))
            .unwrap();
    }

    let prefix = format!("{}.", mesh.name);
    assert_eq!(
        netns_with_prefix(&prefix).len(),
        1 + 2 + 4,
        "underlay, 2 nodes, 4 pods"
    );
    assert_eq!(
        processes_with(&marker).len(),
        2,
        "one server process per server pod"
    );
    must(&mesh.down(), "meshctl down");
    assert!(
        netns_with_prefix(&prefix).is_empty(),
        "namespaces left: {:?}",
        netns_with_prefix(&prefix)
    );
    assert!(
        processes_with(&marker).is_empty(),
        "server processes left behind"
    );
    assert_eq!(
        root_links().unwrap(),
        links_before,
        "the root namespace's links changed"
    );
    assert!(
        !std::path::Path::new("/run/meshctl")
            .join(&mesh.name)
            .exists(),
        "state left behind"
    );
}

#[test]
fn exec_passes_stdio_and_exit_code_and_reaches_nodes() {
    let mesh = TestMesh::new("exec");
    mesh.up(&four_pods("exec-marker-unused"), 2);
    let out = mesh.exec(
        "e2e/client1",
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 5"],
    );
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-stdout\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    let node = must(
        &mesh.exec("node/node2", &["ip", "-4", "-o", "addr", "show", "eth0"]),
        "exec node",
    );
    let node_ip = find(&mesh.status()["nodes"], |n| n["name"] == "node2").unwrap()["ip"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(node.contains(&format!("{node_ip}/")), "{node}");
    let pod_ip = mesh.pod("e2e", "client2")["ip"]
        .as_str()
        .unwrap()
        .to_string();
    let addrs = must(
        &mesh.exec("e2e/client2", &["ip", "-4", "-o", "addr", "show", "eth0"]),
        "exec pod",
    );
    assert!(addrs.contains(&format!("{pod_ip}/")), "{addrs}");
    let missing = mesh.exec("e2e/nobody", &["true"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no pod \"e2e/nobody\""));
    // A second `up` of the same mesh fails clearly and leaves the running mesh alone.
    let again = mesh.meshctl(&[
        "up",
        "-f",
        path_str(&mesh.manifest("again.yaml", &four_pods("x"))),
        "--nodes",
        "2",
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is already up"));
    assert_eq!(mesh.status()["pods"].as_array().unwrap().len(), 4);
}

#[test]
fn bad_manifests_name_object_and_field_and_create_nothing() {
    let pod = |name: &str, extra: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}}}}}\nspec:\n  {extra}\n  containers: [{{name: main, command: [sleep, infinity]}}]\n"
        )
    };
    let tiny_cluster = "apiVersion: meshctl.dev/v1alpha1\nkind: Cluster\nmetadata: {name: tiny}\nspec: {nodeCIDRMaskSize: 30}\n";
    let cases: Vec<(String, &str)> = vec![
        ("apiVersion: v1\nkind: Gizmo\nmetadata: {name: g}\n".into(), "Gizmo default/g: kind: unknown kind"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: main}]}\n".into(), "Pod default/p: spec.containers[0].command: must name a program"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: main, command: [x], ports: [{containerPort: web}]}]}\n".into(), "Pod default/p: spec.containers[0].ports[0].containerPort: invalid type"),
        (format!("{}{}", pod("p", ""), pod("p", "")), "Pod default/p: metadata.name: duplicate"),
        (format!("{tiny_cluster}{}{}{}", pod("a", ""), pod("b", ""), pod("c", "")), "spec.nodeName: pod CIDR 10.244.0.0/16 is exhausted"),
        (format!("{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {{selector: {{app: nobody}}, ports: [{{port: 80}}]}}\n", pod("p", "")), "Service default/s: spec.selector: selects no pods"),
    ];
    for (i, (yaml, expected)) in cases.iter().enumerate() {
        let mesh = TestMesh::new("badmanifest");
        let path = mesh.manifest(&format!("bad{i}.yaml"), yaml);
        let out = mesh.meshctl(&["up", "-f", path_str(&path)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} was accepted");
        assert!(stderr.contains(expected), "case {i}: {stderr}");
        assert!(
            stderr.contains(&format!("bad{i}.yaml (document ")),
            "case {i} does not name the file: {stderr}"
        );
        assert!(
            netns_with_prefix(&format!("{}.", mesh.name)).is_empty(),
            "case {i} created namespaces"
        );
        assert!(
            !std::path::Path::new("/run/meshctl")
                .join(&mesh.name)
                .exists(),
            "case {i} left state"
        );
    }
}

#[test]
fn apply_changes_a_running_mesh_and_rejects_bad_input_without_harm() {
    let mesh = TestMesh::new("apply");
    let deployment = |replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: default}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:{}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}\n",
            echo_container("apply-marker")
        )
    };
    mesh.up(&deployment(1), 2);
    let vip = mesh.status()["services"][0]["clusterIP"].clone();
    let path = mesh.manifest("scale.yaml", &deployment(3));
    let out = must(&mesh.meshctl(&["apply", "-f", path_str(&path)]), "apply");
    assert_eq!(out.matches("created").count(), 2, "{out}");
    let st = mesh.status();
    assert_eq!(st["pods"].as_array().unwrap().len(), 3);
    assert_eq!(st["services"][0]["endpoints"].as_array().unwrap().len(), 3);
    assert_eq!(
        st["services"][0]["clusterIP"], vip,
        "a Service keeps its address across apply"
    );
    // New pods answer through the Service from the node's namespace too.
    let client = "apiVersion: v1\nkind: Pod\nmetadata: {name: c}\nspec: {containers: [{name: main, command: [sleep, infinity]}]}\n";
    must(
        &mesh.meshctl(&[
            "apply",
            "-f",
            path_str(&mesh.manifest("client.yaml", client)),
        ]),
        "apply client",
    );
    let mut seen = BTreeSet::new();
    for _ in 0..60 {
        let body = mesh
            .http_get("default/c", &format!("http://{}/", vip.as_str().unwrap()))
            .unwrap();
        seen.insert(body.split_whitespace().next().unwrap().to_string());
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    // A bad manifest is refused and changes nothing.
    let bad = mesh.manifest("bad.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selector: {app: ghost}, ports: [{port: 1}]}\n");
    let out = mesh.meshctl(&["apply", "-f", path_str(&bad)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Service default/x: spec.selector: selects no pods")
    );
    assert_eq!(mesh.status()["pods"].as_array().unwrap().len(), 4);
    assert_eq!(mesh.status()["services"].as_array().unwrap().len(), 1);
}

#[test]
fn an_exited_pod_shows_as_failed_with_its_exit_code() {
    let mesh = TestMesh::new("exited");
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: quitter}\nspec:\n  restartPolicy: Never\n  containers: [{name: main, command: [sh, -c, 'echo bye; exit 3']}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: crasher}\nspec:\n  containers: [{name: main, command: [sh, -c, 'exit 4']}]\n";
    mesh.up(yaml, 1);
    let st = mesh.wait_status(
        "the quitter to fail and the crasher to restart",
        Duration::from_secs(20),
        |st| {
            let q = find(&st["pods"], |p| p["name"] == "quitter").unwrap();
            let c = find(&st["pods"], |p| p["name"] == "crasher").unwrap();
            q["phase"] == "Failed" && c["containers"][0]["restartCount"].as_u64().unwrap_or(0) >= 1
        },
    );
    let q = find(&st["pods"], |p| p["name"] == "quitter").unwrap();
    assert_eq!(q["containers"][0]["state"], "terminated");
    assert_eq!(q["containers"][0]["exitCode"], 3);
    assert_eq!(q["ready"], false);
    let c = find(&st["pods"], |p| p["name"] == "crasher").unwrap();
    assert_eq!(c["containers"][0]["lastExitCode"], 4);
    let table = must(&mesh.meshctl(&["status"]), "status");
    assert!(
        table
            .lines()
            .any(|l| l.contains("default/quitter") && l.contains("Failed (exit 3)")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("default/crasher") && l.contains("exit 4")),
        "{table}"
    );
}

#[test]
fn demo_runs_the_quickstart_end_to_end() {
    let mesh = TestMesh::new("demo");
    let quickstart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let out = mesh.meshctl(&["demo", "-f", path_str(&quickstart)]);
    let stdout = must(&out, "meshctl demo");
    assert!(stdout.contains("result: all went right"), "{stdout}");
    assert!(stdout.contains("20/20 answered"), "{stdout}");
    assert!(netns_with_prefix(&format!("{}.", mesh.name)).is_empty());
}
