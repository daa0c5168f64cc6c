//! One local mesh for the bench's lifetime: `meshctl up` with a name unique to this process and
//! a temporary state directory, `exec` into its pods and nodes, and `meshctl down` when the
//! guard is dropped — on success, error and ctrl-c alike.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd;

const UP_LIMIT: Duration = Duration::from_secs(150);
const DOWN_LIMIT: Duration = Duration::from_secs(90);

/// A pod as `meshctl status --json` reports it.
#[derive(Debug, Clone)]
pub(crate) struct Pod {
    pub(crate) ip: Ipv4Addr,
    pub(crate) node: String,
    pub(crate) enrolled: bool,
}

#[derive(Debug)]
pub(crate) struct Mesh {
    meshctl: PathBuf,
    name: String,
    state: tempfile::TempDir,
    /// Manifests and command output.
    scratch: tempfile::TempDir,
    up_started: bool,
}

impl Mesh {
    pub(crate) fn new(meshctl: PathBuf) -> Result<Self> {
        if !meshctl.is_file() {
            bail!(
                "{} not found: cargo build --release -p meshctl -p ztunnel -p cni-plugin, or set MESHCTL_BIN",
                meshctl.display()
            );
        }
        Ok(Self {
            meshctl,
            name: format!("zbench-{}", std::process::id()),
            state: tempfile::Builder::new().prefix("zbench-state").tempdir()?,
            scratch: tempfile::Builder::new().prefix("zbench-work").tempdir()?,
            up_started: false,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    fn meshctl(&self) -> Command {
        let mut c = Command::new(&self.meshctl);
        c.arg("--mesh")
            .arg(&self.name)
            .arg("--state-dir")
            .arg(self.state.path());
        c
    }

    /// `meshctl up -f <manifests>`; from here on the guard removes the mesh.
    pub(crate) fn up(&mut self, manifests: &Path) -> Result<()> {
        self.up_started = true;
        let mut c = self.meshctl();
        c.arg("up")
            .arg("-f")
            .arg(manifests)
            .args(["--timeout", "120"]);
        cmd::run(&mut c, UP_LIMIT, self.scratch.path(), "meshctl-up").map(drop)
    }

    /// Runs `argv` in `target` (`NS/POD` or `node/NODE`) and returns its stdout.
    pub(crate) fn exec(&self, target: &str, argv: &[&str], limit: Duration) -> Result<String> {
        let mut c = self.meshctl();
        c.arg("exec").arg(target).arg("--").args(argv);
        cmd::run(&mut c, limit, self.scratch.path(), "meshctl")
    }

    /// The pod `ns/name` from `meshctl status --json`.
    pub(crate) fn pod(&self, ns: &str, name: &str) -> Result<Pod> {
        let mut c = self.meshctl();
        c.args(["status", "--json"]);
        let out = cmd::run(
            &mut c,
            Duration::from_secs(30),
            self.scratch.path(),
            "status",
        )?;
        let status: Value = serde_json::from_str(&out).context("meshctl status --json")?;
        let pods = status["pods"].as_array().context("status: no pods")?;
        let pod = pods
            .iter()
            .find(|p| p["namespace"] == ns && p["name"] == name)
            .with_context(|| format!("status: no pod {ns}/{name}"))?;
        Ok(Pod {
            ip: pod["ip"].as_str().context("pod ip")?.parse()?,
            node: pod["node"].as_str().context("pod node")?.to_owned(),
            enrolled: pod["enrolled"].as_bool().unwrap_or(false),
        })
    }

    /// The network namespace name of `node` (as in `ip netns list`).
    pub(crate) fn node_netns(&self, node: &str) -> String {
        format!("{}.node.{node}", self.name)
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if !self.up_started {
            return;
        }
        eprintln!("ztunnel-bench: meshctl --mesh {} down", self.name);
        let mut c = self.meshctl();
        c.arg("down");
        if let Err(e) =
            cmd::run_unstoppable(&mut c, DOWN_LIMIT, self.scratch.path(), "meshctl-down")
        {
            eprintln!(
                "ztunnel-bench: meshctl down failed: {e:#}; run `{} --mesh {} --state-dir {} down` by hand",
                self.meshctl.display(),
                self.name,
                self.state.path().display()
            );
        }
    }
}
