//! Starting the processes under test, each a [`Proc`] (killed on drop) that is only handed back
//! once it serves: the backend (this binary's `backend` subcommand), `control-plane serve` over
//! the bench manifests, Envoy with an ADS bootstrap, and our `waypoint` with plain listeners.
//! A proxy is up once a `GET /route-check` through it is answered `200`; the body says whether
//! the route's header reached the backend.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::backend::{ROUTE_CHECK_PATH, ROUTE_HEADER};
use crate::cmd::{self, Proc};
use crate::http;
use crate::manifests::Waypoint;

/// How long any process gets to come up.
const START_LIMIT: Duration = Duration::from_secs(60);
const RETRY: Duration = Duration::from_millis(100);

/// A loopback port nothing listens on now (bound, then released).
pub(crate) fn free_port(ip: &str) -> Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// A port free on every one of `ips` (the waypoint listeners share the Service port).
pub(crate) fn common_free_port(ips: &[&str]) -> Result<u16> {
    for _ in 0..50 {
        let port = free_port(ips[0])?;
        if ips[1..]
            .iter()
            .all(|ip| TcpListener::bind((*ip, port)).is_ok())
        {
            return Ok(port);
        }
    }
    bail!("no port free on all of {ips:?} after 50 tries")
}

/// Polls `probe` until it yields a value, checking that `proc` lives, for [`START_LIMIT`].
fn wait_for<T>(proc: &mut Proc, what: &str, mut probe: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        cmd::check()?;
        proc.alive()?;
        let err = match probe() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            bail!(
                "{what} not ready in {START_LIMIT:?}: {err:#}; {} output ends with:\n{}",
                proc.name,
                cmd::tail(&proc.log, 30)
            );
        }
        std::thread::sleep(RETRY);
    }
}

/// Starts `<this binary> backend --listen 127.0.0.1:0`; its address from its first line.
pub(crate) fn backend(scratch: &Path) -> Result<(Proc, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let mut c = Command::new(exe);
    c.args(["backend", "--listen", "127.0.0.1:0"]);
    let mut p = Proc::spawn("backend", &mut c, scratch)?;
    let log = p.log.clone();
    let addr = wait_for(&mut p, "backend", || {
        let text = std::fs::read_to_string(&log)?;
        let line = text.lines().find_map(|l| l.strip_prefix("listening "));
        Ok(line
            .context("no address yet")?
            .trim()
            .parse::<SocketAddr>()?)
    })?;
    Ok((p, addr))
}

/// `control-plane serve` and its gRPC and admin addresses.
pub(crate) struct ControlPlane {
    pub(crate) proc: Proc,
    pub(crate) grpc: SocketAddr,
    pub(crate) admin: SocketAddr,
}

/// Starts the control plane over `manifests`; ready once `/ready` is 200 and `/debug/status`
/// shows a generation without error and with both waypoints.
pub(crate) fn control_plane(
    binary: &Path,
    manifests: &Path,
    scratch: &Path,
) -> Result<ControlPlane> {
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1")?).parse()?;
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1")?).parse()?;
    let mut c = Command::new(binary);
    c.arg("serve")
        .arg("--manifests")
        .arg(manifests)
        .arg("--listen")
        .arg(grpc.to_string())
        .arg("--admin")
        .arg(admin.to_string())
        .arg("--ca-dir")
        .arg(scratch.join("ca"))
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
    let mut proc = Proc::spawn("control-plane", &mut c, scratch)?;
    wait_for(&mut proc, "control plane", || {
        let r = http::get(admin, "localhost", "/ready")?;
        if r.status != 200 {
            bail!("/ready: {} {}", r.status, r.body.trim());
        }
        Ok(())
    })?;
    let status: serde_json::Value =
        serde_json::from_str(&http::get(admin, "localhost", "/debug/status")?.body)?;
    if !status["error"].is_null() || status["summary"]["waypoints"] != 2 {
        bail!("control plane did not translate the bench manifests as expected: {status}");
    }
    Ok(ControlPlane { proc, grpc, admin })
}

impl ControlPlane {
    /// Fails unless `/debug/adsz` lists each of `nodes` with no NACK.
    pub(crate) fn check_clients(&self, nodes: &[String]) -> Result<()> {
        let dump: serde_json::Value =
            serde_json::from_str(&http::get(self.admin, "localhost", "/debug/adsz")?.body)?;
        let clients = dump["clients"].as_array().cloned().unwrap_or_default();
        for node in nodes {
            let client = clients
                .iter()
                .find(|c| c["node_id"] == node.as_str())
                .with_context(|| format!("{node} is not connected: {dump}"))?;
            let types = client["types"].as_object().cloned().unwrap_or_default();
            if let Some((url, t)) = types.iter().find(|(_, t)| !t["last_nack"].is_null()) {
                bail!("{node} NACKed {url}: {}", t["last_nack"]);
            }
        }
        Ok(())
    }
}

/// Polls `GET /route-check` through `addr` until `200`; whether the backend saw the route's
/// header.
pub(crate) fn route_check(proc: &mut Proc, addr: SocketAddr, host: &str) -> Result<bool> {
    let what = format!("{} at {addr}", proc.name);
    let body = wait_for(proc, &what, || {
        let r = http::get(addr, host, ROUTE_CHECK_PATH)?;
        if r.status != 200 {
            bail!(
                "{ROUTE_CHECK_PATH} answered {}: {}",
                r.status,
                r.body.trim()
            );
        }
        Ok(r.body)
    })?;
    Ok(body.trim() == format!("{ROUTE_HEADER}=1"))
}

/// A base id no other Envoy of this machine uses (hot restart is off, but the id still names
/// shared state).
fn base_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    (std::process::id() % 100_000) * 10 + NEXT.fetch_add(1, Ordering::Relaxed) % 10 + 2_000_000
}

/// Starts Envoy as the Gateway `wp`'s pod: delta ADS to `xds`, `--concurrency` workers, no
/// access log (the translation configures none), admin on a free loopback port.
pub(crate) fn envoy(
    binary: &Path,
    wp: &Waypoint,
    xds: SocketAddr,
    concurrency: u32,
    scratch: &Path,
) -> Result<Proc> {
    let bootstrap = json!({
        "node": {"id": wp.node_id(), "cluster": wp.gateway},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC",
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
    let config = scratch.join("envoy-bootstrap.json");
    std::fs::write(&config, bootstrap.to_string())?;
    let mut c = Command::new(binary);
    c.arg("-c")
        .arg(&config)
        .args(["--base-id", &base_id().to_string()])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["-l", "warn", "--disable-hot-restart"])
        .arg("--admin-address-path")
        .arg(scratch.join("envoy-admin-address"));
    Proc::spawn("envoy", &mut c, scratch)
}

/// Starts our waypoint as the Gateway `wp`'s pod: plain listeners only (no HBONE), a fake CA,
/// `RUST_LOG=warn` (so no access log), all cores for its runtime; waits for
/// `/healthz/ready`.
pub(crate) fn waypoint(
    binary: &Path,
    wp: &Waypoint,
    xds: SocketAddr,
    scratch: &Path,
) -> Result<Proc> {
    let port = |ip| -> Result<String> { Ok(format!("127.0.0.1:{}", free_port(ip)?)) };
    let readiness: SocketAddr = port("127.0.0.1")?.parse()?;
    let mut c = Command::new(binary);
    c.env("XDS_ADDRESS", format!("http://{xds}"))
        .env("FAKE_CA", "true")
        .env("HBONE_ADDR", "off")
        .env("PLAIN_LISTENERS", "true")
        .env("GATEWAY_NAME", wp.gateway)
        .env("POD_NAMESPACE", crate::manifests::NAMESPACE)
        .env("INSTANCE_IP", wp.address.to_string())
        .env("SERVICE_ACCOUNT", wp.gateway)
        .env("ADMIN_ADDR", port("127.0.0.1")?)
        .env("STATS_ADDR", port("127.0.0.1")?)
        .env("READINESS_ADDR", readiness.to_string())
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
    let mut proc = Proc::spawn("waypoint", &mut c, scratch)?;
    wait_for(&mut proc, "waypoint /healthz/ready", || {
        let r = http::get(readiness, "localhost", "/healthz/ready")?;
        if r.status != 200 {
            bail!("/healthz/ready: {} {}", r.status, r.body.trim());
        }
        Ok(())
    })?;
    Ok(proc)
}

/// `path`, or an error saying how to get it.
pub(crate) fn require(path: PathBuf, what: &str, how: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        bail!("{what} not found at {}: {how}", path.display())
    }
}
