//! The mesh's per-node components, run the way the DaemonSets run them: in each node's netns,
//! a `ztunnel` (in-pod mode, workloads over delta ADS and certificates from the control plane
//! at 127.0.0.1:15012) and a `cni-agent` (installs the `istio-cni` plugin into the node's CNI config,
//! redirects enrolled pods, hands them to ztunnel over ZDS).
//!
//! Owns their command lines and environment, the per-node files they share with meshctl (the
//! pod metadata directory the agent watches, the agent's `pods.json`), waiting for them to be
//! ready, and their status. The processes themselves are the supervisor's.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cni_plugin::pods::PodMeta;

use crate::cluster::ClusterConfig;
use crate::error::Error;
use crate::manifest::{PodSpecExt, RestartPolicy};
use crate::paths::MeshPaths;
use crate::plan::{DesiredPod, Name};
use crate::status::ComponentStatus;
use crate::supervisor::{ContainerSpec, Supervisor};

/// Namespace the components are supervised under (never a user namespace).
pub const SYSTEM_NAMESPACE: &str = "istio-system";
pub const ZTUNNEL: &str = "ztunnel";
pub const CNI_AGENT: &str = "istio-cni-node";
const READY_PORT: u16 = 15021;

/// Where the component binaries are: `$MESHCTL_BIN_DIR`, else next to the running `meshctl`.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub ztunnel: PathBuf,
    pub cni_agent: PathBuf,
    pub istio_cni: PathBuf,
    pub control_plane: PathBuf,
    /// Needed only by meshes with waypoints: checked by [`Binaries::require_waypoint`].
    pub waypoint: PathBuf,
}

impl Binaries {
    pub fn locate() -> Result<Self, Error> {
        let dir = match std::env::var_os("MESHCTL_BIN_DIR") {
            Some(d) => PathBuf::from(d),
            None => std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or_default(),
        };
        let find = |name: &str| existing(dir.join(name));
        Ok(Self {
            ztunnel: find("ztunnel")?,
            cni_agent: find("cni-agent")?,
            istio_cni: find("istio-cni")?,
            control_plane: find("control-plane")?,
            waypoint: dir.join("waypoint"),
        })
    }

    /// Fails unless the `waypoint` binary is there (for a plan with waypoint pods, before any is made).
    pub fn require_waypoint(&self) -> Result<&Path, Error> {
        existing(self.waypoint.clone())?;
        Ok(&self.waypoint)
    }
}

fn existing(p: PathBuf) -> Result<PathBuf, Error> {
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::Usage(format!(
            "{} not found; build the workspace binaries (cargo build --workspace --bins) or set MESHCTL_BIN_DIR",
            p.display()
        )))
    }
}

fn pod_meta_dir(paths: &MeshPaths, node: &str) -> PathBuf {
    paths.node_dir(node).join("pods")
}
fn agent_run_dir(paths: &MeshPaths, node: &str) -> PathBuf {
    paths.node_dir(node).join("cni-run")
}
fn zds_socket(paths: &MeshPaths, node: &str) -> PathBuf {
    paths.node_dir(node).join("ztunnel").join("ztunnel.sock")
}
fn component_key(kind: &str, node: &str) -> Name {
    (SYSTEM_NAMESPACE.to_owned(), format!("{kind}-{node}"))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Starts ztunnel and the node agent on every node.
pub fn start(
    paths: &MeshPaths,
    cluster: &ClusterConfig,
    supervisor: &Supervisor,
    bins: &Binaries,
) -> Result<(), Error> {
    for node in &cluster.nodes {
        let n = &node.name;
        for dir in [
            pod_meta_dir(paths, n),
            agent_run_dir(paths, n),
            paths.node_dir(n).join("ztunnel"),
            paths.node_dir(n).join("bin"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| Error::file(&dir, e))?;
        }
        let log = |kind: &str| paths.node_dir(n).join(format!("{kind}.log"));
        let rust_log = std::env::var("MESHCTL_COMPONENT_LOG").unwrap_or_else(|_| "info".into());
        let path_env = (
            "PATH".to_owned(),
            std::env::var("PATH").unwrap_or_else(|_| {
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
            }),
        );
        let ztunnel = ContainerSpec {
            name: ZTUNNEL.into(),
            argv: vec![s(&bins.ztunnel)],
            env: vec![
                (
                    "XDS_ADDRESS".into(),
                    format!("http://127.0.0.1:{}", crate::control_plane::NODE_PORT),
                ),
                (
                    "CA_ADDRESS".into(),
                    format!("http://127.0.0.1:{}", crate::control_plane::NODE_PORT),
                ),
                (
                    "AUTH_TOKEN".into(),
                    s(&crate::control_plane::token_path(paths, n)),
                ),
                ("POD_NAME".into(), format!("ztunnel-{n}")),
                ("INPOD_UDS".into(), s(&zds_socket(paths, n))),
                ("NODE_NAME".into(), n.clone()),
                ("TRUST_DOMAIN".into(), cluster.trust_domain.clone()),
                ("POD_NAMESPACE".into(), SYSTEM_NAMESPACE.into()),
                ("ZTUNNEL_WORKER_THREADS".into(), "2".into()),
                ("RUST_LOG".into(), rust_log.clone()),
                path_env.clone(),
            ],
            working_dir: None,
            log: log(ZTUNNEL),
        };
        let agent = ContainerSpec {
            name: CNI_AGENT.into(),
            argv: vec![
                s(&bins.cni_agent),
                "--cni-conf-dir".into(),
                s(&paths.cni_conf_dir(n)),
                "--cni-bin-dir".into(),
                s(&paths.node_dir(n).join("bin")),
                "--plugin-binary".into(),
                s(&bins.istio_cni),
                "--run-dir".into(),
                s(&agent_run_dir(paths, n)),
                "--pod-dir".into(),
                s(&pod_meta_dir(paths, n)),
                "--ztunnel-uds".into(),
                s(&zds_socket(paths, n)),
                "--node-name".into(),
                n.clone(),
            ],
            env: vec![("RUST_LOG".into(), rust_log), path_env],
            working_dir: None,
            log: log("cni-agent"),
        };
        let netns = paths.node_netns(n);
        supervisor.start(
            component_key(CNI_AGENT, n),
            netns.clone(),
            RestartPolicy::Always,
            vec![agent],
        );
        supervisor.start(
            component_key(ZTUNNEL, n),
            netns,
            RestartPolicy::Always,
            vec![ztunnel],
        );
    }
    Ok(())
}

fn plugin_installed(paths: &MeshPaths, node: &str) -> bool {
    crate::cni::load_primary(&paths.cni_conf_dir(node))
        .ok()
        .is_some_and(|list| {
            list.plugins
                .iter()
                .any(|p| p.get("type").and_then(|t| t.as_str()) == Some("istio-cni"))
        })
}

fn ztunnel_ready(paths: &MeshPaths, node: &str) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], READY_PORT));
    crate::probe::http_get_path(
        &paths.node_netns(node),
        addr,
        "/healthz/ready",
        Duration::from_millis(500),
    )
    .is_ok_and(|r| r.status == 200)
}

/// Waits until every node's agent installed the plugin and its ztunnel is ready (connected to
/// the agent, snapshot received), so pods created next are captured.
pub fn wait_ready(
    paths: &MeshPaths,
    cluster: &ClusterConfig,
    timeout: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let waiting: Vec<String> = cluster
            .nodes
            .iter()
            .flat_map(|n| {
                let mut w = Vec::new();
                if !plugin_installed(paths, &n.name) {
                    w.push(format!("{}: istio-cni plugin not installed", n.name));
                }
                if !ztunnel_ready(paths, &n.name) {
                    w.push(format!("{}: ztunnel not ready", n.name));
                }
                w
            })
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Mesh {
                mesh: paths.name.clone(),
                detail: format!(
                    "mesh components not ready after {timeout:?}: {} (logs: {}/nodes/<node>/*.log)",
                    waiting.join("; "),
                    paths.root.display()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes (atomically) what the node agent's informer knows about a pod.
pub fn write_pod_meta(
    paths: &MeshPaths,
    pod: &DesiredPod,
    namespace_labels: &BTreeMap<String, String>,
    uid: &str,
    netns: &Path,
    ips: &[IpAddr],
) -> Result<(), Error> {
    let meta = PodMeta {
        uid: uid.to_owned(),
        name: pod.name.clone(),
        namespace: pod.namespace.clone(),
        service_account: pod.spec.service_account().to_owned(),
        node: pod.node.clone(),
        labels: pod.labels.clone(),
        annotations: pod.annotations.clone(),
        namespace_labels: namespace_labels.clone(),
        netns: Some(netns.to_path_buf()),
        ips: ips.to_vec(),
    };
    let dir = pod_meta_dir(paths, &pod.node);
    let path = dir.join(format!("{}.{}.json", pod.namespace, pod.name));
    let tmp = dir.join(format!(".{}.{}.json.tmp", pod.namespace, pod.name));
    let text = serde_json::to_string(&meta).map_err(|e| Error::Usage(e.to_string()))?;
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::file(&path, e))
}

pub fn remove_pod_meta(paths: &MeshPaths, pod: &DesiredPod) {
    let path = pod_meta_dir(paths, &pod.node).join(format!("{}.{}.json", pod.namespace, pod.name));
    let _ = std::fs::remove_file(path);
}

/// `namespace/name` of pods the node agent has enrolled (redirection enabled) on `node`.
pub fn enrolled(paths: &MeshPaths, node: &str) -> Vec<String> {
    let path = agent_run_dir(paths, node).join("pods.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(map) = serde_json::from_str::<BTreeMap<String, serde_json::Value>>(&text) else {
        return Vec::new();
    };
    map.into_iter()
        .filter(|(_, v)| v.get("redirection").and_then(|r| r.as_str()) == Some("enabled"))
        .map(|(k, _)| k)
        .collect()
}

/// ztunnel and node agent per node, with health.
pub fn statuses(
    paths: &MeshPaths,
    cluster: &ClusterConfig,
    supervisor: &Supervisor,
) -> Vec<ComponentStatus> {
    let mut out = Vec::new();
    for node in &cluster.nodes {
        let n = &node.name;
        let running = |kind: &str| {
            supervisor
                .statuses(&component_key(kind, n))
                .is_some_and(|st| crate::supervisor::phase(&st) == "Running")
        };
        out.push(ComponentStatus {
            name: format!("ztunnel-{n}"),
            kind: "ztunnel".into(),
            node: Some(n.clone()),
            healthy: running(ZTUNNEL) && ztunnel_ready(paths, n),
            admin_address: Some(format!(
                "{}:15000 (localhost in {})",
                "127.0.0.1",
                paths.node_netns(n)
            )),
            metrics_address: Some(format!("{}:15020", node.ip)),
        });
        out.push(ComponentStatus {
            name: format!("istio-cni-node-{n}"),
            kind: "cni-agent".into(),
            node: Some(n.clone()),
            healthy: running(CNI_AGENT) && plugin_installed(paths, n),
            admin_address: None,
            metrics_address: None,
        });
    }
    out
}
