//! The pure decision: from the objects of a mesh (and what already runs) to the pods and Services that should
//! exist, or an error that names the object and the field. Nothing is created before a plan is complete, so a bad
//! manifest never leaves a mesh half-created.
//!
//! Owns: duplicates, namespaces and service accounts, Deployment expansion, waypoint Gateways' pods and Services
//! (`plan/waypoints.rs`), pod placement and per-node address capacity, Service address allocation, selectors and
//! endpoints. Does not own creating anything.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterConfig;
use crate::manifest::semantics::{self, ClusterIp};
use crate::manifest::{
    DeploymentExt, IntOrString, ManifestError, ManifestObject, MetaExt, Object, ObjectKey, PodExt,
    PodSpec, PodSpecExt, PortExt, Service, ServiceExt, ServicePort,
};

/// `(namespace, name)`.
pub type Name = (String, String);

/// A pod that should run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredPod {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: PodSpec,
    /// `Deployment ns/name` for pods a Deployment made.
    pub owner: Option<String>,
    /// The Gateway (same namespace) whose waypoint this pod is: the mesh runs its `waypoint` binary
    /// and gives it the control plane's address and a CA token of its own when it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<String>,
    /// A digest of everything that makes the pod what it is; a change means the pod is replaced.
    pub revision: String,
}

impl DesiredPod {
    pub fn key(&self) -> Name {
        (self.namespace.clone(), self.name.clone())
    }
}

/// A Service that should exist, with its address (`None`: headless).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredService {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub cluster_ip: Option<Ipv4Addr>,
    pub selector: Option<BTreeMap<String, String>>,
    pub ports: Vec<ServicePort>,
}

/// What already runs, which a new plan keeps where it can.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    /// Running pods: their node and revision.
    pub pods: BTreeMap<Name, (String, String)>,
    /// Allocated Service addresses.
    pub service_ips: BTreeMap<Name, Option<Ipv4Addr>>,
}

/// The complete desired state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Namespace name → labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub service_accounts: BTreeSet<Name>,
    pub pods: BTreeMap<Name, DesiredPod>,
    pub services: BTreeMap<Name, DesiredService>,
}

/// Merges `incoming` over `current` (same kind, namespace and name: replaced) and plans the result.
pub fn build(
    cluster: &ClusterConfig,
    current: &[ManifestObject],
    incoming: &[ManifestObject],
    existing: &Existing,
) -> Result<(Vec<ManifestObject>, Plan), ManifestError> {
    crate::local_rules::check(incoming)?;
    let mut seen: BTreeMap<ObjectKey, &ManifestObject> = BTreeMap::new();
    for obj in incoming {
        if matches!(obj.object, Object::Cluster(_)) {
            continue;
        }
        if let Some(first) = seen.insert(obj.object.key(), obj) {
            return Err(ManifestError::at(
                obj,
                "metadata.name",
                format!("duplicate: also defined in {}", first.source),
            ));
        }
    }
    let mut merged: BTreeMap<ObjectKey, ManifestObject> = current
        .iter()
        .map(|o| (o.object.key(), o.clone()))
        .collect();
    for (key, obj) in seen {
        merged.insert(key, obj.clone());
    }
    let objects: Vec<ManifestObject> = merged.into_values().collect();
    let plan = plan_objects(cluster, &objects, existing)?;
    Ok((objects, plan))
}

fn plan_objects(
    cluster: &ClusterConfig,
    objects: &[ManifestObject],
    existing: &Existing,
) -> Result<Plan, ManifestError> {
    let mut plan = Plan::default();
    plan.namespaces.insert("default".into(), BTreeMap::new());
    for obj in objects {
        if let Object::Namespace(ns) = &obj.object {
            plan.namespaces
                .insert(ns.metadata.name().to_owned(), ns.metadata.labels().clone());
        }
    }
    for ns in plan.namespaces.keys() {
        plan.service_accounts.insert((ns.clone(), "default".into()));
    }
    for (_, ns, gw) in waypoints::gateways(objects) {
        plan.service_accounts.insert((ns.into(), gw.into()));
    }
    for obj in objects {
        if let Some(ns) = obj.object.namespace()
            && !plan.namespaces.contains_key(ns)
        {
            return Err(ManifestError::at(
                obj,
                "metadata.namespace",
                format!("namespace {ns:?} not found"),
            ));
        }
        if let Object::ServiceAccount(sa) = &obj.object {
            plan.service_accounts.insert((
                obj.object.namespace().unwrap_or_default().into(),
                sa.metadata.name().to_owned(),
            ));
        }
    }
    let mut pending: Vec<(&ManifestObject, DesiredPod, &str)> = Vec::new();
    for obj in objects {
        let ns = obj.object.namespace().unwrap_or_default().to_string();
        match &obj.object {
            Object::Pod(p) => {
                let pod = desired_pod(
                    &ns,
                    p.metadata.name(),
                    p.metadata.labels(),
                    p.metadata.annotations(),
                    p.pod_spec(),
                    None,
                );
                pending.push((obj, pod, "spec"));
            }
            Object::Deployment(d) => {
                let template = d.spec.as_ref().map(|s| &s.template);
                let hash = digest(&serde_json::to_string(&template).unwrap_or_default());
                let mut labels = d.template_meta().labels().clone();
                labels.insert("pod-template-hash".into(), hash[..10].to_string());
                let deployment = d.metadata.name();
                for i in 0..d.replicas() {
                    let name = format!("{deployment}-{}-{i}", &hash[..10]);
                    let owner = Some(format!("Deployment {ns}/{deployment}"));
                    let annotations = d.template_meta().annotations();
                    let pod =
                        desired_pod(&ns, &name, &labels, annotations, d.template_spec(), owner);
                    pending.push((obj, pod, "spec.template.spec"));
                }
            }
            Object::Gateway(g) if g.is_waypoint() => {
                let pod = waypoints::pod(&ns, g.metadata.name(), &cluster.trust_domain);
                pending.push((obj, pod, "spec"));
            }
            _ => {}
        }
    }
    place_pods(cluster, &mut plan, pending, existing)?;
    for obj in objects {
        if let Object::Service(svc) = &obj.object {
            let desired = plan_service(cluster, &plan, obj, svc, existing)?;
            plan.services
                .insert((desired.namespace.clone(), desired.name.clone()), desired);
        }
    }
    // After the manifests' Services, so adding a waypoint never moves their addresses.
    for (obj, ns, gw) in waypoints::gateways(objects) {
        let key: Name = (ns.into(), gw.into());
        if plan.services.contains_key(&key) {
            continue;
        }
        let ip = assign_ip(cluster, &plan, &key, existing)
            .ok_or_else(|| exhausted(cluster, obj, "metadata.name"))?;
        plan.services.insert(key, waypoints::service(ns, gw, ip));
    }
    Ok(plan)
}

fn desired_pod(
    ns: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    spec: &PodSpec,
    owner: Option<String>,
) -> DesiredPod {
    let revision = digest(&serde_json::to_string(&(labels, annotations, spec)).unwrap_or_default());
    DesiredPod {
        namespace: ns.into(),
        name: name.into(),
        node: String::new(),
        labels: labels.clone(),
        annotations: annotations.clone(),
        spec: spec.clone(),
        owner,
        waypoint: None,
        revision,
    }
}

/// Places pods: an unchanged running pod stays where it is, `spec.nodeName` pins, the rest go to the least-loaded
/// node. A node never gets more pods than its pod CIDR can address.
fn place_pods(
    cluster: &ClusterConfig,
    plan: &mut Plan,
    pending: Vec<(&ManifestObject, DesiredPod, &str)>,
    existing: &Existing,
) -> Result<(), ManifestError> {
    let mut load: BTreeMap<&str, usize> =
        cluster.nodes.iter().map(|n| (n.name.as_str(), 0)).collect();
    let mut unplaced = Vec::new();
    let mut names = BTreeSet::new();
    for (obj, mut pod, at) in pending {
        if !names.insert(pod.key()) {
            return Err(ManifestError::at(
                obj,
                "metadata.name",
                format!("pod name {:?} is already taken", pod.name),
            ));
        }
        let sa = pod.spec.service_account().to_string();
        if !plan
            .service_accounts
            .contains(&(pod.namespace.clone(), sa.clone()))
        {
            return Err(ManifestError::at(
                obj,
                &format!("{at}.serviceAccountName"),
                format!("service account {}/{sa} not found", pod.namespace),
            ));
        }
        let kept = existing
            .pods
            .get(&pod.key())
            .filter(|(_, rev)| *rev == pod.revision)
            .map(|(node, _)| node.clone());
        if let Some(node) = pod.spec.node_name.clone().or(kept) {
            let Some(n) = cluster.node(&node) else {
                let names: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
                return Err(ManifestError::at(
                    obj,
                    &format!("{at}.nodeName"),
                    format!("node {node:?} not found (nodes: {})", names.join(", ")),
                ));
            };
            let used = load.entry(&n.name).or_default();
            if *used >= n.pod_capacity() {
                return Err(ManifestError::at(
                    obj,
                    &format!("{at}.nodeName"),
                    format!(
                        "pod CIDR {} of node {} is exhausted ({} addresses)",
                        n.pod_cidr,
                        n.name,
                        n.pod_capacity()
                    ),
                ));
            }
            *used += 1;
            pod.node = n.name.clone();
            plan.pods.insert(pod.key(), pod);
        } else {
            unplaced.push((obj, pod, at));
        }
    }
    for (obj, mut pod, at) in unplaced {
        let best = cluster
            .nodes
            .iter()
            .filter(|n| load[n.name.as_str()] < n.pod_capacity())
            .min_by_key(|n| load[n.name.as_str()]);
        let Some(node) = best else {
            return Err(ManifestError::at(
                obj,
                &format!("{at}.nodeName"),
                format!(
                    "pod CIDR {} is exhausted: no node has a free pod address",
                    cluster.pod_cidr
                ),
            ));
        };
        *load.entry(&node.name).or_default() += 1;
        pod.node = node.name.clone();
        plan.pods.insert(pod.key(), pod);
    }
    Ok(())
}

fn plan_service(
    cluster: &ClusterConfig,
    plan: &Plan,
    obj: &ManifestObject,
    svc: &Service,
    existing: &Existing,
) -> Result<DesiredService, ManifestError> {
    let ns = obj.object.namespace().unwrap_or_default().to_string();
    let name = svc.metadata.name().to_owned();
    let taken = taken_ips(plan);
    let asked = semantics::cluster_ip(svc.cluster_ip())
        .map_err(|e| ManifestError::at(obj, "spec.clusterIP", e))?;
    let cluster_ip = match asked {
        ClusterIp::Headless => None,
        ClusterIp::Ip(ip) => {
            if !cluster.service_cidr.contains(&ip) || ip == cluster.service_cidr.network() {
                return Err(ManifestError::at(
                    obj,
                    "spec.clusterIP",
                    format!("{ip} is not in the service CIDR {}", cluster.service_cidr),
                ));
            }
            if taken.contains(&ip) {
                return Err(ManifestError::at(
                    obj,
                    "spec.clusterIP",
                    format!("{ip} is already allocated"),
                ));
            }
            Some(ip)
        }
        ClusterIp::Allocate => Some(
            assign_ip(cluster, plan, &(ns.clone(), name.clone()), existing)
                .ok_or_else(|| exhausted(cluster, obj, "spec.clusterIP"))?,
        ),
    };
    if let Some(selector) = svc.selector() {
        let selected: Vec<&DesiredPod> = plan
            .pods
            .values()
            .filter(|p| p.namespace == ns && selects(selector, &p.labels))
            .collect();
        if selected.is_empty() {
            let sel: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Err(ManifestError::at(
                obj,
                "spec.selector",
                format!("selects no pods ({})", sel.join(",")),
            ));
        }
        for (i, port) in svc.ports().iter().enumerate() {
            if let Some(IntOrString::String(pname)) = &port.target_port
                && !selected
                    .iter()
                    .any(|p| named_port(&p.spec, pname, port.proto()).is_some())
            {
                return Err(ManifestError::at(
                    obj,
                    &format!("spec.ports[{i}].targetPort"),
                    format!("no selected pod has a container port named {pname:?}"),
                ));
            }
        }
    }
    Ok(DesiredService {
        namespace: ns,
        name,
        labels: svc.metadata.labels().clone(),
        cluster_ip,
        selector: svc.selector().cloned(),
        ports: svc.ports().to_vec(),
    })
}

fn taken_ips(plan: &Plan) -> BTreeSet<Ipv4Addr> {
    plan.services
        .values()
        .filter_map(|s| s.cluster_ip)
        .collect()
}

fn exhausted(cluster: &ClusterConfig, obj: &ManifestObject, field: &str) -> ManifestError {
    ManifestError::at(
        obj,
        field,
        format!("service CIDR {} is exhausted", cluster.service_cidr),
    )
}

/// The address of Service `key` when it asks for none: the one it already holds, else a new one.
fn assign_ip(
    cluster: &ClusterConfig,
    plan: &Plan,
    key: &Name,
    existing: &Existing,
) -> Option<Ipv4Addr> {
    let taken = taken_ips(plan);
    match existing.service_ips.get(key) {
        Some(Some(ip)) if !taken.contains(ip) => Some(*ip),
        _ => allocate_ip(cluster, &taken, &existing.service_ips),
    }
}

/// The lowest free address from `.10`, never one still held by an existing Service (addresses are not reused
/// while any Service holds them).
fn allocate_ip(
    cluster: &ClusterConfig,
    taken: &BTreeSet<Ipv4Addr>,
    held: &BTreeMap<Name, Option<Ipv4Addr>>,
) -> Option<Ipv4Addr> {
    let held: BTreeSet<Ipv4Addr> = held.values().flatten().copied().collect();
    semantics::lowest_free(
        cluster.service_cidr,
        semantics::FIRST_SERVICE_OFFSET,
        |ip| taken.contains(ip) || held.contains(ip),
    )
}

pub use crate::manifest::semantics::{named_port, selects, target_port};

/// FNV-1a, 64 bits, as 16 hex digits: stable across builds, unlike `DefaultHasher`.
pub fn digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

mod waypoints;

pub use waypoints::{CONTAINER as WAYPOINT_CONTAINER, GATEWAY_NAME_LABEL, READINESS_PORT};

#[cfg(test)]
mod tests;
