//! The images `scripts/images.sh` builds, run with Debian's podman as this machine allows (vfs storage, runc,
//! cgroupfs, rlimits within the hard limits), inside network namespaces the test makes; and a ZDS server (the
//! node agent's own, from `cni-plugin`) that hands pods to a ztunnel running in a container.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `localhost/mesh/<name>:dev`: what `scripts/images.sh` builds by default.
pub fn image(name: &str) -> String {
    format!("localhost/mesh/{name}:dev")
}

fn podman_command() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--storage-driver", "vfs", "--runtime", "runc"])
        .args(["--cgroup-manager", "cgroupfs"]);
    cmd
}

/// The flags every `podman run` here needs: this machine's hard limits are below podman's defaults.
pub const RUN_FLAGS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1000:1000",
];

/// Runs `podman ARGS` and returns its output (failing with stderr when it exits non-zero).
pub fn podman(args: &[&str]) -> Result<Output> {
    let out = podman_command()
        .args(args)
        .output()
        .context("running podman (scripts/images.sh installs it)")?;
    if !out.status.success() {
        bail!(
            "podman {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Fails with what to run when `name`'s image is missing.
pub fn require_image(name: &str) -> Result<()> {
    let reference = image(name);
    let out = podman_command()
        .args(["image", "exists", &reference])
        .status()
        .context("running podman")?;
    if !out.success() {
        bail!("image {reference} is missing: run `scripts/images.sh` (as root) first");
    }
    Ok(())
}

/// A network namespace named uniquely for the test, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Result<Netns> {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// `ip -n <ns> ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `PROGRAM ARGS` inside the namespace (`ip netns exec`), its output whatever its exit status.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .with_context(|| format!("ip netns exec {} {program}", self.name))
    }

    /// The HTTP status of `GET url` from inside the namespace (0 when nothing answered).
    pub fn http_status(&self, url: &str) -> u16 {
        self.exec(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-m",
                "2",
                url,
            ],
        )
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
    }

    /// The body of `GET url` from inside the namespace.
    pub fn http_body(&self, url: &str) -> Result<String> {
        let out = self.exec("curl", &["-sf", "-m", "5", url])?;
        if !out.status.success() {
            bail!("GET {url} in {}: {}", self.name, out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// `PROGRAM ARGS`, failing with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A detached container in a test's network namespace (`podman run --network ns:/var/run/netns/<name>`; not
/// under `ip netns exec`, whose private /sys hides the cgroup mounts runc needs), removed on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// Starts `image` with `options` (podman run flags) and `args` (after the image) inside `netns`.
    pub fn start(
        netns: &Netns,
        options: &[String],
        image: &str,
        args: &[String],
    ) -> Result<Container> {
        let name = format!("{}-c", netns.name);
        let _ = podman(&["rm", "-f", &name]);
        let mut cmd = podman_command();
        cmd.args(["run", "-d", "--name", &name])
            .arg("--network")
            .arg(format!("ns:{}", netns.path().display()))
            .args(RUN_FLAGS)
            .args(options)
            .arg(image)
            .args(args);
        let out = cmd.output().context("podman run")?;
        if !out.status.success() {
            // A container podman created but could not start is removed too.
            let _ = podman(&["rm", "-f", &name]);
            bail!(
                "podman run {image}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Container { name })
    }

    /// The container's log (stdout and stderr).
    pub fn logs(&self) -> String {
        podman_command()
            .args(["logs", &self.name])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    }

    /// Polls `check` every 200 ms until it holds or `timeout` passes (then fails with the container's log).
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn() -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !check() {
            if Instant::now() > deadline {
                bail!(
                    "{what} not within {timeout:?}; container log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman_command()
            .args(["rm", "-f", "-t", "2", &self.name])
            .output();
    }
}

/// The node agent's ZDS server on a socket in `dir` (`dir/ztunnel.sock`), which a container mounts as
/// `/var/run/ztunnel`; it has no pods to replay, so a connecting ztunnel gets an empty snapshot and becomes ready.
pub struct Zds {
    pub runtime: tokio::runtime::Runtime,
    pub handle: cni_plugin::zds::server::ZdsHandle,
    pub socket: PathBuf,
}

struct NoPods;

impl cni_plugin::zds::server::ReplaySource for NoPods {
    fn snapshot(&self) -> Vec<cni_plugin::zds::server::ReplayItem> {
        Vec::new()
    }
    fn replayed(&self, _uid: &str, _result: std::result::Result<(), String>) {}
}

impl Zds {
    pub fn serve(dir: &Path) -> Result<Zds> {
        let socket = dir.join("ztunnel.sock");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let handle = cni_plugin::zds::server::ZdsHandle::new(Duration::from_secs(10));
        let server = {
            let _guard = runtime.enter();
            cni_plugin::zds::server::ZdsServer::bind(&socket)?
        };
        runtime.spawn(server.run(handle.clone(), Arc::new(NoPods)));
        Ok(Zds {
            runtime,
            handle,
            socket,
        })
    }

    /// Hands the pod in `netns` to the connected ztunnel and waits for its ack.
    pub fn add(&self, workload: &cni_plugin::zds::wire::Workload, netns: &Path) -> Result<()> {
        self.runtime
            .block_on(self.handle.add(workload, netns))
            .context("ZDS add")
    }
}
