//! Manifests → xDS snapshots: the pure translation at the heart of the control plane. No I/O;
//! the server that calls it decides which client sees which snapshot (see [`node_kind`]).
//!
//! Three audiences, three snapshots:
//! * **Node tunnels** ([`Translation::ztunnel`]): `istio.workload.Address` (workloads by uid,
//!   Services by `namespace/hostname`) and `istio.security.Authorization` (`namespace/name`), as
//!   istiod derives them (spec §4, §5.3). See `translate/workloads.rs`.
//! * **Waypoints** ([`Translation::waypoints`], one snapshot per Gateway of class
//!   `istio-waypoint`, keyed by its namespace and name): Envoy socket listeners `0.0.0.0_<port>`,
//!   one per port of the Services that use the waypoint, with RBAC for L7 AuthorizationPolicies
//!   and the fault and local rate limit filters of FaultInjections and LocalRateLimits
//!   (`translate/extensions.rs`); RouteConfigurations `"<port>"` from HTTPRoutes/GRPCRoutes; EDS
//!   clusters and endpoints. See `translate/waypoint.rs`.
//! * **Proxyless gRPC clients** ([`Translation::proxyless`]): one API listener per Service port
//!   named like the `xds:///` target (`<hostname>:<port>` and the short aliases), plus the same
//!   kind of routes, clusters and endpoints. See `translate/proxyless.rs`.
//!
//! Which client gets which snapshot, from the xDS `Node` ([`node_kind`]):
//! * id `ztunnel~…` → [`NodeKind::Ztunnel`];
//! * id `waypoint~<ip>~<gateway>.<namespace>~…`, or `router~…` whose metadata has the strings
//!   `WAYPOINT_NAME` and `NAMESPACE` → [`NodeKind::Waypoint`];
//! * anything else (gRPC clients with arbitrary ids, Envoy `sidecar~…`) →
//!   [`NodeKind::Proxyless`]. Envoy rejects API listeners over LDS, so an Envoy classified this
//!   way NACKs the proxyless listeners (its clusters, endpoints and routes are fine).
//!
//! Errors are [`ManifestError`]s naming the object and field. References that Kubernetes would
//! only report in a status (a backend Service that does not exist, a waypoint that is not
//! there) are skipped with a `warn!`, never an error.

mod authorization;
mod canonical;
mod clusters;
mod destination_rule;
mod envoy;
mod extensions;
mod locality;
mod mesh;
mod node;
mod proxyless;
mod routes;
mod waypoint;
mod workloads;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::manifest::{ManifestError, ManifestObject};

pub use authorization::to_proto as authorization_to_proto;
pub use node::{NodeKind, node_kind};

/// Settings a cluster's control plane is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// SPIFFE trust domain of workload identities (`cluster.local`).
    pub trust_domain: String,
    /// Cluster id in workload uids (`Kubernetes`).
    pub cluster_id: String,
    /// Namespace whose selector-less policies are mesh-wide (`istio-system`).
    pub root_namespace: String,
    /// Pods without `status.podIP` get addresses from here, from the second host address on.
    pub pod_cidr: ipnet::Ipv4Net,
    /// Services without `spec.clusterIP` get addresses from here, from the tenth on.
    pub service_cidr: ipnet::Ipv4Net,
    /// Whether the control plane hands out addresses itself (manifest files of the local mesh: Deployments
    /// become pods, pods without `status.podIP` and Services without `spec.clusterIP` get one). Off for a
    /// Kubernetes source, where the API server and kubelets own addresses: a pod without an IP is not yet a
    /// workload, a Service without a cluster IP (`ExternalName`) has no VIP, and Deployments are not expanded
    /// (their pods come from the API).
    pub allocate_addresses: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            trust_domain: "cluster.local".into(),
            cluster_id: "Kubernetes".into(),
            root_namespace: crate::authz::ROOT_NAMESPACE.into(),
            pod_cidr: ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, 244, 0, 0), 16)
                .unwrap_or_default(),
            service_cidr: ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, 96, 0, 0), 16)
                .unwrap_or_default(),
            allocate_addresses: true,
        }
    }
}

/// Everything the control plane serves, by audience.
#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// `istio.workload.Address` and `istio.security.Authorization` for node tunnels.
    pub ztunnel: xds::Snapshot,
    /// Envoy resources per waypoint Gateway, keyed `(namespace, name)`.
    pub waypoints: BTreeMap<(String, String), xds::Snapshot>,
    /// Listeners (API listeners), routes, clusters and endpoints for proxyless gRPC clients.
    pub proxyless: xds::Snapshot,
    pub summary: Summary,
}

/// Counts for logs and status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub workloads: usize,
    pub services: usize,
    pub authorizations: usize,
    pub waypoints: usize,
    /// Listeners, routes, clusters and endpoints over all waypoint snapshots.
    pub waypoint_resources: usize,
    pub proxyless_listeners: usize,
    pub proxyless_clusters: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} workloads, {} services, {} authorizations, {} waypoints ({} resources), {} proxyless listeners, {} proxyless clusters",
            self.workloads,
            self.services,
            self.authorizations,
            self.waypoints,
            self.waypoint_resources,
            self.proxyless_listeners,
            self.proxyless_clusters
        )
    }
}

/// Translates `objects` (already parsed and checked one by one) into the three snapshots.
pub fn translate(
    objects: &[ManifestObject],
    options: &Options,
) -> Result<Translation, ManifestError> {
    let mesh = mesh::Mesh::build(objects, options)?;
    let policies = crate::authz::translate_with_root(objects, &options.root_namespace);
    let ztunnel = workloads::snapshot(&mesh, &policies);
    let mut waypoints = BTreeMap::new();
    for gw in mesh.waypoints() {
        waypoints.insert(
            (gw.namespace.clone(), gw.name.clone()),
            waypoint::snapshot(&mesh, gw),
        );
    }
    let proxyless = proxyless::snapshot(&mesh);
    let count = |s: &xds::Snapshot, t: &str| s.resources(t).map_or(0, BTreeMap::len);
    let summary = Summary {
        workloads: mesh.pods.len(),
        services: mesh.services.len(),
        authorizations: count(&ztunnel, xds::type_url::AUTHORIZATION),
        waypoints: waypoints.len(),
        waypoint_resources: waypoints.values().map(xds::Snapshot::len).sum(),
        proxyless_listeners: count(&proxyless, xds::type_url::LISTENER),
        proxyless_clusters: count(&proxyless, xds::type_url::CLUSTER),
    };
    Ok(Translation {
        ztunnel,
        waypoints,
        proxyless,
        summary,
    })
}

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
