//! The OCI images `scripts/images.sh` builds, run with podman, and our ztunnel image as a drop-in in Istio's own
//! ztunnel Helm chart:
//!
//! - every image answers `--version` like the binary it was built from, runs as the user it should, and holds
//!   every shared library its programs need (the install-cni image also runs nft, ip and /bin/sh);
//! - the ztunnel image, started with `FAKE_CA` and a local configuration, becomes ready once the node agent's ZDS
//!   server has given it its (empty) pod snapshot;
//! - Istio's ztunnel chart (from the `istio.io/istio` module, `scripts/istiod.sh module-dir`) rendered with our
//!   image: its container is started exactly as a kubelet would start it — its arguments, its environment with
//!   the field and resource references resolved from the Pod object in a real API server, its mounts laid out as
//!   the volumes it declares (the `istio-ca-root-cert` ConfigMap our control plane publishes, a projected
//!   `istio-ca` token bound to the pod, the ZDS socket directory, `/tmp`), its security context — against our
//!   control plane serving xDS and the CA on the address the chart names (`istiod.istio-system.svc:15012`). It
//!   becomes ready on the chart's probe, receives the cluster's workloads, and, given a pod of its node over ZDS,
//!   gets that pod's certificate from the CA with the projected token; and `istioctl ztunnel-config` (real
//!   istioctl, `scripts/istiod.sh`) reads its config dump: the same workloads, services, certificate serial and
//!   expiry.
//!
//! Needs root, `scripts/images.sh`, `scripts/kube.sh build`, `scripts/helm.sh build` (scripts/test.sh runs them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tests::kube::ApiServer;
use tests::peers::{ControlPlaneProc, TempDir, workspace_root};
use tests::podman::{Container, Netns, RUN_FLAGS, Zds, image, podman, require_image, run};

/// `(image, binary, user)` of every image.
const IMAGES: [(&str, &str, &str); 4] = [
    ("ztunnel", "ztunnel", "0:0"),
    ("waypoint", "waypoint", "1337:1337"),
    ("control-plane", "control-plane", "1337:1337"),
    ("install-cni", "cni-agent", "0:0"),
];

fn debug_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join(name)
}

#[test]
fn every_image_runs_as_its_binary_with_its_libraries_and_user() -> Result<()> {
    tests::require_root();
    for (name, binary, user) in IMAGES {
        require_image(name)?;
        let reference = image(name);
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend(RUN_FLAGS);
        args.extend([reference.as_str(), "--version"]);
        let out = podman(&args)?;
        let version = String::from_utf8_lossy(&out.stdout);
        // The same words as the binary of this build (name and crate version).
        let local = run(debug_bin(binary).to_str().unwrap(), &["--version"])?;
        assert_eq!(version.trim(), local.trim(), "{reference} --version");
        let inspect = podman(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}}",
            &reference,
        ])?;
        assert_eq!(
            String::from_utf8_lossy(&inspect.stdout).trim(),
            user,
            "{reference} user"
        );
    }
    // The agent runs nft and ip inside pods and on the node; the readiness probe runs /bin/sh and the plugin.
    let reference = image("install-cni");
    let mut args = vec![
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
    ];
    args.extend(RUN_FLAGS);
    args.extend([
        reference.as_str(),
        "-c",
        "nft --version && ip -V && CNI_COMMAND=VERSION istio-cni </dev/null",
    ]);
    let out = String::from_utf8_lossy(&podman(&args)?.stdout).into_owned();
    assert!(out.contains("nftables"), "{out}");
    assert!(out.contains("iproute2"), "{out}");
    assert!(out.contains("supportedVersions"), "{out}");
    Ok(())
}

#[test]
fn the_ztunnel_image_becomes_ready_with_a_fake_ca_and_a_local_config() -> Result<()> {
    tests::require_root();
    require_image("ztunnel")?;
    let dir = TempDir::new("img-ready");
    let zds = Zds::serve(dir.path())?;
    let ns = Netns::new("imgz")?;
    let options: Vec<String> = [
        "-e",
        "FAKE_CA=true",
        "-e",
        "LOCAL_XDS={}",
        "--read-only",
        "-v",
        &format!("{}:/var/run/ztunnel", dir.path().display()),
    ]
    .map(String::from)
    .to_vec();
    let args = ["proxy", "ztunnel"].map(String::from);
    let c = Container::start(&ns, &options, &image("ztunnel"), &args)?;
    c.wait_until("ztunnel ready on 15021", Duration::from_secs(60), || {
        ns.http_status("http://127.0.0.1:15021/healthz/ready") == 200
    })?;
    assert_eq!(zds.handle.connected(), 1, "{}", c.logs());
    Ok(())
}

/// The node-local address of the test's veth pair: the control plane listens on the host side.
const HOST_IP: &str = "172.31.250.1";
const NODE_IP: &str = "172.31.250.2";
const NODE: &str = "chart-node";

/// The DaemonSet of Istio's ztunnel chart, rendered with our image.
fn istio_chart_daemonset() -> Result<Value> {
    let module = run("bash", &[root_script("istiod.sh").as_str(), "module-dir"])?;
    let chart = Path::new(module.trim()).join("manifests/charts/ztunnel");
    let helm = run("bash", &[root_script("helm.sh").as_str(), "path"])?;
    let rendered = run(
        helm.trim(),
        &[
            "template",
            "ztunnel",
            chart.to_str().unwrap(),
            "--namespace",
            "istio-system",
            "--set",
            "hub=localhost/mesh",
            "--set",
            "tag=dev",
        ],
    )?;
    for doc in rendered.split("\n---") {
        let v: Value = serde_yaml_ng::from_str(doc).context("Istio's chart rendered bad YAML")?;
        if v["kind"] == "DaemonSet" {
            return Ok(v);
        }
    }
    bail!("Istio's ztunnel chart rendered no DaemonSet:\n{rendered}")
}

/// The value a kubelet gives `env[].valueFrom` for `pod` (a CPU count for resource references, rounded up as
/// divisor 1 does; a missing limit is the node's allocatable CPUs).
fn resolve_env(var: &Value, pod: &Value, node_cpus: usize) -> Result<String> {
    if let Some(v) = var.get("value") {
        return Ok(v.as_str().unwrap_or_default().to_owned());
    }
    let from = &var["valueFrom"];
    if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
        let pointer = format!("/{}", path.replace('.', "/"));
        return pod
            .pointer(&pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("{var}: the pod has no {path}"));
    }
    if let Some(resource) = from["resourceFieldRef"]["resource"].as_str() {
        assert_eq!(from["resourceFieldRef"]["divisor"], "1", "{var}");
        let (kind, what) = resource.split_once('.').context("resource")?;
        let resources = &pod["spec"]["containers"][0]["resources"][kind];
        return Ok(match resources[what].as_str() {
            None => node_cpus.to_string(),
            Some(milli) if milli.ends_with('m') => milli
                .trim_end_matches('m')
                .parse::<usize>()?
                .div_ceil(1000)
                .to_string(),
            Some(whole) => whole.to_owned(),
        });
    }
    bail!("{var}: a kind of env source this test does not resolve")
}

#[test]
fn istios_ztunnel_chart_runs_our_image_against_our_control_plane() -> Result<()> {
    tests::require_root();
    require_image("ztunnel")?;
    let ds = istio_chart_daemonset()?;
    let template = &ds["spec"]["template"];
    let container = &template["spec"]["containers"][0];
    assert_eq!(container["image"], image("ztunnel"));
    let api = ApiServer::start("img-chart")?;
    api.kubectl(&["create", "namespace", "istio-system"])?;
    api.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {istio.io/dataplane-mode: ambient}\n",
    )?;
    for (ns, sa) in [
        ("istio-system", "default"),
        ("istio-system", "ztunnel"),
        ("shop", "default"),
    ] {
        api.kubectl(&["create", "serviceaccount", sa, "-n", ns])?;
    }

    // The node: a namespace joined to the host by a veth pair; the control plane listens on the host side.
    let node = Netns::new("imgn")?;
    let host_if = format!("zc{}", std::process::id() % 100_000);
    run(
        "ip",
        &[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &node.name,
        ],
    )?;
    let _link = LinkGuard(host_if.clone());
    run(
        "ip",
        &["addr", "add", &format!("{HOST_IP}/30"), "dev", &host_if],
    )?;
    run("ip", &["link", "set", &host_if, "up"])?;
    node.ip(&["addr", "add", &format!("{NODE_IP}/30"), "dev", "eth0"])?;
    node.ip(&["link", "set", "eth0", "up"])?;

    let dir = TempDir::new("img-chart");
    let listen = format!("{HOST_IP}:15012");
    let _cp = ControlPlaneProc::start_kube(
        api.kubeconfig(),
        dir.path(),
        &[
            "--listen",
            &listen,
            "--tls",
            "--tls-dns-name",
            "istiod.istio-system.svc",
        ],
        &[
            ("POD_NAMESPACE", "istio-system"),
            ("POD_NAME", "control-plane-0"),
        ],
    );

    // The ztunnel's Pod object, from the chart's template, on the node (what the DaemonSet controller and the
    // scheduler would make), with the status a kubelet would write.
    let mut pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "ztunnel-abcde", "namespace": "istio-system", "labels": template["metadata"]["labels"]},
        "spec": template["spec"].clone(),
    });
    pod["spec"]["nodeName"] = NODE.into();
    api.apply(&serde_json::to_string(&pod)?)?;
    api.set_pod_status("istio-system", "ztunnel-abcde", NODE_IP, true)?;
    let pod = api.get_json(&["pod", "ztunnel-abcde", "-n", "istio-system"])?;
    // The node, with the topology labels a cloud's nodes carry: the workloads' locality.
    api.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {NODE}\n  labels: {{topology.kubernetes.io/region: eu-west, \
         topology.kubernetes.io/zone: eu-west-1a}}\n"
    ))?;
    // A workload on the same node, enrolled in ambient mode.
    api.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: app, namespace: shop, labels: {{app: app}}}}\n\
         spec: {{nodeName: {NODE}, containers: [{{name: app, image: app:1}}]}}\n"
    ))?;
    api.set_pod_status("shop", "app", "172.31.251.7", true)?;

    // The volumes, laid out as the kubelet would, each mounted where the chart says.
    let mut mounts = Vec::new();
    let volumes = template["spec"]["volumes"].as_array().context("volumes")?;
    for m in container["volumeMounts"]
        .as_array()
        .context("volumeMounts")?
    {
        let name = m["name"].as_str().unwrap();
        let volume = volumes
            .iter()
            .find(|v| v["name"] == name)
            .context("volume")?;
        let host = dir.path().join("volumes").join(name);
        std::fs::create_dir_all(&host)?;
        if let Some(cm) = volume["configMap"]["name"].as_str() {
            let data = wait_for_configmap(&api, "istio-system", cm)?;
            for (key, value) in data.as_object().context("data")? {
                std::fs::write(host.join(key), value.as_str().unwrap_or_default())?;
            }
        } else if let Some(sources) = volume["projected"]["sources"].as_array() {
            for s in sources {
                let t = &s["serviceAccountToken"];
                let token = api.kubectl(&[
                    "create",
                    "token",
                    pod["spec"]["serviceAccountName"].as_str().unwrap(),
                    "-n",
                    "istio-system",
                    "--audience",
                    t["audience"].as_str().unwrap(),
                    "--duration",
                    &format!("{}s", t["expirationSeconds"]),
                    "--bound-object-kind",
                    "Pod",
                    "--bound-object-name",
                    "ztunnel-abcde",
                ])?;
                std::fs::write(host.join(t["path"].as_str().unwrap()), token.trim())?;
            }
        } else if volume.get("hostPath").is_none() && volume.get("emptyDir").is_none() {
            bail!("volume {volume} is of a kind this test does not lay out");
        }
        mounts.push((host, m["mountPath"].as_str().unwrap().to_owned()));
    }
    let zds_dir = &mounts
        .iter()
        .find(|(_, at)| at == "/var/run/ztunnel")
        .context("the chart mounts no ZDS socket directory")?
        .0;
    let zds = Zds::serve(zds_dir)?;

    // The container as the kubelet starts it.
    let node_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut options: Vec<String> = vec![
        "--add-host".into(),
        format!("istiod.istio-system.svc:{HOST_IP}"),
    ];
    let mut env = BTreeMap::new();
    for var in container["env"].as_array().context("env")? {
        let value = resolve_env(var, &pod, node_cpus)?;
        env.insert(var["name"].as_str().unwrap().to_owned(), value.clone());
        options.extend([
            "-e".into(),
            format!("{}={value}", var["name"].as_str().unwrap()),
        ]);
    }
    for (host, at) in &mounts {
        options.extend(["-v".into(), format!("{}:{at}", host.display())]);
    }
    let sc = &container["securityContext"];
    if sc["readOnlyRootFilesystem"] == true {
        options.push("--read-only".into());
    }
    options.extend([
        "--user".into(),
        format!("{}:{}", sc["runAsUser"], sc["runAsGroup"]),
    ]);
    options.extend(["--cap-drop".into(), "ALL".into()]);
    for cap in sc["capabilities"]["add"]
        .as_array()
        .context("capabilities")?
    {
        options.extend(["--cap-add".into(), cap.as_str().unwrap().to_owned()]);
    }
    let args: Vec<String> = container["args"]
        .as_array()
        .context("args")?
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let c = Container::start(&node, &options, &image("ztunnel"), &args)?;

    // Ready on the chart's own probe.
    let probe = &container["readinessProbe"]["httpGet"];
    let ready = format!(
        "http://127.0.0.1:{}{}",
        probe["port"],
        probe["path"].as_str().unwrap()
    );
    c.wait_until(
        &format!("ready on {ready}"),
        Duration::from_secs(60),
        || node.http_status(&ready) == 200,
    )?;
    let dump = || -> Result<Value> {
        Ok(serde_json::from_str(
            &node.http_body("http://127.0.0.1:15000/config_dump")?,
        )?)
    };
    let d = dump()?;
    assert_eq!(d["config"]["nodeName"], NODE, "{}", d["config"]);
    assert_eq!(d["config"]["serviceAccount"], "ztunnel");
    assert_eq!(d["config"]["clusterId"], env["ISTIO_META_CLUSTER_ID"]);
    assert_eq!(
        d["config"]["caAddress"],
        format!("https://{}", env["CA_ADDRESS"]),
        "{}",
        d["config"]
    );
    // The cluster's workloads arrived over xDS (TLS, verified with the mounted root, the token sent).
    c.wait_until(
        "the shop/app workload, with its node's locality, in the config dump",
        Duration::from_secs(30),
        || {
            dump().is_ok_and(|d| {
                d["workloads"].as_array().is_some_and(|ws| {
                    ws.iter().any(|w| {
                        w["name"] == "app"
                            && w["locality"]["region"] == "eu-west"
                            && w["locality"]["zone"] == "eu-west-1a"
                    })
                })
            })
        },
    )?;

    // A pod of this node handed over: its certificate comes from the CA, which reviews the projected token
    // (bound to the ztunnel's pod on this node) and lets it act for pods of its node only.
    let app_ns = Netns::new("imgp")?;
    let uid = api.get_json(&["pod", "app", "-n", "shop"])?["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let workload = cni_plugin::zds::wire::Workload {
        uid,
        name: "app".into(),
        namespace: "shop".into(),
        service_account: "default".into(),
    };
    zds.add(&workload, &app_ns.path())?;
    let identity = "spiffe://cluster.local/ns/shop/sa/default";
    c.wait_until("the pod's certificate", Duration::from_secs(30), || {
        dump().is_ok_and(|d| {
            d["certificates"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["identity"] == identity
                        && c["certChain"].as_array().is_some_and(|ch| !ch.is_empty())
                })
            })
        })
    })?;

    // istioctl reads our dump as it reads Istio's ztunnel's: the same rows, serials and dates.
    let file = dir.path().join("config_dump.json");
    let d = dump()?;
    std::fs::write(&file, serde_json::to_string(&d)?)?;
    let istioctl = run(
        "bash",
        &[root_script("istiod.sh").as_str(), "istioctl-path"],
    )?;
    let ctl = |args: &[&str]| -> Result<String> {
        let mut all = vec!["ztunnel-config"];
        all.extend_from_slice(args);
        all.extend(["--file", file.to_str().unwrap()]);
        run(istioctl.trim(), &all)
    };
    let workloads = ctl(&["workloads"])?;
    let row = |table: &str, first: &str, second: &str| -> Vec<String> {
        table
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .find(|c| c.len() > 2 && c[0] == first && c[1] == second)
            .unwrap_or_else(|| panic!("no {first} {second} row in:\n{table}"))
    };
    assert_eq!(
        row(&workloads, "shop", "app")[2..5],
        ["172.31.251.7", NODE, "None"],
        "{workloads}"
    );
    assert_eq!(row(&workloads, "shop", "app")[5], "HBONE", "{workloads}");
    let services = ctl(&["services"])?;
    assert_eq!(
        row(&services, "default", "kubernetes")[2],
        "10.96.0.1",
        "{services}"
    );
    let certs = ctl(&["certificates"])?;
    let leaf = &d["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["identity"] == identity)
        .unwrap()["certChain"][0];
    let serial_hex = {
        let out = run_stdin(
            "openssl",
            &["x509", "-noout", "-serial"],
            leaf["pem"].as_str().unwrap(),
        )?;
        out.trim()
            .trim_start_matches("serial=")
            .trim_start_matches('0')
            .to_lowercase()
    };
    let leaf_row = row(&certs, identity, "Leaf");
    assert_eq!(
        leaf_row[2..6],
        [
            "Available".to_owned(),
            "true".into(),
            serial_hex,
            leaf["expirationTime"].as_str().unwrap().into()
        ],
        "{certs}"
    );
    let all: Value = serde_json::from_str(&ctl(&["all", "-o", "json"])?)?;
    assert_eq!(all["certificates"][0]["identity"], identity);
    assert!(
        all["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "app" && w["protocol"] == "HBONE")
    );
    Ok(())
}

/// `data` of a ConfigMap once it exists (our control plane publishes `istio-ca-root-cert`).
fn wait_for_configmap(api: &ApiServer, ns: &str, name: &str) -> Result<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(cm) = api.get_json(&["configmap", name, "-n", ns]) {
            return Ok(cm["data"].clone());
        }
        if std::time::Instant::now() > deadline {
            bail!("ConfigMap {ns}/{name} was not published within 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `scripts/<name>` of the workspace.
fn root_script(name: &str) -> String {
    workspace_root()
        .join("scripts")
        .join(name)
        .display()
        .to_string()
}

/// `PROGRAM ARGS` with `stdin`, its stdout (failing with stderr).
fn run_stdin(program: &str, args: &[&str], stdin: &str) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{program}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes a host link on drop.
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}
