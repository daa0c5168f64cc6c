//! A real Kubernetes API server for a test: `scripts/kube.sh up` (kube-apiserver built from `k8s.io/kubernetes`,
//! its own etcd, the Gateway API, Istio and `control-plane/crds` CRDs installed and Established) in a directory
//! unique to the test, and `scripts/kube.sh down` when the handle drops, also when the test panics. If the test
//! process is killed instead, a watchdog that `up` leaves behind runs `down`.
//!
//! RBAC is enforced (`--authorization-mode=Node,RBAC`); [`ApiServer::kubectl`] is cluster-admin, and
//! [`ApiServer::token_kubeconfig`] makes a kubeconfig that authenticates with a ServiceAccount token, for clients
//! whose permissions a test checks. There is no controller-manager, scheduler or kubelet: create every
//! ServiceAccount a pod names (`default` included) before the pod, set a pod's status with
//! [`ApiServer::set_pod_status`], and do not wait for namespace deletion or garbage collection.
//!
//! Needs `scripts/kube.sh build` to have run once on the machine (`scripts/test.sh` runs it). No root needed.
//! Uses only std, anyhow and serde_json: cni-plugin's end-to-end tests compile this file in by path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How long one kubectl request may take before it fails.
const REQUEST_TIMEOUT: &str = "--request-timeout=30s";

/// `scripts/kube.sh` of this checkout.
fn kube_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kube.sh")
}

/// A running kube-apiserver with its etcd; dropping it stops both and removes its directory.
#[derive(Debug)]
pub struct ApiServer {
    dir: PathBuf,
    kubeconfig: PathBuf,
    url: String,
    ca_file: PathBuf,
    down_done: bool,
}

impl ApiServer {
    /// Starts an API server in a fresh directory named after `test` (and this process), with the CRDs installed.
    /// The error carries `kube.sh`'s output, which ends with the tail of the log of whatever failed.
    pub fn start(test: &str) -> Result<ApiServer> {
        let short: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(24)
            .collect();
        let dir = std::env::temp_dir().join(format!(
            "kube-{short}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(kube_sh())
            .arg("up")
            .arg(&dir)
            .env("KUBE_OWNER_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .context("cannot run scripts/kube.sh")?;
        if !out.status.success() {
            // Whatever started before the failure is stopped (kube.sh recorded it in the directory).
            let _ = down(&dir);
            bail!(
                "scripts/kube.sh up {} failed ({}); if kube-apiserver is missing, run `scripts/kube.sh build`\n{}{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let env = std::fs::read_to_string(dir.join("env"))
            .with_context(|| format!("{}/env", dir.display()))?;
        let var = |key: &str| -> Result<String> {
            env.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
                .with_context(|| format!("{key} is not in {}/env", dir.display()))
        };
        let server = ApiServer {
            kubeconfig: PathBuf::from(var("KUBECONFIG")?),
            url: var("KUBE_APISERVER_URL")?,
            ca_file: PathBuf::from(var("KUBE_CA_FILE")?),
            dir,
            down_done: false,
        };
        eprintln!(
            "kube-apiserver for {test} up at {} in {:.1?} ({})",
            server.url,
            started.elapsed(),
            server.dir.display()
        );
        Ok(server)
    }

    /// The directory holding the API server's state, certificates and logs (`*.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A cluster-admin kubeconfig (client certificate of `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA that signed the API server's serving certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Runs kubectl as cluster-admin; its stdout, or an error with its stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_with(&self.kubeconfig, args, None)
    }

    /// Runs kubectl as cluster-admin with `stdin` as its input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        self.kubectl_with(&self.kubeconfig, args, Some(stdin))
    }

    /// Runs kubectl with another kubeconfig, e.g. one from [`ApiServer::token_kubeconfig`].
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Result<String> {
        self.kubectl_with(kubeconfig, args, None)
    }

    /// `kubectl apply -f -` of `yaml` (one or more documents).
    pub fn apply(&self, yaml: &str) -> Result<String> {
        self.kubectl_stdin(&["apply", "-f", "-"], yaml)
    }

    /// `kubectl get <args> -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Result<Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&all)?;
        serde_json::from_str(&out)
            .with_context(|| format!("kubectl {all:?} printed no JSON: {out}"))
    }

    /// Sets what a kubelet would for a started pod, through the status subresource: phase Running, `podIP` and
    /// `podIPs`, and the Ready and ContainersReady conditions (`ready`).
    pub fn set_pod_status(&self, ns: &str, name: &str, ip: &str, ready: bool) -> Result<()> {
        let ready = if ready { "True" } else { "False" };
        let patch = json!({
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [
                    {"type": "Ready", "status": ready},
                    {"type": "ContainersReady", "status": ready},
                ],
            }
        });
        self.kubectl(&[
            "patch",
            "pod",
            name,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ])?;
        Ok(())
    }

    /// A token of ServiceAccount `ns/sa` for `audience` (TokenRequest), bound to pod `ns/<bound_pod>` if given.
    pub fn create_token(
        &self,
        ns: &str,
        sa: &str,
        audience: &str,
        bound_pod: Option<&str>,
    ) -> Result<String> {
        let mut args = vec!["create", "token", sa, "-n", ns, "--audience", audience];
        if let Some(pod) = bound_pod {
            args.extend_from_slice(&["--bound-object-kind", "Pod", "--bound-object-name", pod]);
        }
        Ok(self.kubectl(&args)?.trim().to_string())
    }

    /// The `status` of a TokenReview of `token` for `audiences` (the API server's audiences when empty).
    pub fn token_review(&self, token: &str, audiences: &[&str]) -> Result<Value> {
        let review = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences},
        });
        let out = self.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &review.to_string())?;
        let review: Value =
            serde_json::from_str(&out).with_context(|| format!("TokenReview answer: {out}"))?;
        Ok(review["status"].clone())
    }

    /// Writes `<dir>/<name>.kubeconfig`, which authenticates with `token` (a ServiceAccount token whose audience
    /// the API server accepts: its issuer URL or `istio-ca`), and returns its path.
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> Result<PathBuf> {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "mesh-test", "cluster": {
                "server": self.url,
                "certificate-authority": self.ca_file,
            }}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "mesh-test", "user": name}}],
            "current-context": name,
        });
        std::fs::write(&path, config.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// The last lines of the API server's and etcd's logs, for a failure message.
    pub fn log_tails(&self) -> String {
        ["kube-apiserver", "etcd", "crds"]
            .iter()
            .map(|name| {
                let path = self.dir.join(format!("{name}.log"));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                format!("---- {} ----\n{tail}\n", path.display())
            })
            .collect()
    }

    /// Stops the API server and etcd and removes the directory (what dropping does, with the error returned).
    pub fn stop(&mut self) -> Result<()> {
        self.down_done = true;
        down(&self.dir)
    }

    fn kubectl_with(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String> {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg(REQUEST_TIMEOUT)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot run kubectl (is it on PATH?)")?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .context("writing kubectl's stdin")?;
        }
        let out = child.wait_with_output().context("waiting for kubectl")?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if !self.down_done
            && let Err(e) = down(&self.dir)
        {
            eprintln!("cleanup of the API server in {}: {e:#}", self.dir.display());
        }
    }
}

/// `scripts/kube.sh down DIR`.
fn down(dir: &Path) -> Result<()> {
    let out: Output = Command::new("bash")
        .arg(kube_sh())
        .arg("down")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run scripts/kube.sh")?;
    if !out.status.success() {
        bail!(
            "scripts/kube.sh down {} failed ({}): {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
