//! Helpers for tests that run the control plane as a process on 127.0.0.1 and drive real third-party peers
//! (Python grpcio, Node grpc-js-xds) against it. No root needed.
//!
//! Every process is killed when its handle drops (also when the test panics), and with `PR_SET_PDEATHSIG` when
//! the test thread that started it dies; every wait is bounded.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

const INSTALL_HINT: &str = "run scripts/install-deps.sh to install the real peers into .peers/";

/// The checkout this test crate is part of.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `tests/peers/<file>`: the peer programs the tests drive.
pub fn peer_script(file: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(file);
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

/// The Python of `.peers/venv`, checked to import grpc; fails the test (with the install hint) otherwise.
pub fn peer_python() -> PathBuf {
    let python = workspace_root().join(".peers/venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import grpc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import grpc: {INSTALL_HINT}",
        python.display()
    );
    python
}

/// `.peers/node/node_modules` holding @grpc/grpc-js and @grpc/grpc-js-xds, with `node` on PATH; fails the test
/// (with the install hint) otherwise.
pub fn peer_node_modules() -> PathBuf {
    let modules = workspace_root().join(".peers/node/node_modules");
    for m in ["@grpc/grpc-js", "@grpc/grpc-js-xds"] {
        assert!(
            modules.join(m).join("package.json").is_file(),
            "{m} is not in {}: {INSTALL_HINT}",
            modules.display()
        );
    }
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(node, "node is not on PATH: {INSTALL_HINT}");
    modules
}

/// The `control-plane` binary: `$CONTROL_PLANE_BIN`, else the one built beside this test binary.
pub fn control_plane_bin() -> PathBuf {
    built_bin("control-plane", "CONTROL_PLANE_BIN", "control-plane")
}

/// The `waypoint` binary: `$WAYPOINT_BIN`, else the one built beside this test binary.
pub fn waypoint_bin() -> PathBuf {
    built_bin("waypoint", "WAYPOINT_BIN", "waypoint")
}

/// `$env`, else binary `name` of package `package` built beside this test binary.
fn built_bin(name: &str, env: &str, package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .unwrap_or_default();
    assert!(
        bin.is_file(),
        "{} not found: build it first with `cargo build -p {package} --bin {name}`",
        bin.display()
    );
    bin
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// A directory under the system temp dir, unique to this test, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "{test}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to `<dir>/<file>` atomically: a temporary file (whose name a manifest reader ignores) renamed
    /// over the target, so a watcher never reads half a file.
    pub fn write_atomic(&self, file: &str, text: &str) -> PathBuf {
        let path = self.0.join(file);
        let tmp = self.0.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
        std::fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop. Its stdout lines arrive on a channel; its stderr goes to a file that
/// [`Proc::stderr`] reads back for failure messages.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr_file: PathBuf,
}

impl Proc {
    /// Starts `cmd` with piped stdin/stdout and stderr to `<log_dir>/<name>.stderr`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        let stderr_file = log_dir.join(format!("{name}.stderr"));
        let stderr = std::fs::File::create(&stderr_file)
            .unwrap_or_else(|e| panic!("{}: {e}", stderr_file.display()));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, lines) = channel();
        if let Some(out) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Proc {
            name: name.to_string(),
            child,
            stdin,
            lines,
            stderr_file,
        }
    }

    /// Writes one line to the process's stdin.
    pub fn send_line(&mut self, line: &str) {
        let name = &self.name;
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{name}: stdin already closed"));
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            panic!("{name}: writing to stdin: {e}\nstderr:\n{}", self.stderr());
        }
    }

    /// The next stdout line, waiting at most `timeout`; fails the test (with the stderr) if none comes.
    pub fn next_line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: no output within {timeout:?}\nstderr:\n{}",
                self.name,
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait_exit(Duration::from_secs(2));
                panic!(
                    "{}: exited ({status}) without the expected output\nstderr:\n{}",
                    self.name,
                    self.stderr()
                )
            }
        }
    }

    /// The next stdout line parsed as JSON.
    pub fn next_json(&mut self, timeout: Duration) -> Value {
        let line = self.next_line(timeout);
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line:?}", self.name))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the process wrote on stderr so far (the last 20000 bytes).
    pub fn stderr(&self) -> String {
        let text = std::fs::read(&self.stderr_file).unwrap_or_default();
        let start = text.len().saturating_sub(20_000);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// Waits (bounded) for the exit; kills the process if it does not end in time. A description of the end.
    fn wait_exit(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return s.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return "killed".into();
                }
            }
        }
    }
}

impl Proc {
    /// Kills the process (SIGKILL: no clean shutdown) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes the child die with SIGKILL when the thread that spawned it ends (for instance when the test harness is
/// killed), so no peer outlives a test even when `Drop` never runs.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only makes one async-signal-safe system call.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1 with a bounded time: `(status code, body)`.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)
        .with_context(|| format!("connect 127.0.0.1:{port}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("read GET {path}"))?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("GET {path}: no HTTP header end in {text:?}");
    };
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("GET {path}: bad status line in {head:?}"))?;
    Ok((code, body.to_string()))
}

/// A `control-plane serve` process on free loopback ports, watching a manifest directory.
pub struct ControlPlaneProc {
    pub proc: Proc,
    pub grpc_port: u16,
    pub admin_port: u16,
}

impl ControlPlaneProc {
    /// Starts the control plane on `manifests`, with its CA and log under `work`, and waits (bounded) until it
    /// serves the first manifest generation (`/ready`). Fails the test if it rejects the manifests.
    pub fn start(manifests: &Path, work: &Path) -> ControlPlaneProc {
        Self::start_with(
            &[OsStr::new("--manifests"), manifests.as_os_str()],
            work,
            &[],
        )
    }

    /// Starts the control plane on the API server of `kubeconfig` (`--kubeconfig`), with `extra` flags and
    /// environment `env` (e.g. `POD_NAME`), and waits until it serves its first translation.
    pub fn start_kube(
        kubeconfig: &Path,
        work: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ControlPlaneProc {
        let mut args = vec![OsStr::new("--kubeconfig"), kubeconfig.as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        Self::start_with(&args, work, env)
    }

    fn start_with(source: &[&OsStr], work: &Path, env: &[(&str, &str)]) -> ControlPlaneProc {
        let bin = control_plane_bin();
        let ca_dir = work.join("ca");
        let mut exits = Vec::new();
        // A port picked free can be taken before the control plane binds it: try again if it exits at once.
        for attempt in 0..3 {
            let (mut grpc_port, admin_port) = (free_port(), free_port());
            let mut cmd = Command::new(&bin);
            cmd.arg("serve").args(source);
            // A caller's own `--listen ADDR:PORT` (e.g. an address a test namespace can reach) wins.
            match source.iter().position(|a| *a == "--listen") {
                Some(i) => {
                    let addr = source
                        .get(i + 1)
                        .and_then(|a| a.to_str())
                        .unwrap_or_default();
                    grpc_port = addr
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                }
                None => {
                    cmd.args(["--listen", &format!("127.0.0.1:{grpc_port}")]);
                }
            }
            cmd.args(["--admin", &format!("127.0.0.1:{admin_port}")])
                .arg("--ca-dir")
                .arg(&ca_dir)
                .env("RUST_LOG", "info,xds=debug")
                .env("NO_COLOR", "1")
                .envs(env.iter().copied());
            let proc = Proc::spawn(&format!("control-plane-{attempt}"), cmd, work);
            let mut cp = ControlPlaneProc {
                proc,
                grpc_port,
                admin_port,
            };
            if cp.wait_ready(Duration::from_secs(20)) {
                return cp;
            }
            exits.push(cp.proc.stderr());
        }
        panic!(
            "the control plane exited at start three times; its stderr:\n{}",
            exits.join("\n---\n")
        )
    }

    /// `true` once `/ready`; `false` if the process exited; fails the test if the manifests are rejected or it is
    /// not ready in time.
    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            if !self.proc.is_running() {
                return false;
            }
            match http_get(self.admin_port, "/ready", Duration::from_secs(2)) {
                Ok((200, _)) => return true,
                Ok((code, body)) => {
                    last = format!("/ready: {code} {body}");
                    let st = self.status();
                    assert!(
                        st["error"].is_null(),
                        "the control plane rejected the manifests: {st:#}"
                    );
                }
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the control plane was not ready within {timeout:?}: {last}\nstderr:\n{}",
            self.proc.stderr()
        )
    }

    /// GET an admin path that answers JSON.
    pub fn admin_json(&self, path: &str) -> Value {
        let (code, body) = http_get(self.admin_port, path, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}\nstderr:\n{}", self.proc.stderr()));
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// `/debug/status`.
    pub fn status(&self) -> Value {
        self.admin_json("/debug/status")
    }

    /// `/debug/adsz`.
    pub fn adsz(&self) -> Value {
        self.admin_json("/debug/adsz")
    }

    /// Waits (bounded) until `f` holds for `/debug/status`; returns that status.
    pub fn wait_status(&self, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.status();
            if f(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "timed out ({timeout:?}) waiting for {what}: {st:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A gRPC xDS bootstrap file for a client with node `node_id`, pointing at this control plane.
    pub fn write_bootstrap(&self, dir: &Path, node_id: &str) -> PathBuf {
        let bootstrap = serde_json::json!({
            "xds_servers": [{
                "server_uri": format!("127.0.0.1:{}", self.grpc_port),
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }],
            "node": {"id": node_id, "locality": {"zone": "z1"}},
        });
        let path = dir.join(format!(
            "bootstrap-{}.json",
            node_id.replace(['~', '/'], "_")
        ));
        std::fs::write(&path, bootstrap.to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}
