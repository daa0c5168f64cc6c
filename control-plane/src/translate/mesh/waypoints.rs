//! Waypoint enrolment (spec §12): which Services and pods use which waypoint Gateway, from the
//! `istio.io/use-waypoint` labels and the Gateway's `istio.io/waypoint-for`; and the Service a
//! waypoint Gateway gets (as Istio's deployment controller makes one) when none is listed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{DNS_SUFFIX, Mesh, ServiceView, allocate, exhausted};
use crate::manifest::MetaExt;
use crate::manifest::gateway::WAYPOINT_FOR;
use crate::manifest::semantics;

/// Service, namespace or pod label naming the waypoint to use (`none`: no waypoint).
pub(in crate::translate) const USE_WAYPOINT: &str = "istio.io/use-waypoint";
/// Namespace of the waypoint named by [`USE_WAYPOINT`] (default: the labelled object's).
pub(in crate::translate) const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
pub(in crate::translate) use crate::manifest::semantics::GATEWAY_NAME_LABEL;

/// A waypoint Gateway, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::translate) struct WaypointRef {
    pub namespace: String,
    pub name: String,
}

impl WaypointRef {
    /// `<name>.<namespace>.svc.cluster.local`: what node tunnels resolve to reach it.
    pub(in crate::translate) fn hostname(&self) -> String {
        format!("{}.{}.{DNS_SUFFIX}", self.name, self.namespace)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Service,
    Workload,
}

/// Adds `<gateway>` Services (port 15008, selecting the Gateway's pods) for waypoint Gateways
/// that have none, when the control plane allocates addresses (the local mesh). From a Kubernetes
/// source the waypoint controller makes the real Service, and the API server its address.
pub(super) fn add_gateway_services(
    mesh: &mut Mesh<'_>,
    net: Ipv4Net,
) -> Result<(), super::ManifestError> {
    if !mesh.options.allocate_addresses {
        return Ok(());
    }
    let mut used: BTreeSet<Ipv4Addr> = mesh.services.iter().filter_map(|s| s.vip).collect();
    for gw in &mesh.gateways {
        if mesh
            .services
            .iter()
            .any(|s| s.namespace == gw.namespace && s.name == gw.name)
        {
            continue;
        }
        let vip = allocate(net, semantics::FIRST_SERVICE_OFFSET, &used)
            .ok_or_else(|| exhausted(None, net))?;
        used.insert(vip);
        let (selector, ports) = semantics::waypoint_service(&gw.name);
        mesh.services.push(ServiceView {
            namespace: gw.namespace.clone(),
            name: gw.name.clone(),
            hostname: format!("{}.{}.{DNS_SUFFIX}", gw.name, gw.namespace),
            labels: BTreeMap::new(),
            vip: Some(vip),
            selector: Some(selector),
            ports,
            waypoint: None,
            source: None,
        });
    }
    Ok(())
}

/// Sets `waypoint` on every Service and pod that uses one. Waypoints never use a waypoint.
pub(super) fn resolve(mesh: &mut Mesh<'_>) {
    let mut missing = BTreeSet::new();
    let is_gateway = |mesh: &Mesh<'_>, ns: &str, name: &str| {
        mesh.gateways
            .iter()
            .any(|g| g.namespace == ns && g.name == name)
    };
    let mut service_wp = Vec::new();
    for svc in &mesh.services {
        let wp = if is_gateway(mesh, &svc.namespace, &svc.name) {
            None
        } else {
            lookup(
                mesh,
                &svc.labels,
                &svc.namespace,
                Target::Service,
                &mut missing,
            )
        };
        service_wp.push(wp);
    }
    let mut pod_wp = Vec::new();
    for pod in &mesh.pods {
        let wp = if mesh.native_tunnel(pod) {
            None
        } else {
            lookup(
                mesh,
                &pod.labels,
                &pod.namespace,
                Target::Workload,
                &mut missing,
            )
        };
        pod_wp.push(wp);
    }
    for (svc, wp) in mesh.services.iter_mut().zip(service_wp) {
        svc.waypoint = wp;
    }
    for (pod, wp) in mesh.pods.iter_mut().zip(pod_wp) {
        pod.waypoint = wp;
    }
    for wp in missing {
        tracing::warn!(
            waypoint.namespace = %wp.namespace,
            waypoint.name = %wp.name,
            "{USE_WAYPOINT} names a waypoint that is not a Gateway of class istio-waypoint; ignored"
        );
    }
}

fn lookup(
    mesh: &Mesh<'_>,
    labels: &BTreeMap<String, String>,
    namespace: &str,
    target: Target,
    missing: &mut BTreeSet<WaypointRef>,
) -> Option<WaypointRef> {
    let source = if labels.contains_key(USE_WAYPOINT) {
        labels
    } else {
        mesh.namespace_labels(namespace)
            .filter(|l| l.contains_key(USE_WAYPOINT))?
    };
    let name = source.get(USE_WAYPOINT)?;
    if name.is_empty() || name == "none" {
        return None;
    }
    let wp = WaypointRef {
        namespace: source
            .get(USE_WAYPOINT_NAMESPACE)
            .cloned()
            .unwrap_or_else(|| namespace.to_owned()),
        name: name.clone(),
    };
    let Some(gw) = mesh
        .gateways
        .iter()
        .find(|g| g.namespace == wp.namespace && g.name == wp.name)
    else {
        missing.insert(wp);
        return None;
    };
    let waypoint_for = gw
        .gateway
        .metadata
        .labels()
        .get(WAYPOINT_FOR)
        .map_or("service", String::as_str);
    let applies = match target {
        Target::Service => matches!(waypoint_for, "service" | "all"),
        Target::Workload => matches!(waypoint_for, "workload" | "all"),
    };
    applies.then_some(wp)
}
