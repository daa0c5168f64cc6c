//! Our ztunnel configured by real istiod (`tests::istiod::Istiod`) on a real API server, as Istio's ztunnel chart
//! configures it: xDS and the CA over TLS on istiod's 15012 verified with istiod's root as
//! `istiod.istio-system.svc`, a service-account token of `istio-system/ztunnel` (audience `istio-ca`) bound to the
//! ztunnel's Pod on node `node-a`, the node id and metadata from `POD_NAME`/`POD_NAMESPACE`/`INSTANCE_IP`/
//! `NODE_NAME`/`ISTIO_META_CLUSTER_ID`.
//!
//! - istiod's workloads, services and authorization policies reach our `/config_dump`: pods of an ambient
//!   namespace that carry the node agent's `ambient.istio.io/redirection: enabled` are HBONE, others TCP;
//! - a pod of node-a handed over on ZDS (the node agent's own server) gets a certificate from istiod's CA, the
//!   ztunnel impersonating the pod's service account: it chains to istiod's root and names the pod's identity;
//! - istioctl (built beside istiod) reads our dump with `ztunnel-config … --file`: its workload, service, policy
//!   and certificate rows match the API objects and the certificate; `istioctl proxy-status --xds-address`
//!   (straight to istiod, no port-forward) shows our ztunnel with both types ACKed;
//! - istiod's incremental pushes remove a deleted pod and a deleted policy;
//! - two nodes, each with our ztunnel: a client pod on node-a reaches a web pod on node-b, directly and through
//!   its Service, over HBONE with istiod's certificates (the node agent's own in-pod redirect rules); an L4 DENY
//!   policy applied with kubectl stops it within 2 s and removing it restores it; traffic keeps flowing while
//!   istiod restarts and both ztunnels resync after; PeerAuthentication STRICT refuses a plaintext client;
//! - our node agent (cni-agent, the API server as its pod source) enrolls a running pod and writes
//!   `ambient.istio.io/redirection: enabled` back, upon which istiod serves the pod as HBONE.
//!
//! Each ztunnel runs as a process in the root network namespace (admin, stats and readiness on free 127.0.0.1
//! ports), so it reaches istiod on 127.0.0.1; the pods it is given are network namespaces of the test, joined by
//! veth pairs made inside them (nothing is added to the root namespace).
//!
//! Needs root (ZDS hands over network namespaces), `scripts/kube.sh build`, `scripts/istiod.sh build` and
//! `cargo build -p ztunnel -p cni-plugin`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::istiod::Istiod;
use tests::kube::ApiServer;
use tests::peers::{Proc, TempDir, free_port, http_get};
use tests::podman::{Netns, Zds};

const NODE: &str = "node-a";
const ZTUNNEL_POD: &str = "ztunnel-node-a";
/// `(pod, service account, ip, labels, redirection annotation)` of the ambient namespace `shop`, all on node-a.
const SHOP_PODS: [(&str, &str, &str, &str, bool); 3] = [
    ("web-0", "web", "10.244.0.10", "app: web", true),
    ("web-1", "web", "10.244.0.11", "app: web", true),
    ("client", "client", "10.244.0.12", "app: client", false),
];

/// A binary built beside this test (`cargo build -p <package>`).
fn debug_bin(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build -p {package}`",
        bin.display()
    );
    bin
}

/// Our ztunnel as a process, with its admin port for the config dump, and the node agent's ZDS server it
/// connects to.
struct Ztunnel {
    proc: Proc,
    /// The test's ZDS server, unless the ztunnel connects to a node agent's.
    zds: Option<Zds>,
    admin_port: u16,
    stats_port: u16,
    readiness_port: u16,
}

/// Everything a test of ztunnels under istiod shares: the API server, istiod and a directory.
struct Cluster {
    api: ApiServer,
    istiod: Istiod,
    dir: TempDir,
}

impl Cluster {
    /// The API server and istiod, with the `istio-system` service accounts a ztunnel DaemonSet and istioctl use.
    fn start(test: &str) -> Cluster {
        let api = ApiServer::start(test).unwrap();
        let istiod = Istiod::start(&api).unwrap_or_else(|e| panic!("{e:#}\n{}", api.log_tails()));
        // `default` is what istioctl asks a token for when it talks to istiod directly.
        for sa in ["ztunnel", "default"] {
            api.kubectl(&["create", "serviceaccount", sa, "-n", "istio-system"])
                .unwrap();
        }
        Cluster {
            api,
            istiod,
            dir: TempDir::new(test),
        }
    }

    /// A node with its ztunnel as the DaemonSet would run it: the Node (what a kubelet registers; istiod reads a
    /// pod's node for its locality and warns when it is missing), the ztunnel's Pod on it with a kubelet's status,
    /// a token of `istio-system/ztunnel` for `istio-ca` bound to that Pod, the node agent's ZDS server, and our
    /// ztunnel binary with the environment Istio's chart gives it.
    fn node(&self, node: &str, ztunnel_ip: &str) -> Ztunnel {
        self.node_with(node, ztunnel_ip, None)
    }

    /// [`Cluster::node`] with the ZDS socket of a node agent the test runs (`agent_uds`) instead of the test's
    /// own ZDS server.
    fn node_with(&self, node: &str, ztunnel_ip: &str, agent_uds: Option<&Path>) -> Ztunnel {
        let api = &self.api;
        let pod = format!("ztunnel-{node}");
        api.apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {node}, labels: {{kubernetes.io/hostname: {node}}}}}\n"
        ))
        .unwrap();
        api.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: istio-system, labels: {{app: ztunnel}}}}\n\
             spec: {{nodeName: {node}, serviceAccountName: ztunnel, containers: [{{name: istio-proxy, image: ztunnel:1}}]}}\n"
        ))
        .unwrap();
        api.set_pod_status("istio-system", &pod, ztunnel_ip, true)
            .unwrap();
        let token = api
            .create_token("istio-system", "ztunnel", "istio-ca", Some(&pod))
            .unwrap();
        let node_dir = self.dir.path().join(node);
        std::fs::create_dir_all(&node_dir).unwrap();
        let token_file = node_dir.join("istio-token");
        std::fs::write(&token_file, token).unwrap();
        let zds = agent_uds.is_none().then(|| Zds::serve(&node_dir).unwrap());
        let uds = agent_uds.map_or_else(|| zds.as_ref().unwrap().socket.clone(), Path::to_path_buf);

        let admin_port = free_port();
        let stats_port = free_port();
        let readiness_port = free_port();
        let root = self.istiod.root_cert_file();
        // Its log (stdout) goes to the stderr file the harness keeps, for failure messages.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exec \"$0\" proxy ztunnel >&2"])
            .arg(debug_bin("ztunnel", "ztunnel"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("XDS_ADDRESS", self.istiod.xds_tls_address())
            .env("CA_ADDRESS", self.istiod.xds_tls_address())
            .env("XDS_ROOT_CA", root)
            .env("CA_ROOT_CA", root)
            .env("ALT_XDS_HOSTNAME", "istiod.istio-system.svc")
            .env("ALT_CA_HOSTNAME", "istiod.istio-system.svc")
            .env("AUTH_TOKEN", &token_file)
            .env("POD_NAME", &pod)
            .env("POD_NAMESPACE", "istio-system")
            .env("NODE_NAME", node)
            .env("INSTANCE_IP", ztunnel_ip)
            .env("SERVICE_ACCOUNT", "ztunnel")
            .env("ISTIO_META_CLUSTER_ID", "Kubernetes")
            .env("INPOD_UDS", &uds)
            .env("ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
            .env("STATS_ADDR", format!("127.0.0.1:{stats_port}"))
            .env("READINESS_ADDR", format!("127.0.0.1:{readiness_port}"));
        let proc = Proc::spawn(&format!("ztunnel-{node}"), cmd, self.dir.path());
        Ztunnel {
            proc,
            zds,
            admin_port,
            stats_port,
            readiness_port,
        }
    }
}

impl Ztunnel {
    fn dump(&self) -> Option<Value> {
        let (code, body) =
            http_get(self.admin_port, "/config_dump", Duration::from_secs(5)).ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    fn ready(&self) -> bool {
        http_get(
            self.readiness_port,
            "/healthz/ready",
            Duration::from_secs(2),
        )
        .is_ok_and(|(code, _)| code == 200)
    }

    /// Polls `check` on the config dump until it holds; fails with the last dump, our log and istiod's.
    fn wait_dump(
        &mut self,
        istiod: &Istiod,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            if let Some(d) = self.dump() {
                if check(&d) {
                    return d;
                }
                last = d;
            }
            if Instant::now() > deadline || !self.proc.is_running() {
                panic!(
                    "{what}: not within {timeout:?}\nlast config dump: {last:#}\n---- ztunnel ----\n{}\n{}",
                    self.proc.stderr(),
                    istiod.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn workload<'a>(dump: &'a Value, name: &str) -> Option<&'a Value> {
    dump["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["namespace"] == "shop" && w["name"] == name)
}

/// The PEM text of a config dump certificate entry (raw PEM, or base64 of it as upstream writes).
fn pem_of(cert: &Value) -> String {
    let text = cert["pem"].as_str().unwrap_or_default();
    if text.contains("-----BEGIN") {
        return text.to_owned();
    }
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// `openssl ARGS` on `pem` (given on stdin), its stdout; fails with its stderr.
fn openssl(args: &[&str], pem: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `YYYY-MM-DDTHH:MM:SSZ` of an openssl `notAfter=`/`notBefore=` date.
fn rfc3339(openssl_date: &str) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", openssl_date, "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The rows (split on runs of spaces) of an istioctl table, without the header.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn our_ztunnel_is_configured_by_istiod_and_read_by_istioctl() {
    tests::require_root();
    let started = Instant::now();
    let cluster = Cluster::start("istiod-ztunnel");
    let (api, istiod, dir) = (&cluster.api, &cluster.istiod, &cluster.dir);
    // The ambient namespace: pods of node-a (the web pods enrolled by the node agent, which writes the
    // redirection annotation back; the client not yet), a Service in front of web, an L4 policy.
    api.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}\n",
    )
    .unwrap();
    for sa in ["default", "web", "client"] {
        api.kubectl(&["create", "serviceaccount", sa, "-n", "shop"])
            .unwrap();
    }
    for (pod, sa, ip, labels, enrolled) in SHOP_PODS {
        let annotations = if enrolled {
            "{ambient.istio.io/redirection: enabled}"
        } else {
            "{}"
        };
        api.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: shop, labels: {{{labels}}}, annotations: {annotations}}}\n\
             spec: {{nodeName: {NODE}, serviceAccountName: {sa}, containers: [{{name: app, image: app:1, ports: [{{containerPort: 8080}}]}}]}}\n"
        ))
        .unwrap();
        api.set_pod_status("shop", pod, ip, true).unwrap();
    }
    api.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
         spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}\n",
    )
    .unwrap();
    api.apply(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-client, namespace: shop}\n\
         spec:\n  selector: {matchLabels: {app: web}}\n  action: ALLOW\n  rules:\n  \
         - from: [{source: {principals: [cluster.local/ns/shop/sa/client]}}]\n    to: [{operation: {ports: [\"8080\"]}}]\n",
    )
    .unwrap();
    let vip = api.get_json(&["service", "web", "-n", "shop"]).unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();

    // Our ztunnel, with the node agent's ZDS server (no pods yet).
    let mut zt = cluster.node(NODE, "10.244.0.2");

    // (1) istiod's view of the cluster in our config dump.
    let dump = zt.wait_dump(
        istiod,
        "istiod's shop workloads, the web Service and the policy",
        Duration::from_secs(60),
        |d| {
            SHOP_PODS.iter().all(|p| workload(d, p.0).is_some())
                && workload(d, "web-0").is_some_and(|w| w["protocol"] == "HBONE")
                && d["services"].as_array().is_some_and(|s| {
                    s.iter()
                        .any(|s| s["hostname"] == "web.shop.svc.cluster.local")
                })
                && d["policies"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["name"] == "allow-client"))
        },
    );
    for (pod, sa, ip, _, enrolled) in SHOP_PODS {
        let w = workload(&dump, pod).unwrap();
        assert_eq!(w["serviceAccount"], sa, "{w:#}");
        assert_eq!(w["node"], NODE, "{w:#}");
        assert_eq!(w["workloadIps"], serde_json::json!([ip]), "{w:#}");
        assert_eq!(
            w["protocol"],
            if enrolled { "HBONE" } else { "TCP" },
            "{pod}: {w:#}"
        );
    }
    // istiod names on each workload the selector policies that apply to it.
    for (pod, ..) in SHOP_PODS {
        let w = workload(&dump, pod).unwrap();
        let expected = if pod.starts_with("web") {
            serde_json::json!(["shop/allow-client"])
        } else {
            serde_json::json!([])
        };
        assert_eq!(w["authorizationPolicies"], expected, "{pod}: {w:#}");
        assert_eq!(
            w["services"],
            if pod.starts_with("web") {
                serde_json::json!({"shop/web.shop.svc.cluster.local": {"80": 8080}})
            } else {
                serde_json::json!({})
            },
            "{pod}: {w:#}"
        );
    }
    let web = dump["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["hostname"] == "web.shop.svc.cluster.local")
        .unwrap()
        .clone();
    assert_eq!(web["name"], "web", "{web:#}");
    assert_eq!(web["namespace"], "shop", "{web:#}");
    assert_eq!(
        web["vips"],
        serde_json::json!([format!("/{vip}")]),
        "{web:#}"
    );
    assert_eq!(web["ports"]["80"], 8080, "{web:#}");
    let endpoints = web["endpoints"].as_object().unwrap();
    assert_eq!(endpoints.len(), 2, "{web:#}");
    let policy = dump["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "allow-client")
        .unwrap()
        .clone();
    assert_eq!(policy["namespace"], "shop", "{policy:#}");
    assert_eq!(policy["action"], "Allow", "{policy:#}");
    assert_eq!(policy["scope"], "WorkloadSelector", "{policy:#}");
    let rules = policy["rules"].to_string();
    assert!(
        rules.contains("cluster.local/ns/shop/sa/client") && rules.contains("8080"),
        "{policy:#}"
    );
    zt.wait_ready();

    // (2) A pod of node-a handed over on ZDS: its certificate comes from istiod's CA.
    let pod_ns = Netns::new("izt").unwrap();
    let uid = api.get_json(&["pod", "web-0", "-n", "shop"]).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    zt.zds()
        .add(
            &cni_plugin::zds::wire::Workload {
                uid,
                name: "web-0".into(),
                namespace: "shop".into(),
                service_account: "web".into(),
            },
            &pod_ns.path(),
        )
        .unwrap();
    let identity = "spiffe://cluster.local/ns/shop/sa/web";
    let dump = zt.wait_certificate(istiod, identity);
    let cert = dump["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["identity"] == identity)
        .unwrap()
        .clone();
    let leaf = &cert["certChain"][0];
    let leaf_pem = pem_of(leaf);
    let roots: Vec<String> = cert["rootCerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(pem_of)
        .collect();
    assert!(
        roots
            .iter()
            .any(|r| r.trim() == istiod.root_cert_pem().trim()),
        "the dump's roots are not istiod's: {cert:#}"
    );
    let chain_file = dir.path().join("chain.pem");
    let intermediates: String = cert["certChain"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(pem_of)
        .collect();
    std::fs::write(&chain_file, format!("{intermediates}\n")).unwrap();
    let mut verify = vec![
        "verify",
        "-CAfile",
        istiod.root_cert_file().to_str().unwrap(),
    ];
    if !intermediates.trim().is_empty() {
        verify.extend(["-untrusted", chain_file.to_str().unwrap()]);
    }
    let verified = openssl(&verify, &leaf_pem);
    assert!(verified.contains("OK"), "{verified}");
    let text = openssl(&["x509", "-noout", "-ext", "subjectAltName"], &leaf_pem);
    assert!(text.contains(&format!("URI:{identity}")), "{text}");

    // (3) istioctl reads our dump.
    let dump_file = dir.path().join("config_dump.json");
    std::fs::write(&dump_file, serde_json::to_string(&dump).unwrap()).unwrap();
    let file = dump_file.to_str().unwrap();
    let all: Value = serde_json::from_str(
        &istiod
            .istioctl(&["ztunnel-config", "all", "--file", file, "-o", "json"])
            .unwrap(),
    )
    .unwrap();
    for key in ["workloads", "services", "policies", "certificates"] {
        assert!(
            all[key].as_array().is_some_and(|a| !a.is_empty()),
            "istioctl ztunnel-config all -o json has no {key}: {all:#}"
        );
    }
    // What istioctl parsed is what the API objects say (Go's structs read back our field names and types).
    for (pod, sa, ip, _, enrolled) in SHOP_PODS {
        let w = workload(&all, pod).unwrap_or_else(|| panic!("{pod} not in {all:#}"));
        assert_eq!(w["uid"], format!("Kubernetes//Pod/shop/{pod}"), "{w:#}");
        assert_eq!(w["serviceAccount"], sa, "{w:#}");
        assert_eq!(w["workloadIps"], serde_json::json!([ip]), "{w:#}");
        assert_eq!(w["node"], NODE, "{w:#}");
        assert_eq!(
            w["protocol"],
            if enrolled { "HBONE" } else { "TCP" },
            "{w:#}"
        );
    }
    let parsed_web = all["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["hostname"] == "web.shop.svc.cluster.local")
        .unwrap_or_else(|| panic!("{all:#}"));
    assert_eq!(
        parsed_web["vips"],
        serde_json::json!([format!("/{vip}")]),
        "{parsed_web:#}"
    );
    assert_eq!(parsed_web["ports"]["80"], 8080, "{parsed_web:#}");
    assert!(
        all["policies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "allow-client"
                && p["namespace"] == "shop"
                && p["action"] == "Allow"),
        "{all:#}"
    );
    assert!(
        all["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["identity"] == identity
                && c["certChain"][0]["serialNumber"] == leaf["serialNumber"]),
        "{all:#}"
    );
    let workloads = istiod
        .istioctl(&["ztunnel-config", "workloads", "--file", file])
        .unwrap();
    let shop: Vec<Vec<String>> = rows(&workloads)
        .into_iter()
        .filter(|r| r[0] == "shop")
        .collect();
    let expected: Vec<Vec<String>> = SHOP_PODS
        .iter()
        .map(|(pod, _, ip, _, enrolled)| {
            vec![
                "shop".to_owned(),
                (*pod).to_owned(),
                (*ip).to_owned(),
                NODE.to_owned(),
                "None".to_owned(),
                if *enrolled { "HBONE" } else { "TCP" }.to_owned(),
            ]
        })
        .collect();
    let mut shop_sorted = shop.clone();
    shop_sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(shop_sorted, expected_sorted, "{workloads}");
    let services = istiod
        .istioctl(&["ztunnel-config", "services", "--file", file])
        .unwrap();
    let web_row = rows(&services)
        .into_iter()
        .find(|r| r[0] == "shop" && r[1] == "web")
        .unwrap_or_else(|| panic!("{services}"));
    assert_eq!(
        web_row,
        ["shop", "web", vip.as_str(), "None", "2/2"],
        "{services}"
    );
    let policies = istiod
        .istioctl(&["ztunnel-config", "policies", "--file", file])
        .unwrap();
    assert!(
        rows(&policies)
            .iter()
            .any(|r| r[..3] == ["shop", "allow-client", "Allow"]),
        "{policies}"
    );
    let certs = istiod
        .istioctl(&["ztunnel-config", "certificates", "--file", file])
        .unwrap();
    let leaf_row = rows(&certs)
        .into_iter()
        .find(|r| r[0] == identity && r[1] == "Leaf")
        .unwrap_or_else(|| panic!("{certs}"));
    let serial = openssl(&["x509", "-noout", "-serial"], &leaf_pem);
    let serial = serial
        .trim()
        .trim_start_matches("serial=")
        .trim_start_matches('0')
        .to_lowercase();
    let not_after = openssl(&["x509", "-noout", "-enddate"], &leaf_pem);
    let not_before = openssl(&["x509", "-noout", "-startdate"], &leaf_pem);
    assert_eq!(
        leaf_row[2..],
        [
            "Available".to_owned(),
            "true".to_owned(),
            serial,
            rfc3339(not_after.trim().trim_start_matches("notAfter=")),
            rfc3339(not_before.trim().trim_start_matches("notBefore=")),
        ],
        "{certs}"
    );
    assert!(
        rows(&certs)
            .iter()
            .any(|r| r[0] == identity && r[1] == "Root"),
        "{certs}"
    );
    // (4) istiod sees our ztunnel ACK both types: `istioctl proxy-status` straight to istiod's xDS TLS port (a
    // token of istio-system/default, audience istio-ca), which needs no port-forward.
    let status: Value = istiod.proxy_status().unwrap();
    let ours = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node"]["id"] == format!("{ZTUNNEL_POD}.istio-system"))
        .unwrap_or_else(|| panic!("our ztunnel is not in proxy-status: {status:#}"));
    assert_eq!(
        ours["node"]["metadata"]["CLUSTER_ID"], "Kubernetes",
        "{ours:#}"
    );
    assert_eq!(
        ours["node"]["metadata"]["ISTIO_VERSION"], "unknown",
        "{ours:#}"
    );
    let mut synced: Vec<String> = ours["genericXdsConfigs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["typeUrl"].as_str().unwrap(),
                c["configStatus"].as_str().unwrap()
            )
        })
        .collect();
    synced.sort();
    assert_eq!(
        synced,
        [
            "type.googleapis.com/istio.security.Authorization SYNCED",
            "type.googleapis.com/istio.workload.Address SYNCED",
        ],
        "{ours:#}"
    );

    // (5) istiod's incremental pushes: a deleted pod leaves the workloads and the Service's endpoints, a deleted
    // policy leaves the policies (delta removals by resource name).
    api.kubectl(&[
        "delete",
        "pod",
        "web-1",
        "-n",
        "shop",
        "--grace-period=0",
        "--force",
    ])
    .unwrap();
    api.kubectl(&[
        "delete",
        "authorizationpolicy",
        "allow-client",
        "-n",
        "shop",
    ])
    .unwrap();
    let dump = zt.wait_dump(
        istiod,
        "web-1 and the policy removed",
        Duration::from_secs(30),
        |d| {
            workload(d, "web-1").is_none() && d["policies"].as_array().is_some_and(|p| p.is_empty())
        },
    );
    let web = dump["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["hostname"] == "web.shop.svc.cluster.local")
        .unwrap();
    assert_eq!(web["endpoints"].as_object().unwrap().len(), 1, "{web:#}");
    assert!(workload(&dump, "web-0").is_some(), "{dump:#}");

    eprintln!("done in {:.1?}", started.elapsed());
}

impl Ztunnel {
    /// The test's ZDS server this ztunnel connects to.
    fn zds(&self) -> &Zds {
        self.zds
            .as_ref()
            .expect("this ztunnel connects to a node agent")
    }

    /// The Prometheus text of the stats port.
    fn metrics(&self) -> String {
        http_get(self.stats_port, "/metrics", Duration::from_secs(5))
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ready() {
            assert!(
                Instant::now() < deadline && self.proc.is_running(),
                "{} not ready within 30 s:\n{}",
                self.proc.name,
                self.proc.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the dump holds a certificate chain for `identity`; that dump.
    fn wait_certificate(&mut self, istiod: &Istiod, identity: &str) -> Value {
        self.wait_dump(
            istiod,
            &format!("the certificate of {identity}"),
            Duration::from_secs(30),
            |d| {
                d["certificates"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["identity"] == identity
                            && c["certChain"].as_array().is_some_and(|ch| !ch.is_empty())
                    })
                })
            },
        )
    }
}

/// Two pod network namespaces joined by a veth pair (`eth0` in each, made inside them: nothing in the root
/// namespace), each with its address in one /24 and a default route through it.
fn pod_pair(a_ip: &str, b_ip: &str) -> (Netns, Netns) {
    let a = Netns::new("iztc").unwrap();
    let b = Netns::new("izts").unwrap();
    a.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.name,
    ])
    .unwrap();
    for (ns, ip) in [(&a, a_ip), (&b, b_ip)] {
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])
            .unwrap();
        ns.ip(&["link", "set", "eth0", "up"]).unwrap();
        ns.ip(&["route", "add", "default", "dev", "eth0"]).unwrap();
    }
    (a, b)
}

/// The body of `GET url` from `ns`, retried until it answers or `timeout` passes.
fn get_within(ns: &Netns, url: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(body) = ns.http_body(url) {
            return Some(body);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the first sample of `metric` whose labels include every `labels` pair.
fn sample(metrics: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(metric)?.strip_prefix('{')?;
        let (set, value) = rest.rsplit_once("} ")?;
        labels
            .iter()
            .all(|(k, v)| set.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

const CLIENT_IP: &str = "10.244.77.11";
const WEB_IP: &str = "10.244.77.10";
const DENY_CLIENT: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
    metadata: {name: deny-client, namespace: shop}\n\
    spec:\n  selector: {matchLabels: {app: web}}\n  action: DENY\n  rules:\n  \
    - from: [{source: {principals: [cluster.local/ns/shop/sa/client]}}]\n";

/// Two nodes, each with our ztunnel configured by istiod: a client pod on node-a reaches a web pod on node-b,
/// directly and through its Service, over HBONE with istiod's certificates (the in-pod redirect rules are the
/// node agent's own); an L4 DENY policy applied with kubectl stops it and removing it lets it through again.
#[test]
fn pods_on_two_nodes_talk_over_hbone_with_istiods_certificates() {
    tests::require_root();
    let started = Instant::now();
    let mut cluster = Cluster::start("istiod-hbone");
    let (api, istiod) = (&cluster.api, &cluster.istiod);
    let mut za = cluster.node("node-a", "10.244.1.2");
    let mut zb = cluster.node("node-b", "10.244.2.2");

    api.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}\n",
    )
    .unwrap();
    for sa in ["default", "web", "client"] {
        api.kubectl(&["create", "serviceaccount", sa, "-n", "shop"])
            .unwrap();
    }
    for (pod, sa, node, ip, app) in [
        ("client", "client", "node-a", CLIENT_IP, "client"),
        ("web-0", "web", "node-b", WEB_IP, "web"),
    ] {
        api.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: shop, labels: {{app: {app}}}, \
             annotations: {{ambient.istio.io/redirection: enabled}}}}\n\
             spec: {{nodeName: {node}, serviceAccountName: {sa}, containers: [{{name: app, image: app:1}}]}}\n"
        ))
        .unwrap();
        api.set_pod_status("shop", pod, ip, true).unwrap();
    }
    api.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
         spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}\n",
    )
    .unwrap();
    let vip = api.get_json(&["service", "web", "-n", "shop"]).unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    for z in [&mut za, &mut zb] {
        z.wait_dump(
            istiod,
            "web-0 (HBONE) behind the web Service",
            Duration::from_secs(60),
            |d| {
                workload(d, "web-0").is_some_and(|w| w["protocol"] == "HBONE")
                    && d["services"].as_array().is_some_and(|s| {
                        s.iter().any(|s| {
                            s["hostname"] == "web.shop.svc.cluster.local"
                                && s["endpoints"].as_object().is_some_and(|e| e.len() == 1)
                        })
                    })
            },
        );
        z.wait_ready();
    }

    // The pods: a server in web-0's namespace, the node agent's redirect rules in both, each handed to its
    // node's ztunnel.
    let (client_ns, web_ns) = pod_pair(CLIENT_IP, WEB_IP);
    let site = cluster.dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "served by web-0\n").unwrap();
    let mut server = Command::new("ip");
    server
        .args([
            "netns",
            "exec",
            &web_ns.name,
            "python3",
            "-m",
            "http.server",
            "8080",
        ])
        .arg("--directory")
        .arg(&site);
    let _server = Proc::spawn("web-0-server", server, cluster.dir.path());
    assert!(
        get_within(&web_ns, "http://127.0.0.1:8080/", Duration::from_secs(10)).is_some(),
        "the web server did not start"
    );
    for (ns, z, pod, sa) in [
        (&client_ns, &za, "client", "client"),
        (&web_ns, &zb, "web-0", "web"),
    ] {
        cni_plugin::redirect::apply(&ns.path(), cni_plugin::rules::PodRuleOptions::default())
            .unwrap();
        let uid = api.get_json(&["pod", pod, "-n", "shop"]).unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_owned();
        z.zds()
            .add(
                &cni_plugin::zds::wire::Workload {
                    uid,
                    name: pod.into(),
                    namespace: "shop".into(),
                    service_account: sa.into(),
                },
                &ns.path(),
            )
            .unwrap();
    }
    za.wait_certificate(istiod, "spiffe://cluster.local/ns/shop/sa/client");
    zb.wait_certificate(istiod, "spiffe://cluster.local/ns/shop/sa/web");

    // pod → pod and pod → Service, carried over HBONE: node-b's ztunnel accepted them with mutual TLS from the
    // client's istiod-issued identity.
    let direct = format!("http://{WEB_IP}:8080/");
    let service = format!("http://{vip}/");
    for url in [&direct, &service] {
        let body = get_within(&client_ns, url, Duration::from_secs(10)).unwrap_or_else(|| {
            panic!(
                "GET {url} from the client pod failed\n---- node-a ----\n{}\n---- node-b ----\n{}",
                za.proc.stderr(),
                zb.proc.stderr()
            )
        });
        assert_eq!(body, "served by web-0\n", "{url}");
    }
    let inbound = |z: &Ztunnel| {
        sample(
            &z.metrics(),
            "istio_tcp_connections_opened_total",
            &[
                ("reporter", "destination"),
                ("connection_security_policy", "mutual_tls"),
                (
                    "source_principal",
                    "spiffe://cluster.local/ns/shop/sa/client",
                ),
                (
                    "destination_principal",
                    "spiffe://cluster.local/ns/shop/sa/web",
                ),
            ],
        )
        .unwrap_or(0.0)
    };
    assert!(
        inbound(&zb) >= 2.0,
        "node-b's ztunnel did not count the client's mTLS connections:\n{}",
        zb.metrics()
    );

    // An L4 DENY policy for the client's identity, applied with kubectl, stops new connections; removing it lets
    // them through again.
    api.apply(DENY_CLIENT).unwrap();
    let applied = Instant::now();
    while get_within(&client_ns, &direct, Duration::ZERO).is_some() {
        assert!(
            applied.elapsed() < Duration::from_secs(10),
            "the DENY policy did not stop traffic within 10 s:\n{}",
            zb.proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let denied_after = applied.elapsed();
    api.kubectl(&["delete", "authorizationpolicy", "deny-client", "-n", "shop"])
        .unwrap();
    let removed = Instant::now();
    assert!(
        get_within(&client_ns, &direct, Duration::from_secs(10)).is_some(),
        "traffic did not come back within 10 s of removing the DENY policy:\n{}",
        zb.proc.stderr()
    );
    let allowed_after = removed.elapsed();

    // istiod restarts: while it is away traffic keeps flowing on the last configuration and certificates; when it
    // is back both ztunnels resync (a pod created meanwhile reaches them, istiod sees both ACK again).
    cluster.istiod.stop_process().unwrap();
    assert_eq!(
        get_within(&client_ns, &service, Duration::from_secs(5)).as_deref(),
        Some("served by web-0\n"),
        "traffic while istiod is down:\n{}",
        za.proc.stderr()
    );
    api.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: late, namespace: shop, annotations: {ambient.istio.io/redirection: enabled}}\n\
         spec: {nodeName: node-b, serviceAccountName: default, containers: [{name: app, image: app:1}]}\n",
    )
    .unwrap();
    api.set_pod_status("shop", "late", "10.244.77.30", true)
        .unwrap();
    cluster.istiod.start_process().unwrap();
    let istiod = &cluster.istiod;
    for z in [&mut za, &mut zb] {
        z.wait_dump(
            istiod,
            "the pod created while istiod was down",
            Duration::from_secs(30),
            |d| workload(d, "late").is_some(),
        );
    }
    let status: Value = istiod.proxy_status().unwrap();
    for node in ["node-a", "node-b"] {
        let id = format!("ztunnel-{node}.istio-system");
        assert!(
            status["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["node"]["id"] == id.as_str()
                    && r["genericXdsConfigs"].as_array().is_some_and(
                        |c| c.len() == 2 && c.iter().all(|c| c["configStatus"] == "SYNCED")
                    )),
            "{id} is not synced with the restarted istiod: {status:#}"
        );
    }

    // PeerAuthentication STRICT (istiod turns it into a DENY policy for ztunnel): a plaintext client off the mesh,
    // reaching web-0 through a second link, is refused while the client's HBONE connections still pass.
    let plain = Netns::new("iztp").unwrap();
    plain
        .ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth1",
            "netns",
            &web_ns.name,
        ])
        .unwrap();
    plain
        .ip(&["addr", "add", "10.244.78.2/24", "dev", "eth0"])
        .unwrap();
    plain.ip(&["link", "set", "eth0", "up"]).unwrap();
    plain
        .ip(&["route", "add", &format!("{WEB_IP}/32"), "dev", "eth0"])
        .unwrap();
    web_ns
        .ip(&["addr", "add", "10.244.78.1/24", "dev", "eth1"])
        .unwrap();
    web_ns.ip(&["link", "set", "eth1", "up"]).unwrap();
    assert_eq!(
        get_within(&plain, &direct, Duration::from_secs(10)).as_deref(),
        Some("served by web-0\n"),
        "plaintext before STRICT:\n{}",
        zb.proc.stderr()
    );
    api.apply(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: shop}\n\
         spec: {mtls: {mode: STRICT}}\n",
    )
    .unwrap();
    let applied = Instant::now();
    while get_within(&plain, &direct, Duration::ZERO).is_some() {
        assert!(
            applied.elapsed() < Duration::from_secs(10),
            "STRICT did not refuse the plaintext client within 10 s:\n{:#}\n{}",
            zb.dump().unwrap_or_default()["policies"],
            zb.proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let strict_after = applied.elapsed();
    assert_eq!(
        get_within(&client_ns, &direct, Duration::from_secs(5)).as_deref(),
        Some("served by web-0\n"),
        "HBONE under STRICT:\n{}",
        zb.proc.stderr()
    );
    let policies = zb.dump().unwrap()["policies"].clone();
    eprintln!("istiod's policies under STRICT: {policies:#}");

    eprintln!(
        "denied {denied_after:.1?} after the policy was applied, allowed again {allowed_after:.1?} after it was \
         removed, plaintext refused {strict_after:.1?} after STRICT; test took {:.1?}",
        started.elapsed()
    );
    assert!(
        denied_after < Duration::from_secs(2),
        "the DENY policy took {denied_after:?} (istio's acceptance: within 2 s)"
    );
}

/// Our node agent with the API server as its pod source, next to our ztunnel under istiod: given a running pod of
/// its node in an ambient namespace, it finds the pod's network namespace by the pod's IP, installs the redirect
/// rules, hands the pod to ztunnel and writes `ambient.istio.io/redirection: enabled` back — upon which istiod
/// sends the pod as HBONE, and ztunnel gets the pod's certificate from istiod's CA.
#[test]
fn our_node_agent_enrolls_a_pod_that_istiod_then_serves_as_hbone() {
    tests::require_root();
    let cluster = Cluster::start("istiod-agent");
    let (api, istiod) = (&cluster.api, &cluster.istiod);

    // The agent, as on a node: its CNI configuration directory with the primary network's conflist, the
    // API server as its pod source (no node-side probe table: it runs in the root namespace, the test's host).
    let agent_dir = cluster.dir.path().join("agent");
    for d in ["net.d", "bin", "run"] {
        std::fs::create_dir_all(agent_dir.join(d)).unwrap();
    }
    std::fs::write(
        agent_dir.join("net.d/10-meshnet.conflist"),
        r#"{"cniVersion": "1.0.0", "name": "meshnet", "plugins": [{"type": "bridge", "bridge": "cni0",
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.250.1.0/24"}]]}}]}"#,
    )
    .unwrap();
    let uds = agent_dir.join("ztunnel.sock");
    let mut agent = Command::new(debug_bin("cni-agent", "cni-plugin"));
    agent
        .arg("--cni-conf-dir")
        .arg(agent_dir.join("net.d"))
        .arg("--cni-bin-dir")
        .arg(agent_dir.join("bin"))
        .arg("--plugin-binary")
        .arg(debug_bin("istio-cni", "cni-plugin"))
        .arg("--run-dir")
        .arg(agent_dir.join("run"))
        .arg("--kubeconfig")
        .arg(api.kubeconfig())
        .arg("--ztunnel-uds")
        .arg(&uds)
        .args(["--node-name", NODE, "--host-probe-snat", "false"])
        .env("RUST_LOG", "info");
    let mut agent = Proc::spawn("cni-agent", agent, cluster.dir.path());
    let mut zt = cluster.node_with(NODE, "10.244.0.2", Some(&uds));

    // A running pod of node-a (its status IP on a network namespace of the test), not yet enrolled.
    let pid = std::process::id();
    let ip = format!("10.251.{}.{}", (pid >> 7) & 0xff, (pid & 0x7f) + 1);
    let pod_ns = Netns::new("izta").unwrap();
    pod_ns
        .ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"])
        .unwrap();
    api.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}\n",
    )
    .unwrap();
    for sa in ["default", "app"] {
        api.kubectl(&["create", "serviceaccount", sa, "-n", "shop"])
            .unwrap();
    }
    api.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: app, namespace: shop, labels: {{app: app}}}}\n\
         spec: {{nodeName: {NODE}, serviceAccountName: app, containers: [{{name: app, image: app:1}}]}}\n"
    ))
    .unwrap();
    api.set_pod_status("shop", "app", &ip, true).unwrap();

    // The agent enrolls it and writes the annotation back; istiod then sends it as HBONE.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pod = api.get_json(&["pod", "app", "-n", "shop"]).unwrap();
        if pod["metadata"]["annotations"]["ambient.istio.io/redirection"] == "enabled" {
            break;
        }
        assert!(
            Instant::now() < deadline && agent.is_running(),
            "the agent did not annotate shop/app: {:#}\n---- agent ----\n{}",
            pod["metadata"],
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let tables = pod_ns.exec("nft", &["list", "tables"]).unwrap();
    assert!(
        String::from_utf8_lossy(&tables.stdout).contains("istio-ambient-nat"),
        "no redirect rules in the pod: {tables:?}"
    );
    let dump = zt.wait_dump(
        istiod,
        "shop/app as HBONE, handed over and with istiod's certificate",
        Duration::from_secs(30),
        |d| {
            workload(d, "app").is_some_and(|w| w["protocol"] == "HBONE")
                && d["workloadState"].as_object().is_some_and(|s| {
                    s.values()
                        .any(|p| p["info"]["name"] == "app" && p["state"] == "Up")
                })
                && d["certificates"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["identity"] == "spiffe://cluster.local/ns/shop/sa/app"
                            && c["certChain"].as_array().is_some_and(|ch| !ch.is_empty())
                    })
                })
        },
    );
    let w = workload(&dump, "app").unwrap();
    assert_eq!(w["workloadIps"], serde_json::json!([ip]), "{w:#}");
}
