//! The netns harness for end-to-end tests: runs the real `meshctl` binary on a mesh whose name is unique to the
//! test, and removes that mesh when the test ends, also when it panics.
//!
//! Tests need root (they create network namespaces); without it they fail with a message that says so.
//!
//! Beside it, needing no root: [`peers`] runs the control plane and real third-party xDS clients as processes on
//! 127.0.0.1, [`kube`] a real Kubernetes API server (kube-apiserver + etcd, see `scripts/kube.sh`) and [`istiod`]
//! real istiod against it (`scripts/istiod.sh`). [`podman`] (root) runs the images of `scripts/images.sh` in
//! test network namespaces, with the node agent's ZDS server handing them pods.

pub mod istiod;
pub mod kube;
pub mod peers;
pub mod podman;
pub mod waypoint;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails the test unless it runs as root, and unless the system tools the local mesh drives are installed.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "end-to-end tests create network namespaces and need root: run them as root (see README.md)"
    );
    for tool in [
        "ip",
        "nft",
        "sysctl",
        "curl",
        "python3",
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
    ] {
        let found = if tool.starts_with('/') {
            Path::new(tool).exists()
        } else {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        assert!(
            found,
            "{tool} is missing: run scripts/install-deps.sh (as root) first"
        );
    }
}

/// The `meshctl` binary: `$MESHCTL_BIN`, else the one built beside this test binary (`cargo build -p meshctl`).
pub fn meshctl_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MESHCTL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/meshctl
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("meshctl"))
        .unwrap_or_default();
    assert!(
        bin.is_file(),
        "{} not found: build it first with `cargo build -p meshctl`",
        bin.display()
    );
    bin
}

/// A mesh for one test. Dropping it runs `meshctl down`.
pub struct TestMesh {
    pub name: String,
    dir: PathBuf,
    down_done: bool,
}

impl TestMesh {
    /// A fresh, unique mesh name (not yet up) and a directory for its manifests.
    pub fn new(test: &str) -> TestMesh {
        require_root();
        let short: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect::<String>()
            .to_lowercase();
        let name = format!(
            "t{short}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("meshctl-test-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TestMesh {
            name,
            dir,
            down_done: false,
        }
    }

    /// Writes `yaml` to a manifest file of this test and returns its path.
    pub fn manifest(&self, file: &str, yaml: &str) -> PathBuf {
        let path = self.dir.join(file);
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// Runs `meshctl --mesh <name> args…`.
    pub fn meshctl(&self, args: &[&str]) -> Output {
        Command::new(meshctl_bin())
            .args(["--mesh", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run meshctl: {e}"))
    }

    /// `meshctl up -f <yaml written to a file> --nodes N`; fails the test with meshctl's stderr if it fails.
    pub fn up(&self, yaml: &str, nodes: u32) -> String {
        self.up_with(yaml, nodes, &[])
    }

    /// [`TestMesh::up`] with more flags (`--kubeconfig PATH`).
    pub fn up_with(&self, yaml: &str, nodes: u32, extra: &[&str]) -> String {
        let path = self.manifest("up.yaml", yaml);
        let nodes = nodes.to_string();
        let mut args = vec!["up", "-f", path_str(&path), "--nodes", &nodes];
        args.extend_from_slice(extra);
        must(&self.meshctl(&args), "meshctl up")
    }

    pub fn status(&self) -> Value {
        let out = self.meshctl(&["status", "--json"]);
        serde_json::from_str(&must(&out, "meshctl status --json"))
            .unwrap_or_else(|e| panic!("status JSON: {e}"))
    }

    /// `meshctl exec <target> -- argv…`.
    pub fn exec(&self, target: &str, argv: &[&str]) -> Output {
        let mut args = vec!["exec", target, "--"];
        args.extend_from_slice(argv);
        self.meshctl(&args)
    }

    /// An HTTP GET with curl from inside `target`; the body, or an error.
    pub fn http_get(&self, target: &str, url: &str) -> Result<String> {
        let out = self.exec(target, &["curl", "-sS", "--max-time", "3", url]);
        if !out.status.success() {
            bail!(
                "curl {url} from {target}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The pod object of the status report.
    pub fn pod(&self, ns: &str, name: &str) -> Value {
        let st = self.status();
        find(&st["pods"], |p| p["namespace"] == ns && p["name"] == name)
            .unwrap_or_else(|| panic!("pod {ns}/{name} not in status: {st:#}"))
    }

    /// The status report's pod that runs the waypoint of Gateway `ns/gateway` (`"waypoint": "<gateway>"`).
    pub fn waypoint_pod(&self, ns: &str, gateway: &str) -> Value {
        let st = self.status();
        find(&st["pods"], |p| {
            p["namespace"] == ns && p["waypoint"] == gateway
        })
        .unwrap_or_else(|| panic!("no waypoint pod for {ns}/{gateway} in status: {st:#}"))
    }

    /// The log of container `container` of pod `ns/pod` (empty if there is none yet), e.g. a waypoint's
    /// `waypoint.log`, to show when a test fails.
    pub fn pod_log(&self, ns: &str, pod: &str, container: &str) -> String {
        let Ok(paths) = meshctl::paths::MeshPaths::new(&self.name, None) else {
            return String::new();
        };
        let path = paths.pod_dir(ns, pod).join(format!("{container}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Waits (bounded) until `f` holds for the status report.
    pub fn wait_status(&self, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.status();
            if f(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {st:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn down(&mut self) -> Output {
        self.down_done = true;
        self.meshctl(&["down"])
    }
}

impl Drop for TestMesh {
    fn drop(&mut self) {
        if !self.down_done {
            let out = self.meshctl(&["down"]);
            if !out.status.success() {
                eprintln!(
                    "cleanup of mesh {}: {}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// stdout of a successful command; otherwise fails the test with its stderr.
pub fn must(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

pub fn find(list: &Value, f: impl Fn(&Value) -> bool) -> Option<Value> {
    list.as_array()?.iter().find(|v| f(v)).cloned()
}

/// Network namespaces whose name starts with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    meshctl::netns::list_with_prefix(prefix)
}

/// The names of the links of the root network namespace.
pub fn root_links() -> Result<Vec<String>> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .context("ip link")?;
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Live (not zombie) processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'));
            !zombie
                && String::from_utf8_lossy(&cmd).contains(marker)
                && *pid != std::process::id() as i32
        })
        .collect()
}

/// An HTTP server for a pod: answers GET with `<POD_NAME> saw <client address>`. `marker` ends up on its command
/// line so a test can find its process.
pub fn echo_container(marker: &str) -> String {
    format!(
        r#"
        - name: http
          command: ["python3", "-u", "-c"]
          args:
            - |
              import http.server, os
              class Echo(http.server.BaseHTTPRequestHandler):
                  protocol_version = "HTTP/1.1"
                  def do_GET(self):
                      body = f"{{os.environ['POD_NAME']}} saw {{self.client_address[0]}}\n".encode()
                      self.send_response(200)
                      self.send_header("Content-Length", str(len(body)))
                      self.end_headers()
                      self.wfile.write(body)
                  def log_message(self, *args):
                      pass
              http.server.ThreadingHTTPServer(("", 8080), Echo).serve_forever()
            - "{marker}"
          env:
            - name: POD_NAME
              valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
          ports: [{{name: http, containerPort: 8080}}]"#
    )
}
