//! The local mesh as the workload API: running pods, Services and security policies → the node
//! tunnel's configuration (spec §4 resources in the §11 file shape), as istiod would derive it.
//!
//! Owns the translation (pure, table-tested); the daemon writes its output to the file every
//! ztunnel watches. Does not start anything. Policy translation is in [`authz`].

use control_plane::authz;

use std::collections::BTreeMap;

use ztunnel::local_config::LocalConfig;
use ztunnel::model::{NamespacedHostname, Protocol, Service, Workload};

use crate::cluster::ClusterConfig;
use crate::manifest::ManifestObject;
use crate::plan::{self, Name, Plan};
use crate::pods::RunningPod;

/// Namespace or pod label that enrolls pods in the ambient mesh (`none` opts a pod out).
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// Cluster id istiod uses by default.
pub const CLUSTER_ID: &str = "Kubernetes";

/// Whether `pod` is captured by its node's tunnel.
pub fn ambient_enabled(plan: &Plan, pod: &plan::DesiredPod) -> bool {
    match pod.labels.get(DATAPLANE_MODE).map(String::as_str) {
        Some("none") => false,
        Some("ambient") => true,
        _ => plan
            .namespaces
            .get(&pod.namespace)
            .and_then(|l| l.get(DATAPLANE_MODE))
            .is_some_and(|m| m == "ambient"),
    }
}

/// `<name>.<namespace>.svc.cluster.local`.
pub fn service_hostname(namespace: &str, name: &str) -> String {
    format!("{name}.{namespace}.svc.cluster.local")
}

/// istiod's workload uid for a pod: `cluster/group/kind/namespace/name`.
pub fn workload_uid(namespace: &str, name: &str) -> String {
    format!("{CLUSTER_ID}//Pod/{namespace}/{name}")
}

fn workload(
    cluster: &ClusterConfig,
    plan: &Plan,
    pod: &RunningPod,
    policies: &[String],
) -> Workload {
    let d = &pod.desired;
    let label = |k: &str| d.labels.get(k).cloned();
    let owner = d
        .owner
        .as_deref()
        .and_then(|o| o.rsplit('/').next())
        .map(str::to_owned);
    let mut services = BTreeMap::new();
    for svc in plan.services.values() {
        if svc.namespace != d.namespace
            || !svc
                .selector
                .as_ref()
                .is_some_and(|s| plan::selects(s, &d.labels))
        {
            continue;
        }
        let ports = svc
            .ports
            .iter()
            .filter_map(|p| plan::target_port(p, &d.spec).map(|t| (p.port, t)))
            .collect();
        services.insert(
            NamespacedHostname::new(&svc.namespace, service_hostname(&svc.namespace, &svc.name)),
            ports,
        );
    }
    let name = owner.clone().unwrap_or_else(|| d.name.clone());
    Workload {
        uid: workload_uid(&d.namespace, &d.name),
        name: d.name.clone(),
        namespace: d.namespace.clone(),
        workload_ips: vec![pod.ip.into()],
        protocol: if ambient_enabled(plan, d) {
            Protocol::Hbone
        } else {
            Protocol::Tcp
        },
        trust_domain: cluster.trust_domain.clone(),
        service_account: d.spec.service_account().to_owned(),
        node: d.node.clone(),
        canonical_name: label("service.istio.io/canonical-name")
            .or_else(|| label("app.kubernetes.io/name"))
            .or_else(|| label("app"))
            .unwrap_or_else(|| name.clone()),
        canonical_revision: label("service.istio.io/canonical-revision")
            .or_else(|| label("app.kubernetes.io/version"))
            .or_else(|| label("version"))
            .unwrap_or_else(|| "latest".into()),
        workload_type: if owner.is_some() { "deployment" } else { "pod" }.into(),
        workload_name: name,
        services,
        authorization_policies: policies.to_vec(),
        cluster_id: CLUSTER_ID.into(),
        ..Workload::default()
    }
}

fn services(plan: &Plan) -> Vec<Service> {
    plan.services
        .values()
        .map(|s| Service {
            name: s.name.clone(),
            namespace: s.namespace.clone(),
            hostname: service_hostname(&s.namespace, &s.name),
            vips: s
                .cluster_ip
                .map(|ip| ztunnel::model::NetworkAddress::new("", ip.into()))
                .into_iter()
                .collect(),
            ports: s
                .ports
                .iter()
                .map(|p| {
                    let target = match &p.target_port {
                        None => p.port,
                        Some(crate::manifest::IntOrString::Int(t)) => *t,
                        Some(crate::manifest::IntOrString::Str(_)) => 0,
                    };
                    (p.port, target)
                })
                .collect(),
            ..Service::default()
        })
        .collect()
}

/// The whole tunnel configuration of the mesh.
pub fn build(
    cluster: &ClusterConfig,
    plan: &Plan,
    pods: &BTreeMap<Name, RunningPod>,
    objects: &[ManifestObject],
) -> LocalConfig {
    let translated = authz::translate(objects);
    let workloads = pods
        .values()
        .map(|p| {
            let selected: Vec<String> = translated
                .selectors
                .iter()
                .filter(|(ns, sel, _)| {
                    *ns == p.desired.namespace && plan::selects(sel, &p.desired.labels)
                })
                .map(|(_, _, key)| key.clone())
                .collect();
            workload(cluster, plan, p, &selected)
        })
        .collect();
    LocalConfig {
        workloads,
        services: services(plan),
        policies: translated.policies,
    }
}

/// Writes `config` atomically to `path` (the tunnels re-read it when it changes). JSON, which
/// is YAML too: serde's YAML writer would spell enums as `!Tag`s, while spec §11 spells them as
/// `{Exact: "…"}` maps.
pub fn write(path: &std::path::Path, config: &LocalConfig) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(config).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
