//! The local mesh's control plane: the `control-plane` binary, supervised in the daemon's own
//! namespace on loopback ports chosen at `up`, fed by a manifest directory that the daemon
//! keeps equal to the mesh as it runs (pods as the Kubernetes API would show them, with their
//! node, IP and readiness; Services with their cluster IP).
//!
//! Each node netns reaches it at `127.0.0.1:15012` (xDS and CA on one port, plaintext as istiod
//! allows locally): a forwarder thread of the daemon accepts there and connects to the control
//! plane. Pods that talk to it themselves (waypoints) reach it at their node's pod-bridge address,
//! `<gateway>:15012` (e.g. `10.244.0.1:15012`, see [`pod_address`]): the same forwarder also
//! listens there, in the node netns, where a pod's default route leads. That address exists only
//! once the CNI `bridge` plugin has made `cni0` for the node's first pod, so the listener is bound
//! with `IP_FREEBIND` at `up` and starts receiving as soon as the address appears. Nothing on the
//! path filters it: waypoint pods are not captured, and the node's only nftables table
//! (`services`) rewrites Service addresses alone.
//!
//! CA tokens, listed in `control-plane/tokens.json` (mode 0600, rewritten on every change and
//! re-read by the control plane on every request): each node tunnel has its node's token
//! (`nodes/<node>/istio-token`), which binds it to that node; each waypoint pod has a token of its
//! own (`pods/<ns>/<pod>/istio-token`, issued before the pod starts, withdrawn when it goes) that
//! authenticates it as its service account only. xDS is not authenticated.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ::control_plane::ca::TokenSubject;

use crate::cluster::NodeConfig;
use crate::error::Error;
use crate::manifest::{ManifestObject, MetaExt, Object, PodSpecExt, RestartPolicy};
use crate::netns;
use crate::paths::MeshPaths;
use crate::plan::{DesiredPod, Name, Plan};
use crate::pods::RunningPod;
use crate::supervisor::{ContainerSpec, Supervisor};

/// Where node tunnels find xDS and the CA inside their node netns (and pods at their gateway).
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
/// Path of a pod's own CA token (mode 0600), for pods that have one (waypoints).
pub fn pod_token_path(paths: &MeshPaths, ns: &str, pod: &str) -> PathBuf {
    paths.pod_dir(ns, pod).join("istio-token")
}
pub fn log_path(paths: &MeshPaths) -> PathBuf {
    dir(paths).join("control-plane.log")
}

/// xDS and CA address for pods of `node` (`http://<node's pod gateway>:15012`).
pub fn pod_address(node: &NodeConfig) -> String {
    format!("http://{}:{NODE_PORT}", node.gateway())
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

/// The running control plane: its addresses, its CA tokens and the per-node forwarders (stopped
/// on drop).
pub struct ControlPlane {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    /// Every token of `tokens.json`: the nodes' and the pods'.
    tokens: BTreeMap<String, TokenSubject>,
    /// Pod → its token, for pods with one.
    pod_tokens: BTreeMap<Name, String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(test)]
impl ControlPlane {
    /// One that runs nothing, holding `tokens`: for tests of what the mesh issues.
    pub(crate) fn detached(tokens: BTreeMap<String, TokenSubject>) -> Self {
        ControlPlane {
            grpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens,
            pod_tokens: BTreeMap::new(),
            stop: None,
            thread: None,
        }
    }
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
    nodes: &[NodeConfig],
    trust_domain: &str,
    supervisor: &Supervisor,
    binary: &std::path::Path,
    kubeconfig: Option<&std::path::Path>,
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
        write_private(&token_path(paths, &node.name), &token)?;
        tokens.insert(token, TokenSubject::Node(node.name.clone()));
    }
    write_tokens(paths, &tokens)?;

    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let s = |p: PathBuf| p.display().to_string();
    let source = match kubeconfig {
        Some(k) => ["--kubeconfig".to_owned(), k.display().to_string()],
        None => ["--manifests".to_owned(), s(manifests)],
    };
    let spec = ContainerSpec {
        name: COMPONENT.into(),
        argv: vec![
            binary.display().to_string(),
            "serve".into(),
            source[0].clone(),
            source[1].clone(),
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
        for ip in [Ipv4Addr::LOCALHOST, node.gateway()] {
            let addr = SocketAddrV4::new(ip, NODE_PORT);
            let listener =
                netns::run_in(&paths.node_netns(&node.name), move || bind_freebind(addr))?
                    .map_err(|e| mesh_err(format!("binding {addr} in node {}: {e}", node.name)))?;
            listeners.push(listener);
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("control-plane-link".into())
        .spawn(move || forward(listeners, grpc, stop_rx))
        .map_err(|e| mesh_err(format!("starting the forwarder thread: {e}")))?;
    let cp = ControlPlane {
        grpc,
        admin,
        tokens,
        pod_tokens: BTreeMap::new(),
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    wait_serving(paths, admin, timeout)?;
    Ok(cp)
}

/// A non-blocking TCP listener on `addr`, bound even before `addr` is assigned (`IP_FREEBIND`).
fn bind_freebind(addr: SocketAddrV4) -> std::io::Result<std::net::TcpListener> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, listen, setsockopt, socket,
        sockopt,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::IpFreebind, &true)?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(addr))?;
    listen(&fd, Backlog::new(128)?)?;
    Ok(std::net::TcpListener::from(fd))
}

fn write_tokens(paths: &MeshPaths, tokens: &BTreeMap<String, TokenSubject>) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(tokens).map_err(|e| Error::Mesh {
        mesh: paths.name.clone(),
        detail: e.to_string(),
    })?;
    write_private(&tokens_file(paths), &text)
}

impl ControlPlane {
    /// Gives `pod` a CA token of its own, bound to its service account and nothing else: written
    /// to [`pod_token_path`] (mode 0600, the pod's directory is made if needed) and listed in
    /// `tokens.json` before the call returns. A token the pod already had is withdrawn.
    pub fn issue_pod_token(
        &mut self,
        paths: &MeshPaths,
        pod: &DesiredPod,
    ) -> Result<PathBuf, Error> {
        self.revoke_pod_token(paths, &pod.key());
        let dir = paths.pod_dir(&pod.namespace, &pod.name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::file(&dir, e))?;
        let path = pod_token_path(paths, &pod.namespace, &pod.name);
        let token = random_token();
        write_private(&path, &token)?;
        self.tokens.insert(
            token.clone(),
            TokenSubject::ServiceAccount {
                service_account: format!("{}/{}", pod.namespace, pod.spec.service_account()),
            },
        );
        self.pod_tokens.insert(pod.key(), token);
        write_tokens(paths, &self.tokens)?;
        Ok(path)
    }

    /// Withdraws a pod's token (from `tokens.json` and its file); nothing for pods without one.
    pub fn revoke_pod_token(&mut self, paths: &MeshPaths, pod: &Name) {
        let Some(token) = self.pod_tokens.remove(pod) else {
            return;
        };
        self.tokens.remove(&token);
        if let Err(e) = write_tokens(paths, &self.tokens) {
            tracing::warn!(error = %e, "cannot withdraw a pod's CA token");
        }
        let _ = std::fs::remove_file(pod_token_path(paths, &pod.0, &pod.1));
    }

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

/// Writes the mesh as the control plane should see it ([`documents`]) to `manifests/mesh.yaml`,
/// through a temporary file and a rename.
pub fn publish(
    paths: &MeshPaths,
    objects: &[ManifestObject],
    plan: &Plan,
    pods: &BTreeMap<Name, RunningPod>,
) -> Result<(), Error> {
    let dir = manifests_dir(paths);
    let path = dir.join("mesh.yaml");
    let tmp = dir.join(".mesh.yaml.tmp");
    let mut text = String::new();
    for d in documents(objects, plan, pods) {
        text.push_str("---\n");
        text.push_str(&serde_json::to_string(&d).map_err(|e| Error::Usage(e.to_string()))?);
        text.push('\n');
    }
    std::fs::write(&tmp, text).map_err(|e| Error::file(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::file(&path, e))
}

/// The mesh as the control plane should see it: every applied object except Pods and
/// Deployments, with each Service's allocated cluster IP; the Services the plan made itself (a
/// waypoint Gateway's); then each running pod as a Pod object with node, IP, owner and readiness.
pub fn documents(
    objects: &[ManifestObject],
    plan: &Plan,
    pods: &BTreeMap<Name, RunningPod>,
) -> Vec<serde_json::Value> {
    let mut docs: Vec<serde_json::Value> = Vec::new();
    let mut listed = std::collections::BTreeSet::new();
    for o in objects {
        match &o.object {
            Object::Pod(_) | Object::Deployment(_) | Object::Cluster(_) => {}
            Object::Service(svc) => {
                let mut svc = svc.clone();
                let key = (
                    o.object.namespace().unwrap_or_default().to_owned(),
                    svc.metadata.name().to_owned(),
                );
                if let Some(ip) = plan.services.get(&key).and_then(|s| s.cluster_ip) {
                    svc.spec.get_or_insert_default().cluster_ip = Some(ip.to_string());
                }
                listed.insert(key);
                docs.push(crate::manifest::to_document(&Object::Service(svc)));
            }
            other => docs.push(crate::manifest::to_document(other)),
        }
    }
    for (key, svc) in &plan.services {
        if !listed.contains(key) {
            docs.push(crate::manifest::to_document(&Object::Service(
                service_object(svc),
            )));
        }
    }
    for p in pods.values() {
        docs.push(crate::manifest::to_document(&Object::Pod(
            p.as_pod_object(),
        )));
    }
    docs
}

/// The mesh as the API server should hold it when the mesh runs on one: the [`documents`], with every pod as a
/// kubelet reports it, plus the namespaces and service accounts the mesh implies (`default` and `kube-*`
/// namespaces exist already and are left alone).
pub fn api_documents(
    objects: &[ManifestObject],
    plan: &Plan,
    pods: &BTreeMap<Name, RunningPod>,
) -> Vec<serde_json::Value> {
    use serde_json::json;
    // The mesh's own namespace, where the control plane keeps its leader Lease.
    let mut docs = vec![json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": crate::node_agents::SYSTEM_NAMESPACE}})];
    for (ns, labels) in &plan.namespaces {
        if ns != "default" && !ns.starts_with("kube-") {
            docs.push(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": labels}}));
        }
    }
    for (ns, sa) in &plan.service_accounts {
        docs.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": sa, "namespace": ns}}));
    }
    let keyed = |d: &serde_json::Value| {
        let s = |p: &str| {
            d.pointer(p)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        (s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
    };
    let implied: std::collections::BTreeSet<_> = docs.iter().map(keyed).collect();
    for d in documents(objects, plan, pods) {
        let d = if d.get("kind").and_then(serde_json::Value::as_str) == Some("Pod") {
            crate::kube_mirror::kubelet_view(d, None)
        } else {
            d
        };
        if implied.contains(&keyed(&d)) {
            docs.retain(|o| keyed(o) != keyed(&d));
        }
        docs.push(d);
    }
    docs
}

fn service_object(svc: &crate::plan::DesiredService) -> crate::manifest::Service {
    use crate::manifest::{ObjectMeta, Service, ServiceSpec};
    Service {
        metadata: ObjectMeta {
            name: Some(svc.name.clone()),
            namespace: Some(svc.namespace.clone()),
            labels: (!svc.labels.is_empty()).then(|| svc.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: svc.selector.clone(),
            ports: Some(svc.ports.clone()),
            cluster_ip: Some(
                svc.cluster_ip
                    .map_or_else(|| "None".to_owned(), |ip| ip.to_string()),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests;
