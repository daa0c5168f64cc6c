#![allow(clippy::unwrap_used)]

use prost::Message;
use xds::pb::envoy::config::cluster::v3::Cluster;
use xds::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds::pb::envoy::config::listener::v3::Listener;
use xds::pb::envoy::config::route::v3::RouteConfiguration;
use xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use xds::type_url;

use crate::translate::testing::{SHOP, decode, names, run};

#[test]
fn api_listeners_per_target_name() {
    let t = run(SHOP);
    let listeners = names(&t.proxyless, type_url::LISTENER);
    for name in [
        "reviews.shop.svc.cluster.local:9080",
        "reviews.shop.svc:9080",
        "reviews.shop:9080",
    ] {
        assert!(
            listeners.contains(&name.to_owned()),
            "{name} in {listeners:?}"
        );
        let l: Listener = decode(&t.proxyless, type_url::LISTENER, name);
        assert!(l.address.is_none() && l.filter_chains.is_empty());
        let api = l.api_listener.unwrap().api_listener.unwrap();
        assert_eq!(
            api.type_url,
            "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
        );
        let hcm = HttpConnectionManager::decode(api.value.as_slice()).unwrap();
        let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier else {
            panic!("no RDS")
        };
        assert_eq!(rds.route_config_name, name);
        assert!(matches!(
            rds.config_source.unwrap().config_source_specifier,
            Some(ConfigSourceSpecifier::Ads(_))
        ));
        assert_eq!(
            hcm.http_filters.last().unwrap().name,
            "envoy.filters.http.router"
        );
        let rc: RouteConfiguration = decode(&t.proxyless, type_url::ROUTE, name);
        assert_eq!(rc.virtual_hosts.len(), 1);
        assert_eq!(rc.virtual_hosts[0].domains, vec!["*"]);
        assert_eq!(
            rc.virtual_hosts[0].routes.len(),
            3,
            "canary, split, default"
        );
    }
}

#[test]
fn clusters_are_eds_over_ads_with_weighted_localities() {
    let t = run(SHOP);
    for name in names(&t.proxyless, type_url::CLUSTER) {
        let c: Cluster = decode(&t.proxyless, type_url::CLUSTER, &name);
        let eds = c.eds_cluster_config.unwrap();
        assert!(matches!(
            eds.eds_config.unwrap().config_source_specifier,
            Some(ConfigSourceSpecifier::Ads(_))
        ));
        let cla: ClusterLoadAssignment = decode(&t.proxyless, type_url::ENDPOINT, &name);
        assert!(
            cla.endpoints
                .iter()
                .all(|l| l.load_balancing_weight.is_some() && l.locality.is_some()),
            "gRPC clients need a weighted locality: {cla:?}"
        );
    }
    let cla: ClusterLoadAssignment = decode(
        &t.proxyless,
        type_url::ENDPOINT,
        "outbound|9080||reviews-v2.shop.svc.cluster.local",
    );
    assert_eq!(cla.endpoints[0].lb_endpoints.len(), 1);
}
