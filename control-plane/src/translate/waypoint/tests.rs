#![allow(clippy::unwrap_used)]

use prost::Message;
use xds::pb::envoy::config::cluster::v3::{Cluster, cluster::LbPolicy};
use xds::pb::envoy::config::core::v3::{
    address, config_source::ConfigSourceSpecifier, socket_address::PortSpecifier,
};
use xds::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint::HostIdentifier};
use xds::pb::envoy::config::listener::v3::{Listener, filter};
use xds::pb::envoy::config::rbac::v3::{permission, principal, rbac::Action};
use xds::pb::envoy::config::route::v3::RouteConfiguration;
use xds::pb::envoy::extensions::filters::http::rbac::v3::{Rbac, RbacPerRoute};
use xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager::RouteSpecifier, http_filter,
};
use xds::pb::google::protobuf::value::Kind;
use xds::{Snapshot, type_url};

use super::rbac::{ALLOW_FILTER, DENY_FILTER};
use crate::translate::testing::{SHOP, decode, run};

fn shop() -> Snapshot {
    run(SHOP).waypoints[&("shop".to_owned(), "waypoint".to_owned())].clone()
}

fn hcm(l: &Listener) -> HttpConnectionManager {
    let Some(filter::ConfigType::TypedConfig(a)) = &l.filter_chains[0].filters[0].config_type
    else {
        panic!("no typed config")
    };
    assert_eq!(
        a.type_url,
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    );
    HttpConnectionManager::decode(a.value.as_slice()).unwrap()
}

fn rbac(f: &HttpFilter) -> Rbac {
    let Some(http_filter::ConfigType::TypedConfig(a)) = &f.config_type else {
        panic!("no typed config")
    };
    Rbac::decode(a.value.as_slice()).unwrap()
}

#[test]
fn listener_is_a_socket_with_rds_and_rbac_then_router() {
    let snap = shop();
    let l: Listener = decode(&snap, type_url::LISTENER, "0.0.0.0_9080");
    assert!(l.api_listener.is_none());
    let Some(address::Address::SocketAddress(sa)) = l.address.unwrap().address else {
        panic!("not a socket address")
    };
    assert_eq!(
        (sa.address.as_str(), sa.port_specifier),
        ("0.0.0.0", Some(PortSpecifier::PortValue(9080)))
    );
    let hcm = hcm(&decode(&snap, type_url::LISTENER, "0.0.0.0_9080"));
    let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier else {
        panic!("no RDS")
    };
    assert_eq!(rds.route_config_name, "9080");
    let source = rds.config_source.as_ref().unwrap();
    assert!(matches!(
        source.config_source_specifier,
        Some(ConfigSourceSpecifier::Ads(_))
    ));
    assert_eq!(source.resource_api_version, 2, "V3");
    let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        vec![DENY_FILTER, ALLOW_FILTER, "envoy.filters.http.router"]
    );
    // Listener level: the Gateway-level ALLOW; the Service-level DENY is per virtual host.
    let deny = rbac(&hcm.http_filters[0]);
    assert!(
        deny.rules.is_none() && deny.shadow_rules.is_none(),
        "{deny:?}"
    );
    let allow = rbac(&hcm.http_filters[1]).rules.unwrap();
    assert_eq!(allow.action, Action::Allow as i32);
    let policy = &allow.policies["ns[shop]-policy[shop-only]-rule[0]"];
    assert!(matches!(
        &policy.permissions[0].rule,
        Some(permission::Rule::Any(true))
    ));
    let Some(principal::Identifier::AndIds(ids)) = &policy.principals[0].identifier else {
        panic!("{policy:?}")
    };
    assert_eq!(ids.ids.len(), 2, "principals AND namespaces");
}

#[test]
fn service_policies_override_per_virtual_host() {
    let snap = shop();
    let rc: RouteConfiguration = decode(&snap, type_url::ROUTE, "9080");
    let vh = rc
        .virtual_hosts
        .iter()
        .find(|v| v.name.starts_with("reviews."))
        .unwrap();
    let per =
        RbacPerRoute::decode(vh.typed_per_filter_config[DENY_FILTER].value.as_slice()).unwrap();
    let rules = per.rbac.unwrap().rules.unwrap();
    assert_eq!(rules.action, Action::Deny as i32);
    let p = &rules.policies["ns[shop]-policy[no-admin-delete]-rule[0]"];
    let Some(permission::Rule::AndRules(and)) = &p.permissions[0].rule else {
        panic!("{p:?}")
    };
    assert_eq!(and.rules.len(), 2, "method AND path");
    assert!(
        !vh.typed_per_filter_config.contains_key(ALLOW_FILTER),
        "no Service-level ALLOW"
    );
    let v1 = rc
        .virtual_hosts
        .iter()
        .find(|v| v.name.starts_with("reviews-v1."))
        .unwrap();
    assert!(v1.typed_per_filter_config.is_empty());
    // Domains never repeat across virtual hosts.
    let mut all: Vec<&String> = rc.virtual_hosts.iter().flat_map(|v| &v.domains).collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n);
}

#[test]
fn clusters_follow_the_destination_rule() {
    let snap = shop();
    let c: Cluster = decode(
        &snap,
        type_url::CLUSTER,
        "outbound|9080||reviews.shop.svc.cluster.local",
    );
    assert_eq!(c.lb_policy, LbPolicy::RingHash as i32);
    assert_eq!(c.connect_timeout.unwrap().seconds, 2);
    let t = &c.circuit_breakers.unwrap().thresholds[0];
    assert_eq!(
        (
            t.max_connections.as_ref().unwrap().value,
            t.max_pending_requests.as_ref().unwrap().value,
            t.max_requests.as_ref().unwrap().value,
            t.max_retries.as_ref().unwrap().value
        ),
        (100, 10, 100, 3)
    );
    let o = c.outlier_detection.unwrap();
    assert_eq!(o.consecutive_5xx.unwrap().value, 5);
    assert_eq!(
        (
            o.interval.unwrap().seconds,
            o.base_ejection_time.unwrap().seconds
        ),
        (10, 30)
    );
    assert_eq!(o.max_ejection_percent.unwrap().value, 50);
    let eds = c.eds_cluster_config.unwrap();
    assert_eq!(
        eds.service_name,
        "outbound|9080||reviews.shop.svc.cluster.local"
    );
    assert!(matches!(
        eds.eds_config.unwrap().config_source_specifier,
        Some(ConfigSourceSpecifier::Ads(_))
    ));
    let v1: Cluster = decode(
        &snap,
        type_url::CLUSTER,
        "outbound|9080||reviews-v1.shop.svc.cluster.local",
    );
    assert_eq!(
        v1.lb_policy,
        LbPolicy::RoundRobin as i32,
        "the rule names reviews only"
    );
    assert!(v1.outlier_detection.is_none());
}

#[test]
fn endpoints_are_ready_pods_at_their_target_port_with_istio_metadata() {
    let snap = shop();
    let cla: ClusterLoadAssignment = decode(
        &snap,
        type_url::ENDPOINT,
        "outbound|9080||reviews.shop.svc.cluster.local",
    );
    assert_eq!(cla.endpoints.len(), 1);
    assert_eq!(
        cla.endpoints[0]
            .load_balancing_weight
            .as_ref()
            .unwrap()
            .value,
        1
    );
    let eps = &cla.endpoints[0].lb_endpoints;
    assert_eq!(eps.len(), 3);
    let Some(HostIdentifier::Endpoint(e)) = &eps[0].host_identifier else {
        panic!()
    };
    let Some(address::Address::SocketAddress(sa)) = &e.address.as_ref().unwrap().address else {
        panic!()
    };
    assert_eq!(
        (sa.address.as_str(), sa.port_specifier.clone()),
        ("10.244.0.2", Some(PortSpecifier::PortValue(9080)))
    );
    let istio = &eps[0].metadata.as_ref().unwrap().filter_metadata["istio"].fields;
    let s = |k: &str| match &istio[k].kind {
        Some(Kind::StringValue(s)) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(s("workload"), "Kubernetes//Pod/shop/reviews-v1-0");
    assert_eq!(s("tunnel"), "hbone");
    assert_eq!(s("identity"), "spiffe://cluster.local/ns/shop/sa/reviews");
    // Unready pods are not endpoints.
    let unready = SHOP.to_owned()
        + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: reviews-v1-x, namespace: shop, labels: {app: reviews, version: v1}, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: reviews-v1-abc, uid: u1}]}\nspec: {containers: [{name: app, command: [x], ports: [{name: http, containerPort: 9080}]}]}\nstatus: {conditions: [{type: Ready, status: \"False\"}]}\n";
    let t = run(&unready);
    let cla: ClusterLoadAssignment = decode(
        &t.waypoints[&("shop".to_owned(), "waypoint".to_owned())],
        type_url::ENDPOINT,
        "outbound|9080||reviews-v1.shop.svc.cluster.local",
    );
    assert!(
        cla.endpoints[0].lb_endpoints.is_empty(),
        "the listed pod replaces the Deployment's replicas and is not ready"
    );
}

#[test]
fn waypoints_without_services_have_no_listeners() {
    let t = run(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: idle, namespace: default}\nspec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n",
    );
    let snap = &t.waypoints[&("default".to_owned(), "idle".to_owned())];
    assert_eq!(snap.len(), 0);
    assert!(
        snap.resources(type_url::LISTENER).is_some(),
        "types are declared for wildcard subscribers"
    );
}
