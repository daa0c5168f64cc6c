//! The local mesh's control plane: the `control-plane` binary, supervised in the daemon's own
//! namespace on loopback ports chosen at `up`, fed by a manifest directory that the daemon
//! keeps equal to the mesh as it runs (pods as the Kubernetes API would show them, with their
//! node, IP and readiness; Services with their cluster IP).
//!
//! Each node netns reaches it at `127.0.0.1:15012` (xDS and CA on one port, plaintext on
//! loopback as istiod allows locally): a forwarder thread of the daemon accepts there and
//! connects to the control plane. Node tunnels authenticate to the CA with their node's token
//! (`<node>/istio-token`, listed in `control-plane/tokens.json`), which binds them to that node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::manifest::RestartPolicy;
use crate::manifest::{ManifestObject, Object};
use crate::netns;
use crate::paths::MeshPaths;
use crate::plan::{Name, Plan};
use crate::pods::RunningPod;
use crate::supervisor::{ContainerSpec, Supervisor};

/// Where node tunnels find xDS and the CA inside their node netns.
pub const NODE_PORT: u16 = 15012;
/// Supervisor key of the control plane process.
pub const COMPONENT: &str = "control-plane";

pub fn dir(paths: &MeshPaths) -> PathBuf {
    paths.root.join("control-plane")
}
pub fn manifests_dir(paths: &MeshPaths) -> PathBuf {
    dir(paths).join("manifests")
}
fn tokens_file(paths: &MeshPaths) -> PathBuf {
    dir(paths).join("tokens.json")
}
/// Path of a node's CA token (mode 0600).
pub fn token_path(paths: &MeshPaths, node: &str) -> PathBuf {
    paths.node_dir(node).join("istio-token")
}
pub fn log_path(paths: &MeshPaths) -> PathBuf {
    dir(paths).join("control-plane.log")
}

fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn write_private(path: &std::path::Path, text: &str) -> Result<(), Error> {
    ::control_plane::ca::write_private(path, text).map_err(|e| Error::file(path, e))
}

fn free_port() -> Result<u16, Error> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Usage(format!("no free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Usage(format!("no free port: {e}")))
}

/// The running control plane: its addresses and the per-node forwarders (stopped on drop).
pub struct ControlPlane {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes the tokens, starts the control plane under the supervisor, binds the forwarders in
/// every node netns and waits until it serves.
pub fn start(
    paths: &MeshPaths,
    nodes: &[String],
    trust_domain: &str,
    supervisor: &Supervisor,
    binary: &std::path::Path,
    timeout: Duration,
) -> Result<ControlPlane, Error> {
    let mesh_err = |detail: String| Error::Mesh {
        mesh: paths.name.clone(),
        detail,
    };
    let manifests = manifests_dir(paths);
    std::fs::create_dir_all(&manifests).map_err(|e| Error::file(&manifests, e))?;
    let mut tokens = BTreeMap::new();
    for node in nodes {
        let token = random_token();
        write_private(&token_path(paths, node), &token)?;
        tokens.insert(token, node.clone());
    }
    let tokens_json = serde_json::to_string_pretty(&tokens).map_err(|e| mesh_err(e.to_string()))?;
    write_private(&tokens_file(paths), &tokens_json)?;

    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let s = |p: PathBuf| p.display().to_string();
    let spec = ContainerSpec {
        name: COMPONENT.into(),
        argv: vec![
            binary.display().to_string(),
            "serve".into(),
            "--manifests".into(),
            s(manifests),
            "--listen".into(),
            grpc.to_string(),
            "--admin".into(),
            admin.to_string(),
            "--ca-dir".into(),
            s(dir(paths).join("ca")),
            "--ca-tokens".into(),
            s(tokens_file(paths)),
            "--trust-domain".into(),
            trust_domain.to_owned(),
        ],
        env: vec![
            (
                "RUST_LOG".into(),
                std::env::var("MESHCTL_COMPONENT_LOG").unwrap_or_else(|_| "info".into()),
            ),
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ),
        ],
        working_dir: None,
        log: log_path(paths),
    };
    supervisor.start(
        (
            crate::node_agents::SYSTEM_NAMESPACE.into(),
            COMPONENT.into(),
        ),
        String::new(),
        RestartPolicy::Always,
        vec![spec],
    );

    let mut listeners = Vec::new();
    for node in nodes {
        let addr = SocketAddr::from(([127, 0, 0, 1], NODE_PORT));
        let listener = netns::run_in(&paths.node_netns(node), move || {
            std::net::TcpListener::bind(addr)
        })?
        .map_err(|e| mesh_err(format!("binding {addr} in node {node}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| mesh_err(e.to_string()))?;
        listeners.push(listener);
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("control-plane-link".into())
        .spawn(move || forward(listeners, grpc, stop_rx))
        .map_err(|e| mesh_err(format!("starting the forwarder thread: {e}")))?;
    let cp = ControlPlane {
        grpc,
        admin,
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    wait_serving(paths, admin, timeout)?;
    Ok(cp)
}

impl ControlPlane {
    /// Health for `meshctl status`: running, serving, and the last manifest generation accepted
    /// (an error there means the previous generation is still served).
    pub fn status(&self, supervisor: &Supervisor) -> crate::status::ComponentStatus {
        let running = supervisor
            .statuses(&(
                crate::node_agents::SYSTEM_NAMESPACE.into(),
                COMPONENT.into(),
            ))
            .is_some_and(|st| crate::supervisor::phase(&st) == "Running");
        let state = status(self.admin);
        let healthy = running
            && state
                .as_ref()
                .is_some_and(|s| s["error"].is_null() && s["generation"].as_u64().unwrap_or(0) > 0);
        crate::status::ComponentStatus {
            name: COMPONENT.into(),
            kind: COMPONENT.into(),
            node: None,
            healthy,
            admin_address: Some(self.admin.to_string()),
            metrics_address: Some(self.admin.to_string()),
        }
    }
}

/// Checks that the control plane accepts `objects` (the same translation it runs), so a bad
/// manifest is refused by `meshctl apply` with the control plane's error, naming the object and
/// field, before anything changes.
pub fn validate(objects: &[ManifestObject], trust_domain: &str) -> Result<(), Error> {
    let options = ::control_plane::translate::Options {
        trust_domain: trust_domain.to_owned(),
        ..Default::default()
    };
    ::control_plane::translate::translate(objects, &options)
        .map(|_| ())
        .map_err(Error::from)
}

/// Waits for `/ready` (first manifest generation served).
fn wait_serving(paths: &MeshPaths, admin: SocketAddr, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let ready = crate::probe::http_get_path("", admin, "/ready", Duration::from_secs(1));
        if ready.is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Mesh {
                mesh: paths.name.clone(),
                detail: format!(
                    "the control plane did not become ready within {timeout:?}; see {}",
                    log_path(paths).display()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `/debug/status` of the control plane, parsed.
pub fn status(admin: SocketAddr) -> Option<serde_json::Value> {
    let reply =
        crate::probe::http_get_path("", admin, "/debug/status", Duration::from_secs(2)).ok()?;
    (reply.status == 200)
        .then(|| serde_json::from_str(&reply.body).ok())
        .flatten()
}

fn forward(
    listeners: Vec<std::net::TcpListener>,
    target: SocketAddr,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        tracing::error!("cannot start the control-plane forwarder runtime");
        return;
    };
    rt.block_on(async move {
        for l in listeners {
            let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                continue;
            };
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = l.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        match tokio::net::TcpStream::connect(target).await {
                            Ok(mut outbound) => {
                                let _ = inbound.set_nodelay(true);
                                let _ = outbound.set_nodelay(true);
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                            Err(e) => tracing::debug!(error = %e, "control plane unreachable"),
                        }
                    });
                }
            });
        }
        let _ = stop.await;
    });
}

/// Writes the mesh as the control plane should see it: every applied object except Pods and
/// Deployments, then each running pod as a Pod object with node, IP, owner and readiness, and
/// Services with their allocated cluster IP. Written to a temporary file and renamed.
pub fn publish(
    paths: &MeshPaths,
    objects: &[ManifestObject],
    plan: &Plan,
    pods: &BTreeMap<Name, RunningPod>,
) -> Result<(), Error> {
    let mut docs: Vec<serde_json::Value> = Vec::new();
    for o in objects {
        match &o.object {
            Object::Pod(_) | Object::Deployment(_) | Object::Cluster(_) => {}
            Object::Service(svc) => {
                let mut svc = svc.clone();
                let key = (
                    svc.metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    svc.metadata.name.clone(),
                );
                if let Some(ip) = plan.services.get(&key).and_then(|s| s.cluster_ip) {
                    svc.spec.cluster_ip = Some(ip.to_string());
                }
                docs.push(crate::manifest::to_document(&Object::Service(svc)));
            }
            other => docs.push(crate::manifest::to_document(other)),
        }
    }
    for p in pods.values() {
        docs.push(crate::manifest::to_document(&Object::Pod(
            p.as_pod_object(),
        )));
    }
    let dir = manifests_dir(paths);
    let path = dir.join("mesh.yaml");
    let tmp = dir.join(".mesh.yaml.tmp");
    let mut text = String::new();
    for d in docs {
        text.push_str("---\n");
        text.push_str(&serde_json::to_string(&d).map_err(|e| Error::Usage(e.to_string()))?);
        text.push('\n');
    }
    std::fs::write(&tmp, text).map_err(|e| Error::file(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::file(&path, e))
}
