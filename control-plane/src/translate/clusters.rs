//! Envoy clusters and endpoints for Service ports, shared by waypoints and proxyless clients.
//!
//! A cluster `outbound|<port>||<hostname>` is EDS over ADS (`eds_config {ads{}}`, which gRPC
//! requires), ROUND_ROBIN unless a DestinationRule says otherwise, connect timeout 10 s (Istio's
//! default). Its ClusterLoadAssignment lists the ready pods the Service selects at their target
//! port, in one locality with `load_balancing_weight` 1 (gRPC weighs localities). Each endpoint
//! carries `metadata.filter_metadata["istio"] = {workload: uid, tunnel: "hbone"|"", identity:
//! spiffe URI}` for a waypoint to reach and check the pod.

use std::collections::BTreeSet;
use std::time::Duration;

use xds::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy},
};
use xds::pb::envoy::config::core::v3::{
    Address, Metadata, SocketAddress, address, socket_address::PortSpecifier,
};
use xds::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use xds::pb::google::protobuf::{Struct, Value, value::Kind};
use xds::{Snapshot, type_url};

use super::canonical;
use super::destination_rule;
use super::envoy::{ads, cluster_name, duration, u32v};
use super::mesh::{Mesh, ServiceView, target_port};
use crate::manifest::{PortExt, Protocol};

/// A Service port: the index of the Service in `Mesh::services` and the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ClusterKey {
    pub service: usize,
    pub port: u16,
}

impl ClusterKey {
    pub(super) fn name(&self, mesh: &Mesh<'_>) -> String {
        cluster_name(self.port, &mesh.services[self.service].hostname)
    }
}

/// The key of `svc`'s `port`, if `svc` is one of the mesh's Services.
pub(super) fn key(mesh: &Mesh<'_>, svc: &ServiceView<'_>, port: u16) -> Option<ClusterKey> {
    let service = mesh
        .services
        .iter()
        .position(|s| s.namespace == svc.namespace && s.name == svc.name)?;
    Some(ClusterKey { service, port })
}

pub(super) fn cluster(mesh: &Mesh<'_>, key: ClusterKey) -> Cluster {
    let name = key.name(mesh);
    let mut c = Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name,
        }),
        connect_timeout: Some(duration(Duration::from_secs(10))),
        lb_policy: LbPolicy::RoundRobin as i32,
        ..Cluster::default()
    };
    if let Some(dr) = destination_rule::for_service(mesh, &mesh.services[key.service]) {
        destination_rule::apply(&mut c, dr);
    }
    c
}

fn string(s: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

pub(super) fn load_assignment(mesh: &Mesh<'_>, key: ClusterKey) -> ClusterLoadAssignment {
    let svc = &mesh.services[key.service];
    let port = svc
        .ports
        .iter()
        .find(|p| p.number() == key.port && p.proto() == Protocol::Tcp);
    let mut lb_endpoints = Vec::new();
    for pod in mesh.selected(svc).filter(|p| p.ready) {
        let Some(target) = port.and_then(|p| target_port(p, pod.spec)) else {
            continue;
        };
        let hbone = mesh.native_tunnel(pod) || mesh.ambient(pod);
        let istio = Struct {
            fields: [
                ("workload".to_owned(), string(mesh.uid(pod))),
                (
                    "tunnel".to_owned(),
                    string(if hbone { "hbone" } else { "" }),
                ),
                ("identity".to_owned(), string(mesh.identity(pod))),
            ]
            .into_iter()
            .collect(),
        };
        lb_endpoints.push(LbEndpoint {
            host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                address: Some(socket_address(&pod.ip.to_string(), target)),
                ..Endpoint::default()
            })),
            metadata: Some(Metadata {
                filter_metadata: [("istio".to_owned(), istio)].into_iter().collect(),
                ..Metadata::default()
            }),
            load_balancing_weight: Some(u32v(1)),
            ..LbEndpoint::default()
        });
    }
    ClusterLoadAssignment {
        cluster_name: key.name(mesh),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            // gRPC clients reject a locality group without a locality (it may be empty).
            locality: Some(xds::pb::envoy::config::core::v3::Locality::default()),
            load_balancing_weight: Some(u32v(1)),
            ..LocalityLbEndpoints::default()
        }],
        ..ClusterLoadAssignment::default()
    }
}

pub(super) fn socket_address(ip: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_owned(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..SocketAddress::default()
        })),
    }
}

/// Adds a cluster and its endpoints for each key.
pub(super) fn add(mesh: &Mesh<'_>, keys: &BTreeSet<ClusterKey>, snap: &mut Snapshot) {
    snap.declare(type_url::CLUSTER);
    snap.declare(type_url::ENDPOINT);
    for key in keys {
        let name = key.name(mesh);
        snap.add(type_url::CLUSTER, name.clone(), &cluster(mesh, *key));
        snap.add(
            type_url::ENDPOINT,
            name,
            &canonical::load_assignment(&load_assignment(mesh, *key)),
        );
    }
}
