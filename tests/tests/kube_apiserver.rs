//! The test Kubernetes API server (`scripts/kube.sh`, `tests::kube::ApiServer`) is a real one: core objects,
//! Gateway API and Istio custom resources, the pod status subresource, TokenRequest with pod-bound tokens,
//! TokenReview, RBAC enforced for ServiceAccount tokens, and `down` stopping everything it started.
//!
//! No root needed. Needs `scripts/kube.sh build` to have run (`scripts/test.sh` does).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::Value;
use tests::kube::ApiServer;

const NS: &str = "shop";
const SA: &str = "web";

/// A namespace, its ServiceAccount, a pod (image only: nothing runs it) on no node and one on node `node-a`, a
/// Service, a GAMMA HTTPRoute and an Istio AuthorizationPolicy.
const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: Node
metadata: {name: node-a}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec:
  serviceAccountName: web
  containers: [{name: web, image: example.com/web:1, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: shop, labels: {app: web}}
spec:
  serviceAccountName: web
  nodeName: node-a
  containers: [{name: web, image: example.com/web:1, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: web, port: 80}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/web"]}}]}]
"#;

/// Lets ServiceAccount shop/web list pods in its namespace.
const POD_READER: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: shop}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: web-reads-pods, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{kind: ServiceAccount, name: web, namespace: shop}]
"#;

fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

fn env_var(api: &ApiServer, key: &str) -> String {
    let env = std::fs::read_to_string(api.dir().join("env")).unwrap();
    env.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key} not in env:\n{env}"))
        .to_string()
}

/// Reviews `token` for audience istio-ca and checks the identity it carries; returns `user.extra`.
fn review(api: &ApiServer, token: &str, pod: &Value) -> Value {
    let status = api.token_review(token, &["istio-ca"]).unwrap();
    assert_eq!(status["authenticated"], true, "{status:#}");
    assert_eq!(
        status["user"]["username"],
        format!("system:serviceaccount:{NS}:{SA}"),
        "{status:#}"
    );
    assert_eq!(
        status["audiences"],
        serde_json::json!(["istio-ca"]),
        "{status:#}"
    );
    let extra = status["user"]["extra"].clone();
    let name = &pod["metadata"]["name"];
    assert_eq!(
        extra["authentication.kubernetes.io/pod-name"][0], *name,
        "{status:#}"
    );
    assert_eq!(
        extra["authentication.kubernetes.io/pod-uid"][0], pod["metadata"]["uid"],
        "{status:#}"
    );
    let jti = extra["authentication.kubernetes.io/credential-id"][0]
        .as_str()
        .unwrap();
    assert!(jti.starts_with("JTI="), "{status:#}");
    let keys: Vec<&String> = extra.as_object().unwrap().keys().collect();
    eprintln!("TokenReview user.extra keys for pod {name}: {keys:?}");
    extra
}

#[test]
fn real_apiserver_serves_objects_crds_tokens_and_rbac() {
    let mut api = ApiServer::start("kube_apiserver").unwrap();
    let check = |what: &str, ok: bool| assert!(ok, "{what}\n{}", api.log_tails());

    // Objects of every kind the mesh reads, the CRD kinds among them.
    api.apply(MANIFESTS).unwrap();
    api.set_pod_status(NS, "web-1", "10.1.0.5", true).unwrap();
    api.set_pod_status(NS, "web-2", "10.1.0.6", false).unwrap();

    let pod = api.get_json(&["pod", "web-1", "-n", NS]).unwrap();
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["podIP"], "10.1.0.5");
    assert_eq!(pod["status"]["podIPs"][0]["ip"], "10.1.0.5");
    let ready = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True", "{pod:#}");
    // The ServiceAccount admission plugin is on: it mounted the projected token volume.
    assert_eq!(pod["spec"]["serviceAccountName"], SA);
    check(
        "no projected token volume",
        pod["spec"]["volumes"][0]["projected"].is_object(),
    );

    let svc = api.get_json(&["service", "web", "-n", NS]).unwrap();
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert!(cluster_ip.starts_with("10.96."), "{svc:#}");

    let route = api.get_json(&["httproute", "web", "-n", NS]).unwrap();
    assert_eq!(route["spec"]["parentRefs"][0]["kind"], "Service");
    assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["name"], "web");
    let policy = api
        .get_json(&["authorizationpolicy", "web", "-n", NS])
        .unwrap();
    assert_eq!(policy["spec"]["action"], "ALLOW");
    assert_eq!(
        policy["spec"]["rules"][0]["from"][0]["source"]["principals"][0],
        "cluster.local/ns/shop/sa/web"
    );

    // A pod-bound token for istio-ca, reviewed; with the pod on a node, the node is in the review too.
    let token = api.create_token(NS, SA, "istio-ca", Some("web-1")).unwrap();
    let extra = review(&api, &token, &pod);
    check(
        "node-name for a pod on no node",
        extra
            .get("authentication.kubernetes.io/node-name")
            .is_none(),
    );
    let pod2 = api.get_json(&["pod", "web-2", "-n", NS]).unwrap();
    let token2 = api.create_token(NS, SA, "istio-ca", Some("web-2")).unwrap();
    let extra2 = review(&api, &token2, &pod2);
    assert_eq!(
        extra2["authentication.kubernetes.io/node-name"][0],
        "node-a"
    );
    let node = api.get_json(&["node", "node-a"]).unwrap();
    assert_eq!(
        extra2["authentication.kubernetes.io/node-uid"][0], node["metadata"]["uid"],
        "{extra2:#}"
    );
    // A token for another audience is not accepted for istio-ca.
    let other = api.create_token(NS, SA, "someone-else", None).unwrap();
    let status = api.token_review(&other, &["istio-ca"]).unwrap();
    assert_ne!(status["authenticated"], true, "{status:#}");

    // RBAC is enforced for the ServiceAccount: forbidden until a RoleBinding allows it.
    let as_sa = api.token_kubeconfig("web", &token).unwrap();
    let err = api
        .kubectl_as(&as_sa, &["get", "pods", "-n", NS])
        .unwrap_err();
    assert!(format!("{err:#}").contains("forbidden"), "{err:#}");
    api.apply(POD_READER).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let pods = loop {
        match api.kubectl_as(&as_sa, &["get", "pods", "-n", NS, "-o", "name"]) {
            Ok(out) => break out,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet allowed: {e:#}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("the RoleBinding never took effect: {e:#}"),
        }
    };
    assert!(pods.contains("pod/web-1"), "{pods}");
    let err = api
        .kubectl_as(&as_sa, &["get", "services", "-n", NS])
        .unwrap_err();
    assert!(format!("{err:#}").contains("forbidden"), "{err:#}");

    // `down` stops exactly what `up` started and removes the directory.
    let pids = [
        env_var(&api, "KUBE_APISERVER_PID"),
        env_var(&api, "ETCD_PID"),
    ];
    let dir = api.dir().to_path_buf();
    api.stop().unwrap();
    assert!(!dir.exists(), "{} still exists", dir.display());
    for pid in pids {
        assert!(!alive(&pid), "process {pid} still runs after down");
    }
}
