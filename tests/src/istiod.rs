//! Real istiod for a test: `scripts/istiod.sh up` (pilot-discovery built from the `istio.io/istio` Go module, pinned
//! in the script) against a test API server ([`crate::kube::ApiServer`]), in a directory unique to the test, and
//! `scripts/istiod.sh down` when the handle drops, also when the test panics. If the test process is killed instead,
//! a watchdog that `up` leaves behind runs `down`.
//!
//! istiod runs with ambient enabled (`PILOT_ENABLE_AMBIENT=true`), its own self-signed CA (Secret
//! `istio-system/istio-ca-secret`, root published in every namespace's `istio-ca-root-cert` ConfigMap), trust domain
//! `cluster.local`, cluster id `Kubernetes`, accepting service-account tokens of audience `istio-ca`, and
//! `istio-system/ztunnel` as the trusted node identity. Every port is a free one on 127.0.0.1: [`Istiod::xds_port`]
//! is Istio's 15010 (plaintext xDS), [`Istiod::xds_tls_port`] its 15012 (xDS and CA over TLS, server certificate
//! for `istiod.istio-system.svc` signed by [`Istiod::root_cert_pem`]).
//!
//! Needs `scripts/istiod.sh build` to have run once on the machine (`scripts/test.sh` runs it). No root needed.
//! Uses only std and anyhow.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::kube::ApiServer;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `scripts/istiod.sh` of this checkout.
fn istiod_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/istiod.sh")
}

/// A running istiod; dropping it stops it and removes its directory (not what it wrote into the API server).
#[derive(Debug)]
pub struct Istiod {
    dir: PathBuf,
    kubeconfig: PathBuf,
    xds_port: u16,
    xds_tls_port: u16,
    http_port: u16,
    webhook_port: u16,
    monitoring_port: u16,
    pid: u32,
    root_cert_file: PathBuf,
    root_cert_pem: String,
    istioctl: PathBuf,
    version: String,
    down_done: bool,
    /// How the process ran, while [`Istiod::stop_process`] has it stopped.
    stopped: Option<Launch>,
}

/// A process's command line, environment and working directory.
#[derive(Debug)]
struct Launch {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
}

/// Whether `pid` runs (a zombie does not count).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

/// `GET http://127.0.0.1:<port><path>` answers 200.
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if write!(conn, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer.lines().next().is_some_and(|l| l.contains(" 200"))
}

impl Istiod {
    /// Starts istiod against `api` (creating the `istio-system` namespace and the `istiod` ServiceAccount) and
    /// returns once its readiness answers 200, both xDS ports accept connections and its root certificate is
    /// published. The error carries `istiod.sh`'s output, which ends with the tail of istiod's log.
    pub fn start(api: &ApiServer) -> Result<Istiod> {
        let dir = std::env::temp_dir().join(format!(
            "istiod-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(istiod_sh())
            .arg("up")
            .arg(&dir)
            .arg(api.dir())
            .env("KUBE_OWNER_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .context("cannot run scripts/istiod.sh")?;
        if !out.status.success() {
            // Whatever started before the failure is stopped (istiod.sh recorded it in the directory).
            let _ = down(&dir);
            bail!(
                "scripts/istiod.sh up {} {} failed ({}); if pilot-discovery is missing, run `scripts/istiod.sh build`\n{}{}",
                dir.display(),
                api.dir().display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // From here on a failure drops the handle, which runs `down`.
        let mut istiod = Istiod {
            dir,
            kubeconfig: PathBuf::new(),
            xds_port: 0,
            xds_tls_port: 0,
            http_port: 0,
            webhook_port: 0,
            monitoring_port: 0,
            pid: 0,
            root_cert_file: PathBuf::new(),
            root_cert_pem: String::new(),
            istioctl: PathBuf::new(),
            version: String::new(),
            down_done: false,
            stopped: None,
        };
        let env_path = istiod.dir.join("env");
        let env = std::fs::read_to_string(&env_path)
            .with_context(|| format!("{}", env_path.display()))?;
        let var = |key: &str| -> Result<String> {
            env.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
                .with_context(|| format!("{key} is not in {}", env_path.display()))
        };
        let port = |key: &str| -> Result<u16> {
            var(key)?
                .parse()
                .with_context(|| format!("{key} in {}", env_path.display()))
        };
        istiod.kubeconfig = PathBuf::from(var("KUBECONFIG")?);
        istiod.xds_port = port("ISTIOD_XDS_PORT")?;
        istiod.xds_tls_port = port("ISTIOD_XDS_TLS_PORT")?;
        istiod.http_port = port("ISTIOD_HTTP_PORT")?;
        istiod.webhook_port = port("ISTIOD_WEBHOOK_PORT")?;
        istiod.monitoring_port = port("ISTIOD_MONITORING_PORT")?;
        istiod.pid = var("ISTIOD_PID")?
            .parse()
            .context("ISTIOD_PID in istiod's env")?;
        istiod.root_cert_file = PathBuf::from(var("ISTIOD_ROOT_CERT")?);
        istiod.root_cert_pem = std::fs::read_to_string(&istiod.root_cert_file)
            .with_context(|| format!("{}", istiod.root_cert_file.display()))?;
        istiod.istioctl = PathBuf::from(var("ISTIOCTL")?);
        istiod.version = var("ISTIOD_VERSION")?;
        eprintln!(
            "istiod {} up in {:.1?}: xDS 127.0.0.1:{}, xDS+TLS 127.0.0.1:{}, http 127.0.0.1:{} ({})",
            istiod.version,
            started.elapsed(),
            istiod.xds_port,
            istiod.xds_tls_port,
            istiod.http_port,
            istiod.dir.display()
        );
        Ok(istiod)
    }

    /// The directory holding istiod's mesh config (`mesh.yaml`), root certificate and log (`istiod.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Istio's 15010: xDS in plaintext gRPC.
    pub fn xds_port(&self) -> u16 {
        self.xds_port
    }

    /// Istio's 15012: xDS and the CA over TLS (server certificate for `istiod.istio-system.svc`).
    pub fn xds_tls_port(&self) -> u16 {
        self.xds_tls_port
    }

    /// Istio's 8080: `/ready` and the `/debug/...` endpoints.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Istio's 15017: the webhook server (validation; injection is off: there is no injection template).
    pub fn webhook_port(&self) -> u16 {
        self.webhook_port
    }

    /// Istio's 15014: `/metrics`.
    pub fn monitoring_port(&self) -> u16 {
        self.monitoring_port
    }

    /// `127.0.0.1:<xds_tls_port>`.
    pub fn xds_tls_address(&self) -> String {
        format!("127.0.0.1:{}", self.xds_tls_port)
    }

    /// istiod's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The root certificate of istiod's CA, as published in the `istio-ca-root-cert` ConfigMaps (PEM).
    pub fn root_cert_pem(&self) -> &str {
        &self.root_cert_pem
    }

    /// The file holding [`Istiod::root_cert_pem`].
    pub fn root_cert_file(&self) -> &Path {
        &self.root_cert_file
    }

    /// The pinned `istio.io/istio` module version istiod and istioctl were built from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The istioctl binary built beside pilot-discovery.
    pub fn istioctl_bin(&self) -> &Path {
        &self.istioctl
    }

    /// Runs `istioctl --kubeconfig <the API server's admin kubeconfig> args…`; its stdout, or an error with its
    /// output.
    pub fn istioctl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.istioctl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.istioctl.display()))?;
        if !out.status.success() {
            bail!(
                "istioctl {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `istioctl proxy-status -o json` straight to istiod's TLS xDS port (no port-forward needed).
    pub fn proxy_status(&self) -> Result<serde_json::Value> {
        let out = self.istioctl(&[
            "proxy-status",
            "--xds-address",
            &self.xds_tls_address(),
            "-o",
            "json",
        ])?;
        serde_json::from_str(&out).context("proxy-status printed no JSON")
    }

    /// istiod's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("istiod.log")).unwrap_or_default()
    }

    /// The last `n` lines of istiod's log, for a failure message.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "---- {}/istiod.log ----\n{}\n",
            self.dir.display(),
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }

    /// Stops the istiod process (TERM, as a rollout does; KILL after 15 s) and waits until it is gone, keeping its
    /// directory, command line, environment and ports for [`Istiod::start_process`]. What it wrote into the API
    /// server stays, its CA root (the `istio-ca-secret` Secret) included.
    pub fn stop_process(&mut self) -> Result<()> {
        let pid = self.pid;
        let read = |what: &str| {
            std::fs::read(format!("/proc/{pid}/{what}"))
                .with_context(|| format!("istiod {pid}: /proc/{pid}/{what}"))
        };
        let split = |bytes: Vec<u8>| -> Vec<String> {
            bytes
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        };
        let argv = split(read("cmdline")?);
        let env = split(read("environ")?)
            .into_iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).context("istiod's cwd")?;
        if !argv
            .iter()
            .any(|a| a.contains(&*self.dir.to_string_lossy()))
        {
            bail!("process {pid} is not this istiod: {argv:?}");
        }
        let signal = |sig: &str| Command::new("kill").args([sig, &pid.to_string()]).status();
        signal("-TERM").context("kill -TERM istiod")?;
        let deadline = Instant::now() + std::time::Duration::from_secs(15);
        while alive(pid) {
            if Instant::now() > deadline {
                signal("-KILL").context("kill -KILL istiod")?;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.stopped = Some(Launch { argv, env, cwd });
        Ok(())
    }

    /// Starts istiod again exactly as it ran before [`Istiod::stop_process`] (same ports, directory and log) and
    /// waits until its readiness answers and both xDS ports accept connections.
    pub fn start_process(&mut self) -> Result<()> {
        let launch = self.stopped.take().context("istiod was not stopped")?;
        let log = self.dir.join("istiod.log");
        // In the background of a shell that exits at once: istiod is nobody's child, as `istiod.sh up` leaves it.
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "setsid \"$@\" </dev/null >>'{}' 2>&1 & echo $!",
                log.display()
            ))
            .arg("sh")
            .args(&launch.argv)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&launch.cwd)
            .stdin(Stdio::null())
            .output()
            .context("starting istiod again")?;
        self.pid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .with_context(|| format!("istiod's pid: {out:?}"))?;
        // `down` stops every process in the pids file.
        let mut pids = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("pids"))
            .context("istiod's pids file")?;
        std::io::Write::write_all(&mut pids, format!("istiod {}\n", self.pid).as_bytes())?;
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let ready = http_ok(self.http_port, "/ready")
                && [self.xds_port, self.xds_tls_port]
                    .iter()
                    .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if ready {
                return Ok(());
            }
            if !alive(self.pid) || Instant::now() > deadline {
                bail!("istiod did not come back\n{}", self.log_tail(40));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Stops istiod and removes its directory (what dropping does, with the error returned).
    pub fn stop(&mut self) -> Result<()> {
        self.down_done = true;
        down(&self.dir)
    }
}

impl Drop for Istiod {
    fn drop(&mut self) {
        if !self.down_done
            && let Err(e) = down(&self.dir)
        {
            eprintln!("cleanup of istiod in {}: {e:#}", self.dir.display());
        }
    }
}

/// `scripts/istiod.sh down DIR`.
fn down(dir: &Path) -> Result<()> {
    let out = Command::new("bash")
        .arg(istiod_sh())
        .arg("down")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run scripts/istiod.sh")?;
    if !out.status.success() {
        bail!(
            "scripts/istiod.sh down {} failed ({}): {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
