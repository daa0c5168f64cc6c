//! The Helm charts in `helm/`, checked with real tools and installed into a real API server:
//!
//! - `helm lint --strict` of every chart with its defaults and each value set below;
//! - `helm template` of the same, validated strictly against Kubernetes' own schemas (`kubernetes-validate`); the
//!   kinds it has no schema for (Gateway API's GatewayClass, the Prometheus Operator's ServiceMonitor) go to a real
//!   kube-apiserver with `kubectl apply --dry-run=server`, which validates them against their CRDs;
//! - the workloads' arguments are accepted by their binary, and every environment variable they get is one it
//!   reads (its `--help`);
//! - `checkov` finds nothing, and every skip carries a reason;
//! - `helm install` of base, control-plane, ztunnel and cni into a real kube-apiserver, and
//!   the control plane run with the chart ServiceAccount's token: it serves a translated mesh, leads and makes a
//!   waypoint under the chart's RBAC, and never becomes ready once one rule is removed.
//!
//! Needs `scripts/helm.sh build` and `scripts/kube.sh build` (`scripts/test.sh` runs both) and the workspace's
//! binaries (`cargo build --bins -p control-plane -p ztunnel -p cni-plugin`). No root; loopback only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tests::kube::ApiServer;
use tests::peers::{
    ControlPlaneProc, Proc, TempDir, control_plane_bin, free_port, http_get, workspace_root,
};

const CHARTS: [&str; 4] = ["base", "control-plane", "ztunnel", "cni"];
/// The charts installed into the test API server (which allows privileged pods, as real clusters do).
const INSTALLED: [&str; 4] = ["base", "control-plane", "ztunnel", "cni"];
/// The Kubernetes version the charts are rendered and validated for: scripts/kube.sh's.
const KUBE_VERSION: &str = "1.36.3";
const NAMESPACE: &str = "istio-system";
const HINT: &str = "run `scripts/helm.sh build` first";

/// Kinds whose schema is a CRD (Gateway API, Prometheus Operator), not Kubernetes': validated by the API server.
const CRD_KINDS: [&str; 2] = ["GatewayClass", "ServiceMonitor"];

/// The value sets each chart is rendered with besides its defaults: `(name, values.yaml)`.
fn value_sets(chart: &str) -> Vec<(&'static str, &'static str)> {
    const CUSTOM: &str = r#"
hub: registry.example/mesh
tag: "1.2.3"
imagePullPolicy: Always
imagePullSecrets: [registry-pull]
resources:
  requests: {cpu: 50m, memory: 64Mi}
  limits: {cpu: "1", memory: 256Mi}
tolerations:
  - {key: dedicated, operator: Equal, value: mesh, effect: NoSchedule}
priorityClassName: mesh-critical
nodeSelector: {pool: mesh}
podAnnotations: {team: mesh}
podLabels: {team: mesh}
"#;
    match chart {
        "base" => vec![
            ("no-gatewayclass", "gatewayClass: {enabled: false}\n"),
            ("labels", "labels: {team: mesh}\n"),
        ],
        "control-plane" => vec![
            (
                "replicas-servicemonitor",
                "replicas: 2\nserviceMonitor: {enabled: true, interval: 30s, labels: {release: prom}}\n",
            ),
            ("custom", CUSTOM),
            (
                "revision-env",
                "revision: canary\nenv: {MAX_WORKLOAD_CERT_TTL: 24h}\nca: {existingSecret: mesh-ca}\nwaypointImage: registry.example/waypoint@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
            ),
        ],
        "ztunnel" => vec![
            ("custom", CUSTOM),
            (
                "revision-env",
                "revision: canary\nenv: {SECRET_TTL: 12h}\nlogAsJson: true\nnetwork: net1\n",
            ),
            (
                "addresses",
                "xdsAddress: https://cp.example:15012\ncaAddress: https://ca.example:15012\n",
            ),
        ],
        "cni" => vec![
            ("custom", CUSTOM),
            (
                "revision-env",
                "revision: canary\nenv: {CNI_PLUGIN_LOG_LEVEL: debug}\nlogAsJson: true\ncniConfFileName: 10-calico.conflist\n",
            ),
            (
                "paths",
                "cniBinDir: /home/kubernetes/bin\ncniConfDir: /etc/cni/conf.d\nexcludeNamespaces: [kube-system, monitoring]\nambient: {dnsCapture: true, ipv6: false}\n",
            ),
        ],
        other => panic!("no value sets for chart {other}"),
    }
}

fn chart_dir(chart: &str) -> PathBuf {
    workspace_root().join("helm").join(chart)
}

/// The helm that `scripts/helm.sh build` built.
fn helm_bin() -> PathBuf {
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/helm.sh"))
        .arg("path")
        .output()
        .expect("cannot run scripts/helm.sh");
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(path.is_file(), "helm is not at {}: {HINT}", path.display());
    path
}

/// A tool of `.peers/helm-venv` (kubernetes-validate, checkov).
fn venv_tool(name: &str) -> PathBuf {
    let path = workspace_root().join(".peers/helm-venv/bin").join(name);
    assert!(path.is_file(), "{} is missing: {HINT}", path.display());
    path
}

/// Runs `cmd` with `stdin`; its stdout, or an error with its output.
fn run(mut cmd: Command, stdin: Option<&str>) -> Result<String> {
    let what = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("cannot run {what}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// `helm args…` with its home directories in `home` (nothing from the user's Helm set-up).
fn helm(home: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(helm_bin());
    cmd.args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    run(cmd, None)
}

/// A value set written to `<dir>/<chart>-<name>.yaml`.
fn values_file(dir: &Path, chart: &str, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(format!("{chart}-{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

/// `(value set name, values file)` for the defaults (`None`) and every value set of `chart`.
fn all_values(dir: &Path, chart: &str) -> Vec<(String, Option<PathBuf>)> {
    let mut out = vec![("defaults".to_string(), None)];
    for (name, yaml) in value_sets(chart) {
        out.push((name.to_string(), Some(values_file(dir, chart, name, yaml))));
    }
    out
}

/// `helm template` of `chart` (with its CRDs) for the test API server's Kubernetes version.
fn template(home: &Path, chart: &str, values: Option<&Path>) -> String {
    let dir = chart_dir(chart);
    let mut args = vec![
        "template",
        chart,
        dir.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        "--include-crds",
    ];
    if let Some(v) = values {
        args.extend(["--values", v.to_str().unwrap()]);
    }
    helm(home, &args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The documents of a multi-document YAML stream (`---` lines between them, as Helm writes it), as JSON; empty
/// documents dropped.
fn documents(yaml: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in yaml.lines() {
        if line == "---" || line.starts_with("--- ") {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.iter()
        .map(|doc| {
            serde_yaml_ng::from_str::<Value>(doc)
                .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{doc}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// JSON documents as one YAML stream (JSON is YAML).
fn stream(docs: &[&Value]) -> String {
    docs.iter().map(|d| format!("---\n{d}\n")).collect()
}

/// The containers of a Deployment or DaemonSet.
fn containers(doc: &Value) -> Vec<&Value> {
    doc["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}

#[test]
fn base_chart_crds_are_the_control_planes() {
    let root = workspace_root();
    let source = std::fs::read_to_string(root.join("control-plane/crds/meshctl.dev.yaml")).unwrap();
    let copy = std::fs::read_to_string(root.join("helm/base/crds/meshctl.dev.yaml")).unwrap();
    assert!(
        source == copy,
        "helm/base/crds/meshctl.dev.yaml differs from control-plane/crds/meshctl.dev.yaml: copy it again"
    );
}

#[test]
fn every_chart_passes_helm_lint_strict() {
    let work = TempDir::new("helm-lint");
    for chart in CHARTS {
        for (name, values) in all_values(work.path(), chart) {
            let dir = chart_dir(chart);
            let mut args = vec![
                "lint",
                "--strict",
                "--kube-version",
                KUBE_VERSION,
                dir.to_str().unwrap(),
            ];
            if let Some(v) = &values {
                args.extend(["--values", v.to_str().unwrap()]);
            }
            let out = helm(work.path(), &args)
                .unwrap_or_else(|e| panic!("helm lint {chart} ({name}): {e:#}"));
            assert!(
                !out.contains("[WARNING]") && !out.contains("[ERROR]"),
                "helm lint {chart} ({name}):\n{out}"
            );
        }
        // values.schema.json refuses a misspelt key and a value of the wrong type.
        let dir = chart_dir(chart);
        let wrong_type = if chart == "base" {
            "labels=5"
        } else {
            "podLabels=5"
        };
        for bad in ["hubb=x", wrong_type] {
            let refused = helm(
                work.path(),
                &["template", chart, dir.to_str().unwrap(), "--set", bad],
            );
            assert!(refused.is_err(), "{chart} accepts --set {bad}");
        }
    }
}

#[test]
fn rendered_charts_validate_against_kubernetes_schemas() {
    let work = TempDir::new("helm-validate");
    let validate = venv_tool("kubernetes-validate");
    // The validator is strict: an unknown field fails it.
    let bad = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80}], bogus: 1}\n";
    let mut cmd = Command::new(&validate);
    cmd.args(["-k", KUBE_VERSION, "--strict", "--quiet", "-"]);
    assert!(
        run(cmd, Some(bad)).is_err(),
        "kubernetes-validate accepted an unknown field"
    );
    let mut kinds = BTreeSet::new();
    for chart in CHARTS {
        for (name, values) in all_values(work.path(), chart) {
            let docs = documents(&template(work.path(), chart, values.as_deref()));
            assert!(!docs.is_empty(), "{chart} ({name}) renders nothing");
            let builtin: Vec<&Value> = docs
                .iter()
                .filter(|d| !CRD_KINDS.contains(&d["kind"].as_str().unwrap_or_default()))
                .collect();
            kinds.extend(
                docs.iter()
                    .filter_map(|d| d["kind"].as_str().map(str::to_owned)),
            );
            let mut cmd = Command::new(&validate);
            cmd.args(["-k", KUBE_VERSION, "--strict", "-"]);
            let out = run(cmd, Some(&stream(&builtin)))
                .unwrap_or_else(|e| panic!("{chart} ({name}) does not validate: {e:#}"));
            assert!(
                !out.contains("WARN") && !out.contains("ERROR"),
                "{chart} ({name}): {out}"
            );
        }
    }
    // What the charts make, and that the value sets reached the CRD kinds too.
    let expected = [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "DaemonSet",
        "Deployment",
        "GatewayClass",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ];
    assert_eq!(kinds, expected.iter().map(|k| k.to_string()).collect());
}

/// The program a chart's container runs, and the arguments that make it print its help (which names every
/// variable it reads).
fn program_of(chart: &str) -> (PathBuf, &'static [&'static str]) {
    match chart {
        "control-plane" => (control_plane_bin(), &["serve", "--help"]),
        "ztunnel" => (beside_tests("ztunnel", "ztunnel"), &["--help"]),
        "cni" => (beside_tests("cni-agent", "cni-plugin"), &["--help"]),
        other => panic!("no binary for {other}"),
    }
}

fn help_of(chart: &str) -> String {
    let (bin, args) = program_of(chart);
    let mut cmd = Command::new(bin);
    cmd.args(args);
    run(cmd, None).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Binary `name` of `package`, built beside this test binary.
fn beside_tests(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        bin.is_file(),
        "{} not found: build it first with `cargo build -p {package} --bin {name}`",
        bin.display()
    );
    bin
}

#[test]
fn workloads_get_only_arguments_and_variables_their_binaries_take() {
    let work = TempDir::new("helm-env");
    for chart in ["control-plane", "ztunnel", "cni"] {
        let help = help_of(chart);
        // The control plane's log filter is read by its main.rs, not by a flag.
        let main_rs = match chart {
            "control-plane" => {
                std::fs::read_to_string(workspace_root().join("control-plane/src/main.rs")).unwrap()
            }
            _ => String::new(),
        };
        let known = |var: &str| {
            help.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .any(|word| word == var)
                || main_rs.contains(&format!("from_env(\"{var}\")"))
        };
        for (name, values) in all_values(work.path(), chart) {
            let docs = documents(&template(work.path(), chart, values.as_deref()));
            let workloads: Vec<&Value> = docs
                .iter()
                .filter(|d| d["kind"] == "Deployment" || d["kind"] == "DaemonSet")
                .collect();
            assert_eq!(workloads.len(), 1, "{chart} ({name})");
            for c in containers(workloads[0]) {
                let vars: Vec<&str> = c["env"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|e| e["name"].as_str())
                    .collect();
                assert!(!vars.is_empty(), "{chart} ({name}): no env");
                // The binary takes the container's arguments: clap checks every flag and value before it prints
                // the help that `--help` at the end asks for.
                let args: Vec<&str> = c["args"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut cmd = Command::new(program_of(chart).0);
                cmd.args(&args).arg("--help");
                run(cmd, None).unwrap_or_else(|e| {
                    panic!("{chart} ({name}): the binary refuses the container's args: {e:#}")
                });
                for var in vars {
                    assert!(
                        known(var),
                        "{chart} ({name}) sets {var}, which its binary does not read:\n{help}"
                    );
                }
            }
        }
    }
}

#[test]
fn checkov_finds_nothing_and_every_skip_has_a_reason() {
    let checkov = venv_tool("checkov");
    let helm = helm_bin();
    let work = TempDir::new("helm-checkov");
    // checkov renders the charts with the helm on PATH.
    let path = format!(
        "{}:{}",
        helm.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(&checkov);
    cmd.arg("--config-file")
        .arg(workspace_root().join("helm/.checkov.yaml"))
        .arg("--directory")
        .arg(workspace_root().join("helm"))
        .args(["--quiet", "--compact", "--output", "json"])
        .current_dir(work.path())
        .env("PATH", path)
        .env("HOME", work.path())
        // Offline: no mapping download from the Prisma Cloud platform.
        .env("BC_SKIP_MAPPING", "TRUE");
    // Exit code 1 is "failed checks", which the report below shows; anything else is checkov failing to run.
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = cmd.output().expect("cannot run checkov");
    let text = String::from_utf8_lossy(&out.stdout);
    let reports: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON report ({e}, {}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // One report per framework: an object for one, a list for several.
    let report = match &reports {
        Value::Array(all) => all
            .iter()
            .find(|r| r["check_type"] == "helm")
            .unwrap_or_else(|| panic!("no helm report: {reports:#}")),
        one => one,
    };
    assert_eq!(report["check_type"], "helm", "{report:#}");
    let summary = &report["summary"];
    let failed = &report["results"]["failed_checks"];
    assert_eq!(
        summary["failed"], 0,
        "checkov failed checks: {failed:#}\nsummary: {summary}"
    );
    assert_eq!(summary["parsing_errors"], 0, "{summary}");
    assert!(
        summary["passed"].as_u64().unwrap_or(0) > 50,
        "checkov checked too little: {summary}"
    );
    assert!(summary["skipped"].as_u64().unwrap_or(0) > 0, "{summary}");

    // Every skip names a check and gives a reason.
    for chart in CHARTS {
        for doc in documents(&template(work.path(), chart, None)) {
            let Some(annotations) = doc["metadata"]["annotations"].as_object() else {
                continue;
            };
            for (key, value) in annotations {
                if !key.starts_with("checkov.io/skip") {
                    continue;
                }
                let value = value.as_str().unwrap_or_default();
                let (check, reason) = value.split_once('=').unwrap_or((value, ""));
                assert!(
                    check.starts_with("CKV_K8S_") && reason.trim().len() > 10,
                    "{chart}: {} {key}: {value:?} needs CKV_K8S_<n>=<reason>",
                    doc["kind"]
                );
            }
        }
    }
}

/// Polls `f` every 100 ms until it gives a value; fails after `limit`.
fn within<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A namespace in the mesh with a pod (status set as a kubelet would), its Service and a waypoint Gateway.
const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: reviews, namespace: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-1, namespace: shop, labels: {app: reviews}}
spec:
  nodeName: node-a
  serviceAccountName: reviews
  containers: [{name: reviews, image: reviews:1, ports: [{containerPort: 9080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop, labels: {istio.io/use-waypoint: waypoint}}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
# Valid for the CRD, but not something the node tunnels enforce: rejected, with a Warning Event on it.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: shop}
spec:
  action: AUDIT
  rules: [{to: [{operation: {ports: ["9080"]}}]}]
"#;

/// Installs [`INSTALLED`] (control-plane with its ServiceMonitor) and checks what they made.
fn install_charts(api: &ApiServer, home: &Path) {
    let crd = run(
        {
            let mut c = Command::new("bash");
            c.arg(workspace_root().join("scripts/helm.sh"))
                .arg("servicemonitor-crd");
            c
        },
        None,
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{HINT}"));
    api.kubectl(&["create", "-f", crd.trim()]).unwrap();
    api.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
        "--timeout=60s",
    ])
    .unwrap();
    api.kubectl(&["create", "namespace", NAMESPACE]).unwrap();
    let kubeconfig = api.kubeconfig().to_str().unwrap().to_owned();
    for chart in INSTALLED {
        let dir = chart_dir(chart);
        let mut args = vec![
            "install",
            chart,
            dir.to_str().unwrap(),
            "--namespace",
            NAMESPACE,
            "--kubeconfig",
            &kubeconfig,
            "--timeout",
            "60s",
        ];
        if chart == "control-plane" {
            args.extend(["--set", "serviceMonitor.enabled=true"]);
        }
        helm(home, &args).unwrap_or_else(|e| panic!("helm install {chart}: {e:#}"));
    }
    let releases: Value = serde_json::from_str(
        &helm(
            home,
            &[
                "list",
                "-n",
                NAMESPACE,
                "--kubeconfig",
                &kubeconfig,
                "-o",
                "json",
            ],
        )
        .unwrap(),
    )
    .unwrap();
    for chart in INSTALLED {
        let release = releases
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == chart)
            .unwrap_or_else(|| panic!("no release {chart}: {releases:#}"));
        assert_eq!(release["status"], "deployed", "{release}");
    }
    for (kind, name) in [
        ("deployment", "control-plane"),
        ("service", "control-plane"),
        ("serviceaccount", "control-plane"),
        ("role", "control-plane"),
        ("rolebinding", "control-plane"),
        ("servicemonitor", "control-plane"),
        ("daemonset", "ztunnel"),
        ("serviceaccount", "ztunnel"),
        ("daemonset", "istio-cni-node"),
        ("serviceaccount", "istio-cni"),
    ] {
        api.get_json(&[kind, name, "-n", NAMESPACE])
            .unwrap_or_else(|e| panic!("{kind} {name}: {e:#}"));
    }
    for (kind, name) in [
        ("clusterrole", "control-plane-istio-system"),
        ("clusterrolebinding", "control-plane-istio-system"),
        ("gatewayclass", "istio-waypoint"),
        ("crd", "faultinjections.meshctl.dev"),
        ("crd", "localratelimits.meshctl.dev"),
    ] {
        api.get_json(&[kind, name])
            .unwrap_or_else(|e| panic!("{kind} {name}: {e:#}"));
    }
    let service = api
        .get_json(&["service", "control-plane", "-n", NAMESPACE])
        .unwrap();
    let ports: BTreeSet<(String, u64)> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["port"].as_u64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("grpc-xds", 15010),
        ("https-dns", 15012),
        ("http-monitoring", 15014),
    ];
    assert_eq!(
        ports,
        want.iter().map(|(n, p)| (n.to_string(), *p)).collect()
    );
}

/// The kinds kubernetes-validate has no schema for, from every value set, through the API server's validation.
fn dry_run_crd_kinds(api: &ApiServer, home: &Path) {
    let mut seen = BTreeSet::new();
    for chart in CHARTS {
        for (name, values) in all_values(home, chart) {
            let docs = documents(&template(home, chart, values.as_deref()));
            for doc in docs
                .iter()
                .filter(|d| CRD_KINDS.contains(&d["kind"].as_str().unwrap_or_default()))
            {
                seen.insert(doc["kind"].as_str().unwrap().to_owned());
                api.kubectl_stdin(
                    &["apply", "--dry-run=server", "--validate=strict", "-f", "-"],
                    &doc.to_string(),
                )
                .unwrap_or_else(|e| panic!("{chart} ({name}): {e:#}"));
            }
        }
    }
    assert_eq!(seen, CRD_KINDS.iter().map(|k| k.to_string()).collect());
    // The API server does validate them: a field the CRD does not have is refused.
    let bad = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "bad", "namespace": NAMESPACE},
        "spec": {"selector": {}, "endpoints": [{"port": "x", "bogus": 1}]},
    });
    assert!(
        api.kubectl_stdin(
            &["apply", "--dry-run=server", "--validate=strict", "-f", "-"],
            &bad.to_string()
        )
        .is_err(),
        "the API server accepted an unknown ServiceMonitor field"
    );
}

/// The leader Lease's holder and last renewal.
fn lease(api: &ApiServer) -> Option<(String, String)> {
    let lease = api
        .get_json(&["lease", "control-plane-leader", "-n", NAMESPACE])
        .ok()?;
    let spec = &lease["spec"];
    Some((
        spec["holderIdentity"].as_str()?.to_owned(),
        spec["renewTime"].as_str()?.to_owned(),
    ))
}

fn condition_true(conditions: &Value, kind: &str) -> bool {
    conditions.as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    })
}

/// The chart's ClusterRole without `pods` in its list/watch rule.
fn without_pod_watch(role: &Value) -> Value {
    let mut role = role.clone();
    let rules = role["rules"].as_array_mut().unwrap();
    let rule = rules
        .iter_mut()
        .find(|r| {
            r["apiGroups"] == json!([""])
                && r["verbs"] == json!(["list", "watch"])
                && r["resources"].as_array().unwrap().contains(&json!("pods"))
        })
        .expect("the ClusterRole has a core list/watch rule with pods");
    rule["resources"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r != "pods");
    role["metadata"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "name" || k == "labels" || k == "annotations");
    role
}

#[test]
fn installed_charts_run_the_control_plane_on_their_rbac() {
    let work = TempDir::new("helm-install");
    let api = ApiServer::start("helm_install").unwrap();
    install_charts(&api, work.path());
    dry_run_crd_kinds(&api, work.path());

    api.apply(MESH).unwrap();
    api.set_pod_status("shop", "reviews-1", "10.244.0.9", true)
        .unwrap();
    // The chart's ServiceAccount, authenticated by a token as in its pod: the API server enforces the chart's RBAC.
    let token = api
        .create_token(
            NAMESPACE,
            "control-plane",
            "https://kubernetes.default.svc.cluster.local",
            None,
        )
        .unwrap();
    let kubeconfig = api.token_kubeconfig("control-plane", &token).unwrap();
    let env = [
        ("POD_NAME", "control-plane-0"),
        ("POD_NAMESPACE", NAMESPACE),
    ];
    let run_dir = work.path().join("allowed");
    std::fs::create_dir_all(&run_dir).unwrap();
    // The shortest Lease, renewed every second: its renewal (`update`) is exercised within the test. The CA root
    // Secret as the chart names it.
    let shared_root = ["--ca-root-secret", "istio-ca-secret"];
    let cp = ControlPlaneProc::start_kube(
        &kubeconfig,
        &run_dir,
        &["--lease-duration", "3s", shared_root[0], shared_root[1]],
        &env,
    );
    let status = cp.wait_status(
        "the pod and Service translated",
        Duration::from_secs(20),
        |s| {
            s["generation"].as_u64().unwrap_or(0) > 0
                && s["summary"]["workloads"].as_u64().unwrap_or(0) >= 1
                && s["summary"]["services"].as_u64().unwrap_or(0) >= 1
        },
    );
    assert!(status["error"].is_null(), "{status:#}");

    // The Role: it leads. The ClusterRole: as leader it makes the waypoint and writes the Gateway's status.
    let (holder, renewed) = within("the leader Lease", Duration::from_secs(15), || lease(&api));
    assert_eq!(holder, "control-plane-0");
    for kind in ["serviceaccount", "deployment", "service", "configmap"] {
        let name = if kind == "configmap" {
            "istio-ca-root-cert"
        } else {
            "waypoint"
        };
        within(&format!("waypoint {kind}"), Duration::from_secs(15), || {
            api.get_json(&[kind, name, "-n", "shop"]).ok()
        });
    }
    within("Gateway Programmed", Duration::from_secs(15), || {
        let gw = api.get_json(&["gateway", "waypoint", "-n", "shop"]).ok()?;
        condition_true(&gw["status"]["conditions"], "Programmed").then_some(())
    });
    within(
        "a Warning Event on the rejected policy",
        Duration::from_secs(15),
        || {
            let events = api
                .get_json(&[
                    "events",
                    "-n",
                    "shop",
                    "--field-selector",
                    "involvedObject.name=audit",
                ])
                .ok()?;
            events["items"]
                .as_array()?
                .iter()
                .any(|e| e["type"] == "Warning" && e["reason"] == "ConfigurationRejected")
                .then_some(())
        },
    );
    within("the Lease renewed", Duration::from_secs(10), || {
        let (holder, now) = lease(&api)?;
        (holder == "control-plane-0" && now != renewed).then_some(())
    });
    // A second replica (its own empty CA dir) takes the root the first stored in the Secret: both sign under one
    // root, the one published in istio-ca-root-cert.
    let second_dir = work.path().join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let second = ControlPlaneProc::start_kube(
        &kubeconfig,
        &second_dir,
        &shared_root,
        &[
            ("POD_NAME", "control-plane-1"),
            ("POD_NAMESPACE", NAMESPACE),
        ],
    );
    let secret = api
        .get_json(&["secret", "istio-ca-secret", "-n", NAMESPACE])
        .unwrap();
    assert_eq!(secret["type"], "istio.io/ca-root");
    let b64 = secret["data"]["ca-cert.pem"].as_str().unwrap();
    let decoded = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b64.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let root_pem = String::from_utf8(decoded.stdout).unwrap();
    let published = api
        .get_json(&["configmap", "istio-ca-root-cert", "-n", "shop"])
        .unwrap();
    assert_eq!(published["data"]["root-cert.pem"], root_pem.as_str());
    assert!(
        cp.proc
            .stderr()
            .contains("new CA root stored in its Secret")
    );
    assert!(
        second
            .proc
            .stderr()
            .contains("CA root read from its Secret")
    );
    assert!(!second_dir.join("ca/root-key.pem").exists());
    let log = format!("{}{}", cp.proc.stderr(), second.proc.stderr());
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the chart's RBAC refused the control plane something:\n{log}"
    );
    drop((cp, second));

    // Without list/watch on pods the control plane cannot read the cluster: it never serves a translation.
    let role = api
        .get_json(&["clusterrole", "control-plane-istio-system"])
        .unwrap();
    api.kubectl_stdin(
        &["replace", "-f", "-"],
        &without_pod_watch(&role).to_string(),
    )
    .unwrap();
    within(
        "the API server enforcing the changed role",
        Duration::from_secs(10),
        || {
            let out = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["auth", "can-i", "list", "pods", "--all-namespaces"])
                .output()
                .ok()?;
            (String::from_utf8_lossy(&out.stdout).trim() == "no").then_some(())
        },
    );
    let run_dir = work.path().join("denied");
    std::fs::create_dir_all(&run_dir).unwrap();
    let (mut denied, admin) = spawn_control_plane(&kubeconfig, &run_dir);
    // What it does: its Pod watcher's initial list is refused, which it logs as an error (the operator must
    // act) and retries with back-off.
    within(
        "the control plane logging the refused pod list",
        Duration::from_secs(15),
        || {
            assert!(denied.is_running(), "it exited:\n{}", denied.stderr());
            denied
                .stderr()
                .lines()
                .any(|l| {
                    l.contains("ERROR")
                        && l.contains("watch forbidden")
                        && l.contains("kind=\"Pod\"")
                        && l.contains("cannot list resource \"pods\"")
                        && l.contains("Forbidden")
                })
                .then_some(())
        },
    );
    // It keeps running and retrying, and never serves a translation.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let (code, body) = http_get(admin, "/ready", Duration::from_secs(2)).unwrap();
        assert_ne!(code, 200, "ready without pods list/watch: {body}");
        let (_, status) = http_get(admin, "/debug/status", Duration::from_secs(2)).unwrap();
        let status: Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["generation"], 0, "{status:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(denied.is_running(), "{}", denied.stderr());
}

/// `control-plane serve` on the API server of `kubeconfig`, on free loopback ports, until it serves (a port picked
/// free can be taken before it binds: then it exits, and another pair is tried). The process and its admin port.
fn spawn_control_plane(kubeconfig: &Path, run_dir: &Path) -> (Proc, u16) {
    for attempt in 0..3 {
        let admin = free_port();
        let mut cmd = Command::new(control_plane_bin());
        cmd.arg("serve")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .arg("--ca-dir")
            .arg(run_dir.join("ca"))
            .envs([
                ("POD_NAME", "control-plane-1"),
                ("POD_NAMESPACE", NAMESPACE),
            ])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let mut proc = Proc::spawn(&format!("control-plane-{attempt}"), cmd, run_dir);
        let serving = within("the control plane serving", Duration::from_secs(20), || {
            if proc.stderr().contains("control plane serving") {
                Some(true)
            } else if !proc.is_running() {
                Some(false)
            } else {
                None
            }
        });
        if serving {
            return (proc, admin);
        }
        eprintln!("control plane exited at start:\n{}", proc.stderr());
    }
    panic!("the control plane exited at start three times")
}
