//! One pod's life on a node: its network namespace, the CNI chain (ADD, and DEL in reverse), its containers.
//!
//! Creation undoes itself on error, so a pod is either fully there or not at all.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterConfig;
use crate::cni::{self, RuntimeConf};
use crate::error::Error;
use crate::manifest::{PodSpecExt, PortExt, Protocol};
use crate::netns;
use crate::node_agents;
use crate::paths::MeshPaths;
use crate::plan::DesiredPod;
use crate::supervisor::{ContainerSpec, Supervisor};
use crate::topology::NETWORK_NAME;

/// A pod that exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningPod {
    pub desired: DesiredPod,
    pub uid: String,
    pub container_id: String,
    pub netns: String,
    pub ip: Ipv4Addr,
}

/// Longest a pod's processes get to stop when the mesh removes it.
pub const MAX_GRACE: Duration = Duration::from_secs(5);

/// What the mesh itself supplies to a pod it made (a waypoint's) when it starts: the binary its
/// container named `container` runs instead of its command's first word, and environment added
/// to that container.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub container: String,
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
}

pub fn runtime_conf(
    paths: &MeshPaths,
    pod: &DesiredPod,
    uid: &str,
    container_id: &str,
) -> RuntimeConf {
    let netns_name = paths.pod_netns(&pod.namespace, &pod.name);
    RuntimeConf {
        container_id: container_id.to_string(),
        netns: netns::path(&netns_name),
        ifname: "eth0".into(),
        args: cni::k8s_args(&pod.namespace, &pod.name, container_id, uid),
        cni_path: vec![
            paths.node_dir(&pod.node).join("bin"),
            PathBuf::from(cni::SYSTEM_CNI_BIN),
        ],
        exec_netns: paths.node_netns(&pod.node),
    }
}

/// Creates the pod's namespace, runs the node's CNI chain, starts its containers (with `launch`
/// applied).
pub fn create(
    paths: &MeshPaths,
    cluster: &ClusterConfig,
    supervisor: &Supervisor,
    pod: &DesiredPod,
    namespace_labels: &std::collections::BTreeMap<String, String>,
    launch: Option<&Launch>,
) -> Result<RunningPod, Error> {
    let uid = new_uid()?;
    let container_id = uid.replace('-', "");
    let netns_name = paths.pod_netns(&pod.namespace, &pod.name);
    let rt = runtime_conf(paths, pod, &uid, &container_id);
    let dir = paths.pod_dir(&pod.namespace, &pod.name);
    let attempt = || -> Result<RunningPod, Error> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::file(&dir, e))?;
        netns::create(&netns_name)?;
        cni::loopback(&rt, "ADD")?;
        // The node agent's informer (and the istio-cni plugin) learn about the pod here.
        node_agents::write_pod_meta(paths, pod, namespace_labels, &uid, &rt.netns, &[])?;
        let list = cni::load_primary(&paths.cni_conf_dir(&pod.node))?;
        let result = cni::add(&list, &rt, &paths.cni_cache_dir(&pod.node))?;
        let ip = cni::result_ipv4(&result).ok_or_else(|| Error::Pod {
            pod: format!("{}/{}", pod.namespace, pod.name),
            detail: format!("the CNI result has no IPv4 address: {result}"),
        })?;
        node_agents::write_pod_meta(paths, pod, namespace_labels, &uid, &rt.netns, &[ip.into()])?;
        let running = RunningPod {
            desired: pod.clone(),
            uid: uid.clone(),
            container_id: container_id.clone(),
            netns: netns_name.clone(),
            ip,
        };
        let node_ip = cluster.node(&pod.node).map(|n| n.ip);
        let containers = container_specs(&running, node_ip, &dir, launch);
        supervisor.start(
            pod.key(),
            netns_name.clone(),
            pod.spec.restart(),
            containers,
        );
        Ok(running)
    };
    attempt().inspect_err(|_| {
        let _ = cni::del(
            NETWORK_NAME,
            cni::load_primary(&paths.cni_conf_dir(&pod.node))
                .ok()
                .as_ref(),
            &rt,
            &paths.cni_cache_dir(&pod.node),
        );
        node_agents::remove_pod_meta(paths, pod);
        let _ = netns::delete(&netns_name, Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&dir);
    })
}

/// Stops the containers of `pods`, then runs CNI DEL and removes each namespace. Errors are collected, not fatal.
pub fn delete(paths: &MeshPaths, supervisor: &Supervisor, pods: &[RunningPod]) -> Vec<Error> {
    let grace = pods
        .iter()
        .map(|p| {
            let seconds = p.desired.spec.termination_grace_period_seconds;
            Duration::from_secs(u64::try_from(seconds.unwrap_or(30)).unwrap_or(0))
        })
        .max()
        .unwrap_or_default()
        .min(MAX_GRACE);
    let keys: Vec<_> = pods.iter().map(|p| p.desired.key()).collect();
    supervisor.stop(&keys, grace);
    let mut errors = Vec::new();
    for pod in pods {
        let d = &pod.desired;
        let rt = runtime_conf(paths, d, &pod.uid, &pod.container_id);
        let fallback = cni::load_primary(&paths.cni_conf_dir(&d.node)).ok();
        if let Err(e) = cni::del(
            NETWORK_NAME,
            fallback.as_ref(),
            &rt,
            &paths.cni_cache_dir(&d.node),
        ) {
            errors.push(e);
        }
        let _ = cni::loopback(&rt, "DEL");
        node_agents::remove_pod_meta(paths, d);
        if let Err(e) = netns::delete(&pod.netns, Duration::from_millis(500)) {
            errors.push(e);
        }
        let dir = paths.pod_dir(&d.namespace, &d.name);
        let _ = std::fs::remove_dir_all(&dir);
    }
    errors
}

/// The processes of a pod: command + args, the environment (with the downward API filled in and `HOSTNAME` set to
/// the pod name, as in Kubernetes), and a log file per container; then `launch`.
pub(crate) fn container_specs(
    pod: &RunningPod,
    node_ip: Option<Ipv4Addr>,
    dir: &std::path::Path,
    launch: Option<&Launch>,
) -> Vec<ContainerSpec> {
    let d = &pod.desired;
    let field = |path: &str| -> String {
        match path {
            "metadata.name" => d.name.clone(),
            "metadata.namespace" => d.namespace.clone(),
            "metadata.uid" => pod.uid.clone(),
            "spec.nodeName" => d.node.clone(),
            "spec.serviceAccountName" => d.spec.service_account().to_string(),
            "status.podIP" => pod.ip.to_string(),
            "status.hostIP" => node_ip.map(|i| i.to_string()).unwrap_or_default(),
            _ => String::new(),
        }
    };
    let base_path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    d.spec
        .containers
        .iter()
        .map(|c| {
            let mut env = vec![
                ("PATH".to_string(), base_path.clone()),
                ("HOSTNAME".to_string(), d.name.clone()),
            ];
            for e in c.env.iter().flatten() {
                let value = match (&e.value, &e.value_from) {
                    (Some(v), _) => v.clone(),
                    (None, Some(from)) => from
                        .field_ref
                        .as_ref()
                        .map_or_else(String::new, |f| field(&f.field_path)),
                    (None, None) => String::new(),
                };
                env.retain(|(k, _)| *k != e.name);
                env.push((e.name.clone(), value));
            }
            let mut argv: Vec<String> = (c.command.iter().flatten())
                .chain(c.args.iter().flatten())
                .cloned()
                .collect();
            if let Some(l) = launch.filter(|l| l.container == c.name) {
                if let Some(first) = argv.first_mut() {
                    *first = l.binary.display().to_string();
                }
                for (k, v) in &l.env {
                    env.retain(|(name, _)| name != k);
                    env.push((k.clone(), v.clone()));
                }
            }
            ContainerSpec {
                name: c.name.clone(),
                argv,
                env,
                working_dir: c.working_dir.as_ref().map(PathBuf::from),
                log: dir.join(format!("{}.log", c.name)),
            }
        })
        .collect()
}

/// A random UUID from the kernel.
fn new_uid() -> Result<String, Error> {
    let path = std::path::Path::new("/proc/sys/kernel/random/uuid");
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::file(path, e))
}

/// Whether the pod is ready: every declared TCP container port accepts a connection on the pod's
/// address, and a waypoint answers `GET /healthz/ready` on its readiness port with 200 (it has its
/// configuration and its certificate).
pub fn ready(pod: &RunningPod) -> bool {
    ports_ready(pod)
        && (pod.desired.waypoint.is_none()
            || crate::probe::http_get_path(
                &pod.netns,
                (pod.ip, crate::plan::READINESS_PORT).into(),
                "/healthz/ready",
                Duration::from_millis(500),
            )
            .is_ok_and(|r| r.status == 200))
}

/// Whether every declared TCP container port of the pod accepts a connection on the pod's address.
fn ports_ready(pod: &RunningPod) -> bool {
    let ports: Vec<u16> = pod
        .desired
        .spec
        .container_ports()
        .filter(|p| p.proto() == Protocol::Tcp)
        .map(PortExt::number)
        .collect();
    if ports.is_empty() {
        return true;
    }
    let ip = pod.ip;
    netns::run_in(&pod.netns, move || {
        ports.iter().all(|p| {
            std::net::TcpStream::connect_timeout(&(ip, *p).into(), Duration::from_millis(300))
                .is_ok()
        })
    })
    .unwrap_or(false)
}

impl RunningPod {
    /// The pod as the Kubernetes API would show it: spec with its node, the IP the CNI chain
    /// gave it, Ready, and its Deployment as owner.
    pub fn as_pod_object(&self) -> crate::manifest::Pod {
        use crate::manifest::{ObjectMeta, OwnerReference, Pod, PodCondition, PodStatus};
        let labels = |l: &BTreeMap<String, String>| (!l.is_empty()).then(|| l.clone());
        let d = &self.desired;
        let owner_references = d
            .owner
            .as_deref()
            .and_then(|o| o.strip_prefix("Deployment "))
            .and_then(|o| o.rsplit('/').next())
            .map(|name| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: name.to_owned(),
                    // The API server requires one; the local mesh's Deployments are not API objects.
                    uid: format!("meshctl-{name}"),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]
            });
        let mut spec = d.spec.clone();
        spec.node_name = Some(d.node.clone());
        Pod {
            metadata: ObjectMeta {
                name: Some(d.name.clone()),
                namespace: Some(d.namespace.clone()),
                labels: labels(&d.labels),
                annotations: labels(&d.annotations),
                owner_references,
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: Some(PodStatus {
                pod_ip: Some(self.ip.to_string()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }
}
