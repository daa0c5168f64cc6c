//! The resolved mesh: the cross-object decisions every audience shares. Pods (explicit, or a
//! Deployment's replicas when none of its pods are listed) with their addresses, owners and
//! readiness; Services with their VIPs and waypoints; waypoint Gateways; the route rules, policies,
//! DestinationRules and route extensions (FaultInjection, LocalRateLimit) the Envoy translations
//! read.
//!
//! Addresses are deterministic: pods without `status.podIP` get the lowest free address of the
//! pod CIDR from its second host address on, in `(namespace, name)` order; Services without
//! `spec.clusterIP` get the lowest free address of the service CIDR from its tenth on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::Options;
use crate::manifest::extensions::{FaultInjectionSpec, LocalRateLimitSpec};
use crate::manifest::gateway::{GrpcRouteRule, HttpRouteRule};
use crate::manifest::security::AuthorizationPolicy;
use crate::manifest::semantics::{self, ClusterIp};
use crate::manifest::{
    DeploymentExt, DestinationRule, Gateway, ManifestError, ManifestObject, MetaExt, Object,
    PodExt, PodSpec, PodSpecExt, PortExt, Protocol, ServiceExt, ServicePort,
};

mod waypoints;

pub(super) use waypoints::{GATEWAY_NAME_LABEL, WaypointRef};

/// Namespace or pod label that enrolls pods in the ambient mesh (`none` opts a pod out).
pub(super) const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// Pod label of workloads that speak HBONE themselves (waypoints).
pub(super) const TUNNEL_LABEL: &str = "networking.istio.io/tunnel";
/// The DNS suffix of Service hostnames.
pub(super) const DNS_SUFFIX: &str = "svc.cluster.local";

/// What made a pod, for telemetry (`workload_type`, `workload_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OwnerKind {
    Deployment,
    Job,
    CronJob,
    Pod,
}

#[derive(Debug, Clone)]
pub(super) struct PodView<'a> {
    pub source: &'a ManifestObject,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: &'a PodSpec,
    pub ip: Ipv4Addr,
    pub node: String,
    pub ready: bool,
    pub owner: (OwnerKind, String),
    pub waypoint: Option<WaypointRef>,
}

#[derive(Debug, Clone)]
pub(super) struct ServiceView<'a> {
    pub namespace: String,
    pub name: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    /// `None` for a headless Service.
    pub vip: Option<Ipv4Addr>,
    pub selector: Option<BTreeMap<String, String>>,
    pub ports: Vec<ServicePort>,
    pub waypoint: Option<WaypointRef>,
    /// The object it came from; `None` for a waypoint's Service made from its Gateway.
    pub source: Option<&'a ManifestObject>,
}

/// A waypoint Gateway (class `istio-waypoint`).
#[derive(Debug, Clone)]
pub(super) struct WaypointView<'a> {
    pub namespace: String,
    pub name: String,
    pub gateway: &'a Gateway,
}

/// One rule of an HTTPRoute or GRPCRoute.
#[derive(Debug, Clone, Copy)]
pub(super) enum RouteRule<'a> {
    Http(&'a HttpRouteRule),
    Grpc(&'a GrpcRouteRule),
}

/// A route object: where it came from and its rules.
#[derive(Debug, Clone)]
pub(super) struct RouteView<'a> {
    pub namespace: String,
    pub name: String,
    pub parents: &'a [crate::manifest::gateway::ParentRef],
    pub rules: Vec<RouteRule<'a>>,
}

#[derive(Debug)]
pub(super) struct Mesh<'a> {
    pub options: &'a Options,
    /// Namespace → labels (namespaces without a Namespace object have none).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Node → labels (read for locality; a cluster's Nodes, none in the local mesh).
    pub nodes: BTreeMap<String, BTreeMap<String, String>>,
    /// In `(namespace, name)` order.
    pub pods: Vec<PodView<'a>>,
    /// In `(namespace, name)` order.
    pub services: Vec<ServiceView<'a>>,
    pub gateways: Vec<WaypointView<'a>>,
    /// In `(namespace, name)` order, HTTPRoutes before GRPCRoutes of the same name.
    pub routes: Vec<RouteView<'a>>,
    pub destination_rules: Vec<(&'a ManifestObject, &'a DestinationRule)>,
    /// AuthorizationPolicies with `targetRef(s)` (waypoint policies).
    pub waypoint_policies: Vec<&'a AuthorizationPolicy>,
    /// FaultInjections by `(namespace, name)`.
    pub fault_injections: BTreeMap<(String, String), &'a FaultInjectionSpec>,
    /// LocalRateLimits by `(namespace, name)`.
    pub local_rate_limits: BTreeMap<(String, String), &'a LocalRateLimitSpec>,
}

fn ns_of(obj: &ManifestObject) -> String {
    obj.object.namespace().unwrap_or_default().to_owned()
}

/// The deployment a pod's owner reference points at: a `Deployment`, or a `ReplicaSet` named
/// `<deployment>-<hash>`.
fn owner(meta: &crate::manifest::ObjectMeta) -> (OwnerKind, String) {
    let refs = meta.owner_references();
    let Some(r) = refs
        .iter()
        .find(|r| r.controller == Some(true))
        .or(refs.first())
    else {
        return (OwnerKind::Pod, meta.name().to_owned());
    };
    match r.kind.as_str() {
        "ReplicaSet" => (
            OwnerKind::Deployment,
            r.name
                .rsplit_once('-')
                .map_or(r.name.as_str(), |(d, _)| d)
                .to_owned(),
        ),
        "Deployment" => (OwnerKind::Deployment, r.name.clone()),
        "Job" => (OwnerKind::Job, r.name.clone()),
        "CronJob" => (OwnerKind::CronJob, r.name.clone()),
        _ => (OwnerKind::Pod, r.name.clone()),
    }
}

/// The lowest address of `net` from its `first`-th host on that is not taken (and not the broadcast).
fn allocate(net: Ipv4Net, first: u32, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    semantics::lowest_free(net, first, |ip| taken.contains(ip))
}

/// Pods listed as objects, then the replicas of Deployments none of whose pods are listed. Without address
/// allocation (a Kubernetes source) only pods with `status.podIP`, and no Deployment replicas.
fn collect_pods<'a>(
    objects: &'a [ManifestObject],
    options: &Options,
) -> Result<Vec<PodView<'a>>, ManifestError> {
    let mut pods = Vec::new();
    for obj in objects {
        if let Object::Pod(p) = &obj.object {
            if !options.allocate_addresses && p.pod_ip().is_none() {
                continue;
            }
            pods.push(PodView {
                source: obj,
                namespace: ns_of(obj),
                name: p.metadata.name().to_owned(),
                labels: p.metadata.labels().clone(),
                spec: p.pod_spec(),
                ip: p.pod_ip().unwrap_or(Ipv4Addr::UNSPECIFIED),
                node: p.pod_spec().node_name.clone().unwrap_or_default(),
                ready: p.is_ready(),
                owner: owner(&p.metadata),
                waypoint: None,
            });
        }
    }
    let owned: BTreeSet<(String, String)> = pods
        .iter()
        .filter(|p| p.owner.0 == OwnerKind::Deployment)
        .map(|p| (p.namespace.clone(), p.owner.1.clone()))
        .collect();
    let mut names: BTreeSet<(String, String)> = pods
        .iter()
        .map(|p| (p.namespace.clone(), p.name.clone()))
        .collect();
    for obj in objects.iter().filter(|_| options.allocate_addresses) {
        let Object::Deployment(d) = &obj.object else {
            continue;
        };
        let ns = ns_of(obj);
        let deployment = d.metadata.name();
        if owned.contains(&(ns.clone(), deployment.to_owned())) {
            continue;
        }
        let spec = d.template_spec();
        for i in 0..d.replicas() {
            let name = format!("{deployment}-{i}");
            if !names.insert((ns.clone(), name.clone())) {
                return Err(ManifestError::at(
                    obj,
                    "spec.replicas",
                    format!("replica pod name {name:?} is already taken by a Pod"),
                ));
            }
            pods.push(PodView {
                source: obj,
                namespace: ns.clone(),
                name,
                labels: d.template_meta().labels().clone(),
                spec,
                ip: Ipv4Addr::UNSPECIFIED,
                node: spec.node_name.clone().unwrap_or_default(),
                ready: true,
                owner: (OwnerKind::Deployment, deployment.to_owned()),
                waypoint: None,
            });
        }
    }
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(pods)
}

fn assign_pod_ips(pods: &mut [PodView<'_>], net: Ipv4Net) -> Result<(), ManifestError> {
    let mut taken: BTreeSet<Ipv4Addr> = pods
        .iter()
        .map(|p| p.ip)
        .filter(|ip| !ip.is_unspecified())
        .collect();
    for p in pods.iter_mut().filter(|p| p.ip.is_unspecified()) {
        let ip = allocate(net, 2, &taken).ok_or_else(|| {
            ManifestError::at(
                p.source,
                "status.podIP",
                format!(
                    "pod CIDR {net} is exhausted (pod {}/{})",
                    p.namespace, p.name
                ),
            )
        })?;
        taken.insert(ip);
        p.ip = ip;
    }
    Ok(())
}

fn collect_services<'a>(
    objects: &'a [ManifestObject],
    net: Ipv4Net,
    allocating: bool,
) -> Result<Vec<ServiceView<'a>>, ManifestError> {
    let mut services = Vec::new();
    let mut taken: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut pending = Vec::new();
    for obj in objects {
        let Object::Service(s) = &obj.object else {
            continue;
        };
        let ns = ns_of(obj);
        let name = s.metadata.name();
        let asked = semantics::cluster_ip(s.cluster_ip())
            .map_err(|e| ManifestError::at(obj, "spec.clusterIP", e))?;
        let vip = match asked {
            ClusterIp::Headless => None,
            ClusterIp::Allocate if !allocating => None,
            ClusterIp::Allocate => {
                pending.push(services.len());
                None
            }
            ClusterIp::Ip(ip) => {
                let me = format!("{ns}/{name}");
                if let Some(other) = taken.insert(ip, me) {
                    return Err(ManifestError::at(
                        obj,
                        "spec.clusterIP",
                        format!("{ip} is already the address of Service {other}"),
                    ));
                }
                Some(ip)
            }
        };
        services.push(ServiceView {
            hostname: format!("{name}.{ns}.{DNS_SUFFIX}"),
            namespace: ns,
            name: name.to_owned(),
            labels: s.metadata.labels().clone(),
            vip,
            selector: s.selector().cloned(),
            ports: s.ports().to_vec(),
            waypoint: None,
            source: Some(obj),
        });
    }
    pending.sort_by(|a, b| {
        let (a, b) = (&services[*a], &services[*b]);
        (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
    });
    let mut used: BTreeSet<Ipv4Addr> = taken.into_keys().collect();
    for i in pending {
        let svc = &mut services[i];
        let Some(ip) = allocate(net, semantics::FIRST_SERVICE_OFFSET, &used) else {
            return Err(exhausted(svc.source, net));
        };
        used.insert(ip);
        svc.vip = Some(ip);
    }
    Ok(services)
}

/// The error for a Service that finds no free address.
pub(super) fn exhausted(source: Option<&ManifestObject>, net: Ipv4Net) -> ManifestError {
    let msg = format!("service CIDR {net} is exhausted");
    match source {
        Some(o) => ManifestError::at(o, "spec.clusterIP", msg),
        None => ManifestError::new(msg),
    }
}

impl<'a> Mesh<'a> {
    pub(super) fn build(
        objects: &'a [ManifestObject],
        options: &'a Options,
    ) -> Result<Mesh<'a>, ManifestError> {
        let mut mesh = Mesh {
            options,
            namespaces: BTreeMap::new(),
            nodes: BTreeMap::new(),
            pods: collect_pods(objects, options)?,
            services: Vec::new(),
            gateways: Vec::new(),
            routes: Vec::new(),
            destination_rules: Vec::new(),
            waypoint_policies: Vec::new(),
            fault_injections: BTreeMap::new(),
            local_rate_limits: BTreeMap::new(),
        };
        for obj in objects {
            match &obj.object {
                Object::Namespace(n) => {
                    mesh.namespaces
                        .insert(n.metadata.name().to_owned(), n.metadata.labels().clone());
                }
                Object::Node(n) => {
                    mesh.nodes
                        .insert(n.metadata.name().to_owned(), n.metadata.labels().clone());
                }
                Object::Gateway(g) if g.is_waypoint() => mesh.gateways.push(WaypointView {
                    namespace: ns_of(obj),
                    name: g.metadata.name().to_owned(),
                    gateway: g,
                }),
                Object::HttpRoute(r) => mesh.routes.push(RouteView {
                    namespace: ns_of(obj),
                    name: r.metadata.name().to_owned(),
                    parents: &r.spec.parent_refs,
                    rules: r.spec.rules.iter().map(RouteRule::Http).collect(),
                }),
                Object::GrpcRoute(r) => mesh.routes.push(RouteView {
                    namespace: ns_of(obj),
                    name: r.metadata.name().to_owned(),
                    parents: &r.spec.parent_refs,
                    rules: r.spec.rules.iter().map(RouteRule::Grpc).collect(),
                }),
                Object::DestinationRule(d) => mesh.destination_rules.push((obj, d)),
                Object::AuthorizationPolicy(p) if p.spec.has_target_refs() => {
                    mesh.waypoint_policies.push(p)
                }
                Object::FaultInjection(f) => {
                    let key = (ns_of(obj), f.metadata.name().to_owned());
                    mesh.fault_injections.insert(key, &f.spec);
                }
                Object::LocalRateLimit(l) => {
                    let key = (ns_of(obj), l.metadata.name().to_owned());
                    mesh.local_rate_limits.insert(key, &l.spec);
                }
                _ => {}
            }
        }
        mesh.gateways
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        mesh.routes
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        assign_pod_ips(&mut mesh.pods, options.pod_cidr)?;
        mesh.services =
            collect_services(objects, options.service_cidr, options.allocate_addresses)?;
        waypoints::add_gateway_services(&mut mesh, options.service_cidr)?;
        mesh.services
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        waypoints::resolve(&mut mesh);
        Ok(mesh)
    }

    pub(super) fn waypoints(&self) -> impl Iterator<Item = &WaypointView<'a>> {
        self.gateways.iter()
    }

    pub(super) fn namespace_labels(&self, ns: &str) -> Option<&BTreeMap<String, String>> {
        self.namespaces.get(ns)
    }

    pub(super) fn service(&self, namespace: &str, name: &str) -> Option<&ServiceView<'a>> {
        self.services
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
    }

    /// Whether the node tunnel captures `pod` (pod label, else namespace label).
    pub(super) fn ambient(&self, pod: &PodView<'_>) -> bool {
        match pod.labels.get(DATAPLANE_MODE).map(String::as_str) {
            Some("none") => false,
            Some("ambient") => true,
            _ => self
                .namespace_labels(&pod.namespace)
                .and_then(|l| l.get(DATAPLANE_MODE))
                .is_some_and(|m| m == "ambient"),
        }
    }

    /// Whether `pod` speaks HBONE itself (label `networking.istio.io/tunnel=http`, or a
    /// waypoint's pod).
    pub(super) fn native_tunnel(&self, pod: &PodView<'_>) -> bool {
        pod.labels.get(TUNNEL_LABEL).is_some_and(|v| v == "http")
            || pod.labels.get(GATEWAY_NAME_LABEL).is_some_and(|gw| {
                self.gateways
                    .iter()
                    .any(|g| g.namespace == pod.namespace && &g.name == gw)
            })
    }

    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    pub(super) fn identity(&self, pod: &PodView<'_>) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.options.trust_domain,
            pod.namespace,
            pod.spec.service_account()
        )
    }

    /// `<cluster>//Pod/<namespace>/<name>`, istiod's workload uid.
    pub(super) fn uid(&self, pod: &PodView<'_>) -> String {
        format!(
            "{}//Pod/{}/{}",
            self.options.cluster_id, pod.namespace, pod.name
        )
    }

    /// The pods `svc` selects (all of them, ready or not).
    pub(super) fn selected<'m>(
        &'m self,
        svc: &'m ServiceView<'_>,
    ) -> impl Iterator<Item = &'m PodView<'a>> + 'm {
        self.pods.iter().filter(move |p| Self::selects(svc, p))
    }

    /// Whether `svc` selects `pod` (same namespace, every selector label matches).
    pub(super) fn selects(svc: &ServiceView<'_>, pod: &PodView<'_>) -> bool {
        pod.namespace == svc.namespace
            && svc
                .selector
                .as_ref()
                .is_some_and(|sel| semantics::selects(sel, &pod.labels))
    }
}

pub(super) use crate::manifest::semantics::target_port;

/// The TCP ports of a Service (UDP ports have no HTTP routes or Envoy clusters).
pub(super) fn tcp_ports<'s>(svc: &'s ServiceView<'_>) -> impl Iterator<Item = &'s ServicePort> {
    svc.ports.iter().filter(|p| p.proto() == Protocol::Tcp)
}
