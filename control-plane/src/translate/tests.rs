#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proto::istio::workload as xw;
use xds::pb::envoy::config::cluster::v3::Cluster;
use xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds::pb::envoy::config::listener::v3::Listener;
use xds::pb::envoy::config::route::v3::RouteConfiguration;
use xds::type_url;

use super::testing::{SHOP, decode, decode_all, names, run, try_run};
use super::*;

fn workloads(t: &Translation) -> BTreeMap<String, xw::Workload> {
    decode_all::<xw::Address>(&t.ztunnel, type_url::ADDRESS)
        .into_iter()
        .filter_map(|a| match a.r#type {
            Some(xw::address::Type::Workload(w)) => Some((w.name.clone(), w)),
            _ => None,
        })
        .collect()
}

#[test]
fn shop_translates_for_every_audience() {
    let t = run(SHOP);
    assert_eq!(
        names(&t.ztunnel, type_url::ADDRESS),
        vec![
            "Kubernetes//Pod/shop/reviews-v1-0",
            "Kubernetes//Pod/shop/reviews-v1-1",
            "Kubernetes//Pod/shop/reviews-v2-0",
            "shop/reviews-v1.shop.svc.cluster.local",
            "shop/reviews-v2.shop.svc.cluster.local",
            "shop/reviews.shop.svc.cluster.local",
            "shop/waypoint.shop.svc.cluster.local",
        ]
    );
    assert_eq!(
        names(&t.ztunnel, type_url::AUTHORIZATION),
        vec!["shop/l4-reviews"],
        "targetRefs policies are for the waypoint only"
    );
    assert_eq!(
        t.waypoints.keys().collect::<Vec<_>>(),
        vec![&("shop".to_owned(), "waypoint".to_owned())]
    );
    let wp = &t.waypoints[&("shop".to_owned(), "waypoint".to_owned())];
    assert_eq!(names(wp, type_url::LISTENER), vec!["0.0.0.0_9080"]);
    assert_eq!(names(wp, type_url::ROUTE), vec!["9080"]);
    let clusters = vec![
        "outbound|9080||reviews-v1.shop.svc.cluster.local",
        "outbound|9080||reviews-v2.shop.svc.cluster.local",
        "outbound|9080||reviews.shop.svc.cluster.local",
    ];
    assert_eq!(names(wp, type_url::CLUSTER), clusters);
    assert_eq!(names(wp, type_url::ENDPOINT), clusters);
    let _: Listener = decode(wp, type_url::LISTENER, "0.0.0.0_9080");
    let _: RouteConfiguration = decode(wp, type_url::ROUTE, "9080");
    // Proxyless: 3 Services with a port + the waypoint's Service, 3 names each.
    assert_eq!(names(&t.proxyless, type_url::LISTENER).len(), 12);
    assert_eq!(names(&t.proxyless, type_url::ROUTE).len(), 12);
    assert_eq!(names(&t.proxyless, type_url::CLUSTER).len(), 4);
    for c in decode_all::<Cluster>(&t.proxyless, type_url::CLUSTER) {
        let cla: ClusterLoadAssignment = decode(&t.proxyless, type_url::ENDPOINT, &c.name);
        assert_eq!(cla.cluster_name, c.name);
    }
    assert_eq!(
        t.summary,
        Summary {
            workloads: 3,
            services: 4,
            authorizations: 1,
            waypoints: 1,
            waypoint_resources: 8,
            proxyless_listeners: 12,
            proxyless_clusters: 4,
        }
    );
    assert!(t.summary.to_string().contains("3 workloads"));
}

#[test]
fn every_ztunnel_resource_decodes_as_the_tunnel_reads_it() {
    use ztunnel::model::from_proto::AddressResource;
    let t = run(SHOP);
    for a in decode_all::<xw::Address>(&t.ztunnel, type_url::ADDRESS) {
        AddressResource::try_from(a).unwrap();
    }
    for a in
        decode_all::<proto::istio::security::Authorization>(&t.ztunnel, type_url::AUTHORIZATION)
    {
        ztunnel::model::Authorization::try_from(a).unwrap();
    }
}

#[test]
fn translation_is_deterministic() {
    let a = run(SHOP);
    let b = run(SHOP);
    assert_eq!(a.ztunnel, b.ztunnel);
    assert_eq!(a.waypoints, b.waypoints);
    assert_eq!(a.proxyless, b.proxyless);
}

#[test]
fn addresses_are_allocated_in_name_order_around_taken_ones() {
    let t = run(r#"
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: default}
spec: {containers: [{name: c, command: [x]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default}
spec: {containers: [{name: c, command: [x]}]}
status: {podIP: 10.244.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: default}
spec: {containers: [{name: c, command: [x]}]}
---
apiVersion: v1
kind: Service
metadata: {name: fixed, namespace: default}
spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: auto, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: default}
spec: {clusterIP: None, ports: [{port: 80}]}
"#);
    let ip = |w: &xw::Workload| {
        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(w.addresses[0].as_slice()).unwrap())
    };
    let w = workloads(&t);
    assert_eq!(ip(&w["a"]).to_string(), "10.244.0.3");
    assert_eq!(ip(&w["b"]).to_string(), "10.244.0.2");
    assert_eq!(ip(&w["c"]).to_string(), "10.244.0.4");
    let svc = |name: &str| match decode::<xw::Address>(
        &t.ztunnel,
        type_url::ADDRESS,
        &format!("default/{name}.default.svc.cluster.local"),
    )
    .r#type
    {
        Some(xw::address::Type::Service(s)) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(svc("fixed").addresses[0].address, vec![10, 96, 0, 10]);
    assert_eq!(svc("auto").addresses[0].address, vec![10, 96, 0, 11]);
    assert!(svc("headless").addresses.is_empty());
}

#[test]
fn deployments_expand_only_when_their_pods_are_not_listed() {
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, command: [x]}]}
"#;
    let w = workloads(&run(deployment));
    assert_eq!(
        w.keys().collect::<Vec<_>>(),
        vec!["web-0", "web-1", "web-2"]
    );
    assert_eq!(w["web-0"].workload_name, "web");
    let with_pod = format!(
        "{deployment}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web-5d8f-abcde\n  namespace: default\n  labels: {{app: web}}\n  ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d8f, uid: u1, controller: true}}]\nspec: {{containers: [{{name: c, command: [x]}}]}}\n"
    );
    let w = workloads(&run(&with_pod));
    assert_eq!(w.keys().collect::<Vec<_>>(), vec!["web-5d8f-abcde"]);
    assert_eq!(w["web-5d8f-abcde"].workload_name, "web");
    assert_eq!(
        w["web-5d8f-abcde"].workload_type,
        xw::WorkloadType::Deployment as i32
    );
}

#[test]
fn translation_errors_name_object_and_field() {
    let cases = [
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: nope, ports: [{port: 80}]}\n",
            "Service default/s",
            "spec.clusterIP",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}\n",
            "Service default/b",
            "spec.clusterIP",
        ),
    ];
    for (yaml, object, field) in cases {
        let e = try_run(yaml).err().unwrap();
        assert_eq!(e.object.as_deref(), Some(object), "{e}");
        assert_eq!(e.field.as_deref(), Some(field), "{e}");
    }
}

#[test]
fn missing_references_are_skipped_not_errors() {
    let t = run(r#"
apiVersion: v1
kind: Service
metadata: {name: s, namespace: default, labels: {istio.io/use-waypoint: nowhere}}
spec: {selector: {app: s}, ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{kind: Service, name: s}]
  rules: [{backendRefs: [{name: missing, port: 80}]}]
"#);
    assert!(t.waypoints.is_empty());
    let rc: RouteConfiguration = decode(
        &t.proxyless,
        type_url::ROUTE,
        "s.default.svc.cluster.local:80",
    );
    assert_eq!(rc.virtual_hosts[0].routes.len(), 2);
}
