//! The agent against a real kube-apiserver (`scripts/kube.sh`, through the tests crate's `ApiServer`): pods of its
//! node and namespaces are watched, a running pod is found by its IP and enrolled, a pod's CNI ADD is served from
//! the watched store, the redirection annotation follows, and both un-enrollments (pod opt-out, namespace label
//! removed) take it away again. The agent authenticates as a ServiceAccount holding exactly the RBAC that
//! `cni_plugin::k8s` documents.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::apiserver::ApiServer;
use super::fake_ztunnel::{Event, FakeZtunnel, netns_ino};
use super::harness::{self, AgentProc, Attachment, Netns, Node};
use super::{adds_of, assert_clean, assert_no_rules, assert_rules_present};

/// Watch events, a netns scan and a patch round trip: generous for a loaded 2-core machine.
const T: Duration = Duration::from_secs(20);

/// The ClusterRole of the `cni_plugin::k8s` module doc, and a ServiceAccount bound to it.
const RBAC: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: cni-agent, namespace: istio-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cni-agent}
rules:
- apiGroups: [""]
  resources: [pods, namespaces]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [pods/status]
  verbs: [patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: cni-agent}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cni-agent}
subjects:
- {kind: ServiceAccount, name: cni-agent, namespace: istio-system}
"#;

fn pod_yaml(ns: &str, name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: {ns}}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}\n\
         spec:\n  nodeName: {node}\n  serviceAccountName: {name}\n  automountServiceAccountToken: false\n\
         \x20 containers: [{{name: app, image: registry.invalid/app:1}}]\n"
    )
}

fn annotation(api: &ApiServer, ns: &str, name: &str) -> Option<String> {
    let pod = api.get_json(&["pod", name, "-n", ns]).unwrap();
    pod["metadata"]["annotations"]["ambient.istio.io/redirection"]
        .as_str()
        .map(str::to_string)
}

fn uid(api: &ApiServer, ns: &str, name: &str) -> String {
    let pod: Value = api.get_json(&["pod", name, "-n", ns]).unwrap();
    pod["metadata"]["uid"].as_str().unwrap().to_string()
}

/// Polls (every 100 ms, kubectl is slow) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < T,
            "timed out after {T:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A pod netns with one address unique to this test process (10.253.x.y/32, on `lo`: this kernel may lack the
/// dummy link type): other tests' pod netns (bridge + host-local) use 10.250.1.0/24 and would make the agent's IP
/// match ambiguous.
fn netns_with_unique_ip(tag: &str) -> (Netns, String) {
    let ns = Netns::new(tag);
    let pid = std::process::id();
    let ip = format!("10.253.{}.{}", (pid >> 8) & 0xff, pid & 0xff);
    ns.exec_ok("ip", &["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
    (ns, ip)
}

fn agent_kubeconfig(api: &ApiServer) -> std::path::PathBuf {
    api.apply(RBAC).unwrap();
    let token = api
        .create_token(
            "istio-system",
            "cni-agent",
            "https://kubernetes.default.svc.cluster.local",
            None,
        )
        .unwrap();
    api.token_kubeconfig("cni-agent", &token).unwrap()
}

#[test]
fn enrolls_from_the_api_server_and_writes_the_redirection_annotation() {
    let node = Node::new();
    let api = ApiServer::start("cni_agent_kube").unwrap_or_else(|e| panic!("{e:#}"));
    let ns = harness::unique("ambient");
    api.kubectl(&["create", "namespace", &ns]).unwrap();
    api.kubectl(&["label", "namespace", &ns, "istio.io/dataplane-mode=ambient"])
        .unwrap();
    let kubeconfig = agent_kubeconfig(&api);
    let mut agent = AgentProc::start_kube(&node, Path::new(&kubeconfig), &[]);
    let zt = FakeZtunnel::connect(&node.zds_socket(), false);

    // 1. A running pod: created through the API with its status IP set to a real netns's address, never seen
    //    by CNI ADD. The agent finds the netns by that IP, enrolls the pod and annotates it.
    let (late_ns, late_ip) = netns_with_unique_ip("late");
    api.apply(&pod_yaml(&ns, "late", &node.name)).unwrap();
    // A pod of another node in the same namespace is never touched.
    api.apply(&pod_yaml(&ns, "elsewhere", "node2")).unwrap();
    api.set_pod_status(&ns, "late", &late_ip, true).unwrap();
    let late_uid = uid(&api, &ns, "late");
    let late_add = Event::Add {
        uid: late_uid.clone(),
        pod: format!("{ns}/late"),
        netns_ino: netns_ino(&late_ns.path()),
    };
    zt.wait("ZDS add of the running pod", T, |e| e.contains(&late_add));
    assert_rules_present(&late_ns);
    assert!(
        agent
            .log_text()
            .contains("found the netns of a running pod"),
        "the netns finder must have found the pod"
    );
    eventually("the late pod's annotation", || {
        annotation(&api, &ns, "late").as_deref() == Some("enabled")
    });
    assert_eq!(
        node.pods_json()[format!("{ns}/late")]["redirection"],
        "enabled"
    );

    // 2. CNI ADD of a pod the API knows: the plugin forwards it (no pod dir in the conf entry), the agent looks
    //    the pod up in its watched store and enrolls it with the ADD's netns.
    assert!(node.primary_conf()["plugins"][1].get("pod_dir").is_none());
    api.apply(&pod_yaml(&ns, "added", &node.name)).unwrap();
    let added_uid = uid(&api, &ns, "added");
    let added_ns = Netns::new("added");
    let mut att = Attachment::new(&added_ns, &ns, "added", &added_uid);
    node.chain().add(&mut att).unwrap();
    let added_add = Event::Add {
        uid: added_uid.clone(),
        pod: format!("{ns}/added"),
        netns_ino: netns_ino(&added_ns.path()),
    };
    assert!(zt.events().contains(&added_add), "{:?}", zt.events());
    assert_rules_present(&added_ns);
    eventually("the added pod's annotation", || {
        annotation(&api, &ns, "added").as_deref() == Some("enabled")
    });
    let events = zt.events();
    assert_clean(&events);
    assert_eq!(
        adds_of(&events),
        [format!("{ns}/late"), format!("{ns}/added")],
        "{events:?}"
    );

    // Agent restart: neither netns is in the API; both come back from pods.json and are replayed.
    agent.kill();
    zt.wait("the tunnel to see the agent go", T, |e| {
        e.contains(&Event::Closed)
    });
    let agent = AgentProc::start_kube(&node, Path::new(&kubeconfig), &[]);
    let zt = FakeZtunnel::connect(&node.zds_socket(), false);
    let replay = zt.wait("the replay after the restart", T, |e| {
        e.contains(&Event::Snapshot)
    });
    assert_clean(&replay);
    assert!(
        replay.contains(&late_add) && replay.contains(&added_add),
        "{replay:?}"
    );
    assert_rules_present(&late_ns);
    assert_eq!(annotation(&api, &ns, "late").as_deref(), Some("enabled"));

    // 3. The pod opts out (istio.io/dataplane-mode=none): un-enrolled, annotation removed.
    api.kubectl(&[
        "label",
        "pod",
        "added",
        "-n",
        &ns,
        "istio.io/dataplane-mode=none",
    ])
    .unwrap();
    let del_added = Event::Del {
        uid: added_uid.clone(),
    };
    zt.wait("ZDS del of the opted-out pod", T, |e| {
        e.contains(&del_added)
    });
    assert_no_rules(&added_ns);
    eventually("the opted-out pod's annotation to go", || {
        annotation(&api, &ns, "added").is_none()
    });

    // 4. The namespace label goes: the running pod is un-enrolled and its annotation removed.
    api.kubectl(&["label", "namespace", &ns, "istio.io/dataplane-mode-"])
        .unwrap();
    let del_late = Event::Del { uid: late_uid };
    zt.wait("ZDS del after the namespace label went", T, |e| {
        e.contains(&del_late)
    });
    assert_no_rules(&late_ns);
    eventually("the late pod's annotation to go", || {
        annotation(&api, &ns, "late").is_none()
    });
    harness::wait_for("pods.json to be empty", T, || {
        node.pods_json()
            .as_object()
            .is_some_and(|o| o.is_empty())
            .then_some(())
    });
    assert!(annotation(&api, &ns, "elsewhere").is_none());
    assert_clean(&zt.events());
    node.chain().del(&att).unwrap();
    drop(agent);
}
