//! Hand-built Envoy resources for the conformance test: one socket listener whose HTTP connection manager
//! takes its routes from RDS over ADS, a route splitting traffic by weight over EDS clusters, and their
//! endpoints.

use std::net::SocketAddr;

use prost::Name;
use xds::Snapshot;
use xds::pb::envoy::config::cluster::v3::{Cluster, cluster};
use xds::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address,
    config_source, socket_address,
};
use xds::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use xds::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use xds::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster, route,
    route_action, route_match, weighted_cluster,
};
use xds::pb::envoy::extensions::filters::http::router::v3::Router;
use xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use xds::pb::google::protobuf::{Any, Duration, UInt32Value};
use xds::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};

pub(crate) const LISTENER_NAME: &str = "ingress";
pub(crate) const ROUTE_NAME: &str = "split";

fn any<M: Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

fn socket(addr: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..Default::default()
        })),
    }
}

pub(crate) fn listener(addr: SocketAddr) -> Listener {
    let router = HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(
            any(&Router::default()),
        )),
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: "ingress".into(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: ROUTE_NAME.into(),
        })),
        http_filters: vec![router],
        ..Default::default()
    };
    Listener {
        name: LISTENER_NAME.into(),
        address: Some(socket(addr)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A route sending `weights` (cluster, weight) of all traffic.
pub(crate) fn route(weights: &[(&str, u32)]) -> RouteConfiguration {
    let clusters = weights
        .iter()
        .map(|(name, weight)| weighted_cluster::ClusterWeight {
            name: (*name).into(),
            weight: Some(UInt32Value { value: *weight }),
            ..Default::default()
        })
        .collect();
    let action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::WeightedClusters(
            WeightedCluster {
                clusters,
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    RouteConfiguration {
        name: ROUTE_NAME.into(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(action)),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// An EDS cluster (endpoints over ADS, round robin) with `connect_timeout` in milliseconds.
pub(crate) fn eds_cluster(name: &str, connect_timeout_ms: i64) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        }),
        connect_timeout: Some(Duration {
            seconds: connect_timeout_ms.div_euclid(1000),
            nanos: (connect_timeout_ms.rem_euclid(1000) * 1_000_000) as i32,
        }),
        lb_policy: cluster::LbPolicy::RoundRobin as i32,
        ..Default::default()
    }
}

pub(crate) fn endpoints(cluster: &str, backends: &[SocketAddr]) -> ClusterLoadAssignment {
    let lb_endpoints = backends
        .iter()
        .map(|b| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(socket(*b)),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: cluster.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The mesh of the test: listener → route (weights) → clusters `a` and `b` → one backend each.
pub(crate) struct Mesh {
    pub(crate) listener: SocketAddr,
    pub(crate) backend_a: SocketAddr,
    pub(crate) backend_b: SocketAddr,
}

impl Mesh {
    /// A snapshot with `weights` for a/b; `clusters` overrides the cluster resources (default: valid EDS
    /// clusters with a 1 s connect timeout).
    pub(crate) fn snapshot(
        &self,
        weights: &[(&str, u32)],
        clusters: Option<Vec<Cluster>>,
    ) -> Snapshot {
        let clusters =
            clusters.unwrap_or_else(|| vec![eds_cluster("a", 1000), eds_cluster("b", 1000)]);
        let mut s = Snapshot::new();
        for c in &clusters {
            s.add(CLUSTER, c.name.clone(), c);
        }
        s.add(ENDPOINT, "a", &endpoints("a", &[self.backend_a]));
        s.add(ENDPOINT, "b", &endpoints("b", &[self.backend_b]));
        s.add(LISTENER, LISTENER_NAME, &listener(self.listener));
        s.add(ROUTE, ROUTE_NAME, &route(weights));
        s
    }
}
