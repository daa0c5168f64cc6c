//! The real `control-plane serve` binary as a child process, so its memory can be read apart
//! from the clients': `VmRSS` and `VmHWM` from `/proc/<pid>/status`. Its gRPC and admin ports
//! are read from its start-up log line; its stderr is drained on a thread (kept for errors).
//! The child is killed when [`Child`] is dropped, also on error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub(crate) struct Child {
    process: std::process::Child,
    pub(crate) grpc: SocketAddr,
    pub(crate) admin: SocketAddr,
    _ca_dir: tempfile::TempDir,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// `key=value` of the start-up line `control plane serving grpc=… admin=…`.
fn field(line: &str, key: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.trim_matches(|c: char| !c.is_ascii_graphic()).parse().ok())
}

impl Child {
    /// Starts `binary serve` over `manifests` on loopback ports it picks.
    pub(crate) fn start(binary: &Path, manifests: &Path, limit: Duration) -> Result<Child> {
        let ca_dir = tempfile::tempdir()?;
        let mut process = Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--manifests")
            .arg(manifests)
            .arg("--ca-dir")
            .arg(ca_dir.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = process.stderr.take().context("child stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = process.kill();
                let _ = process.wait();
                bail!(
                    "control-plane did not report its ports in {limit:?}; stderr: {}",
                    seen.join("\n")
                );
            };
            if let (Some(grpc), Some(admin)) = (field(&line, "grpc="), field(&line, "admin=")) {
                // Keep draining so the child never blocks on a full pipe.
                std::thread::spawn(move || while rx.recv().is_ok() {});
                return Ok(Child {
                    process,
                    grpc,
                    admin,
                    _ca_dir: ca_dir,
                });
            }
            seen.push(line);
        }
    }

    /// Polls `/ready` until the first generation is served.
    pub(crate) fn ready(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if http_get(self.admin, "/ready").is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = http_get(self.admin, "/debug/status").unwrap_or_default();
        bail!("control-plane not ready in {limit:?}: {status}")
    }

    /// Clients the ADS server lists in `/debug/adsz`.
    pub(crate) fn connected_clients(&self) -> Result<usize> {
        let response = http_get(self.admin, "/debug/adsz")?;
        let body = response.split_once("\r\n\r\n").context("no HTTP body")?.1;
        let dump: serde_json::Value = serde_json::from_str(body)?;
        Ok(dump["clients"].as_array().map_or(0, Vec::len))
    }

    /// `(VmRSS, VmHWM)` in KiB.
    pub(crate) fn memory_kib(&self) -> Result<(u64, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.process.id()))?;
        let kib = |key: &str| -> Result<u64> {
            let line = text
                .lines()
                .find(|l| l.starts_with(key))
                .context(key.to_owned())?;
            Ok(line
                .split_whitespace()
                .nth(1)
                .context("no value")?
                .parse()?)
        };
        Ok((kib("VmRSS:")?, kib("VmHWM:")?))
    }
}

/// A bounded HTTP/1.1 GET of the admin endpoint; the whole response as text.
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.take(1 << 20).read_to_string(&mut out)?;
    Ok(out)
}
