#![allow(clippy::unwrap_used)]

use proto::istio::workload as xw;
use xds::type_url;

use crate::translate::testing::{SHOP, decode, run};

fn workload(yaml: &str, ns: &str, name: &str) -> xw::Workload {
    let t = run(yaml);
    match decode::<xw::Address>(
        &t.ztunnel,
        type_url::ADDRESS,
        &format!("Kubernetes//Pod/{ns}/{name}"),
    )
    .r#type
    {
        Some(xw::address::Type::Workload(w)) => w,
        other => panic!("{other:?}"),
    }
}

fn service(yaml: &str, ns: &str, name: &str) -> xw::Service {
    let t = run(yaml);
    let key = format!("{ns}/{name}.{ns}.svc.cluster.local");
    match decode::<xw::Address>(&t.ztunnel, type_url::ADDRESS, &key).r#type {
        Some(xw::address::Type::Service(s)) => s,
        other => panic!("{other:?}"),
    }
}

fn namespace(labels: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns, labels: {{{labels}}}}}\n---\n")
}

fn pod(labels: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: ns, labels: {{{labels}}}{extra}}}\nspec: {{serviceAccountName: sa, nodeName: node-1, containers: [{{name: c, command: [x], ports: [{{name: web, containerPort: 8080}}]}}]}}\n"
    )
}

#[test]
fn tunnel_protocol_follows_enrolment() {
    let hbone = xw::TunnelProtocol::Hbone as i32;
    let none = xw::TunnelProtocol::None as i32;
    let cases = [
        ("", "", none, false),
        ("istio.io/dataplane-mode: ambient", "", hbone, false),
        (
            "istio.io/dataplane-mode: ambient",
            "istio.io/dataplane-mode: none",
            none,
            false,
        ),
        ("", "istio.io/dataplane-mode: ambient", hbone, false),
        ("", "networking.istio.io/tunnel: http", hbone, true),
    ];
    for (ns_labels, pod_labels, protocol, native) in cases {
        let w = workload(&(namespace(ns_labels) + &pod(pod_labels, "")), "ns", "p");
        assert_eq!(
            w.tunnel_protocol, protocol,
            "ns {ns_labels:?} pod {pod_labels:?}"
        );
        assert_eq!(
            w.native_tunnel, native,
            "ns {ns_labels:?} pod {pod_labels:?}"
        );
    }
}

#[test]
fn workload_fields_follow_istiod() {
    let yaml = namespace("")
        + &pod(
            "app: cart, version: v3",
            ", ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: cart-7c9d, uid: u1, controller: true}]",
        )
        + "status: {podIP: 10.244.9.9, conditions: [{type: Ready, status: \"False\"}]}\n---\n"
        + "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: ns}\nspec: {selector: {app: cart}, ports: [{name: http, port: 80, targetPort: web}, {name: grpc-x, port: 90, targetPort: missing}]}\n";
    let w = workload(&yaml, "ns", "p");
    assert_eq!(w.uid, "Kubernetes//Pod/ns/p");
    assert_eq!(w.addresses, vec![vec![10, 244, 9, 9]]);
    assert_eq!(w.service_account, "sa");
    assert_eq!(w.trust_domain, "cluster.local");
    assert_eq!(w.node, "node-1");
    assert_eq!(w.cluster_id, "Kubernetes");
    assert_eq!(
        (w.canonical_name.as_str(), w.canonical_revision.as_str()),
        ("cart", "v3")
    );
    assert_eq!(w.workload_type, xw::WorkloadType::Deployment as i32);
    assert_eq!(w.workload_name, "cart");
    assert_eq!(w.status, xw::WorkloadStatus::Unhealthy as i32);
    let ports = &w.services["ns/cart.ns.svc.cluster.local"].ports;
    assert_eq!(
        ports.len(),
        1,
        "the unresolvable named port is left out: {ports:?}"
    );
    assert_eq!((ports[0].service_port, ports[0].target_port), (80, 8080));
    assert_eq!(ports[0].app_protocol, xw::AppProtocol::Http11 as i32);
    let s = service(&yaml, "ns", "cart");
    assert_eq!(
        s.ports[0].target_port, 0,
        "named target ports are per endpoint"
    );
    assert_eq!(s.ports[1].app_protocol, xw::AppProtocol::Grpc as i32);
    // A bare pod: its own name, POD, latest, healthy.
    let w = workload(&(namespace("") + &pod("", "")), "ns", "p");
    assert_eq!(
        (w.workload_name.as_str(), w.canonical_name.as_str()),
        ("p", "p")
    );
    assert_eq!(w.canonical_revision, "latest");
    assert_eq!(w.workload_type, xw::WorkloadType::Pod as i32);
    assert_eq!(w.status, xw::WorkloadStatus::Healthy as i32);
}

fn gateway(ns: &str, name: &str, waypoint_for: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {ns}, labels: {{istio.io/waypoint-for: {waypoint_for}}}}}\nspec: {{gatewayClassName: istio-waypoint, listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]}}\n"
    )
}

#[test]
fn waypoints_are_assigned_by_labels_and_waypoint_for() {
    let svc = |labels: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: ns, labels: {{{labels}}}}}\nspec: {{selector: {{app: a}}, ports: [{{port: 80}}]}}\n"
        )
    };
    let other_ns = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: infra}\n";
    let wp = |name: &str, ns: &str| {
        Some(xw::GatewayAddress {
            hbone_mtls_port: 15008,
            destination: Some(xw::gateway_address::Destination::Hostname(
                xw::NamespacedHostname {
                    namespace: ns.into(),
                    hostname: format!("{name}.{ns}.svc.cluster.local"),
                },
            )),
        })
    };
    // (namespace labels, pod labels, service labels, gateways) → (service waypoint, workload waypoint)
    let cases = [
        (
            "istio.io/use-waypoint: wp",
            "app: a",
            "",
            gateway("ns", "wp", "service"),
            wp("wp", "ns"),
            None,
        ),
        (
            "istio.io/use-waypoint: wp",
            "app: a",
            "",
            gateway("ns", "wp", "all"),
            wp("wp", "ns"),
            wp("wp", "ns"),
        ),
        (
            "istio.io/use-waypoint: wp",
            "app: a",
            "",
            gateway("ns", "wp", "workload"),
            None,
            wp("wp", "ns"),
        ),
        (
            "istio.io/use-waypoint: wp",
            "app: a",
            "",
            gateway("ns", "wp", "none"),
            None,
            None,
        ),
        (
            "istio.io/use-waypoint: wp",
            "app: a",
            "istio.io/use-waypoint: none",
            gateway("ns", "wp", "service"),
            None,
            None,
        ),
        (
            "",
            "app: a",
            "istio.io/use-waypoint: wp",
            gateway("ns", "wp", "service"),
            wp("wp", "ns"),
            None,
        ),
        (
            "",
            "app: a, istio.io/use-waypoint: shared, istio.io/use-waypoint-namespace: infra",
            "istio.io/use-waypoint: shared, istio.io/use-waypoint-namespace: infra",
            format!("{other_ns}{}", gateway("infra", "shared", "all")),
            wp("shared", "infra"),
            wp("shared", "infra"),
        ),
        (
            "",
            "app: a",
            "istio.io/use-waypoint: missing",
            String::new(),
            None,
            None,
        ),
    ];
    for (ns_labels, pod_labels, svc_labels, gateways, want_svc, want_pod) in cases {
        let yaml = namespace(ns_labels) + &pod(pod_labels, "") + &svc(svc_labels) + &gateways;
        let s = service(&yaml, "ns", "s");
        assert_eq!(
            s.waypoint, want_svc,
            "service: ns {ns_labels:?} svc {svc_labels:?} {gateways}"
        );
        let w = workload(&yaml, "ns", "p");
        assert_eq!(
            w.waypoint, want_pod,
            "pod: ns {ns_labels:?} pod {pod_labels:?} {gateways}"
        );
    }
}

#[test]
fn waypoint_gateways_get_a_service_and_never_use_a_waypoint() {
    let s = service(SHOP, "shop", "waypoint");
    assert_eq!(s.ports.len(), 1);
    assert_eq!(
        (s.ports[0].service_port, s.ports[0].target_port),
        (15008, 15008)
    );
    assert_eq!(s.waypoint, None);
    let waypoint_pod = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: waypoint-0, namespace: shop, labels: {gateway.networking.k8s.io/gateway-name: waypoint}}\nspec: {containers: [{name: envoy, command: [envoy]}]}\n";
    let w = workload(&format!("{SHOP}{waypoint_pod}"), "shop", "waypoint-0");
    assert!(w.native_tunnel);
    assert_eq!(w.tunnel_protocol, xw::TunnelProtocol::Hbone as i32);
    assert_eq!(w.waypoint, None);
    assert!(
        w.services
            .contains_key("shop/waypoint.shop.svc.cluster.local")
    );
}

#[test]
fn selected_policies_are_listed_on_workloads() {
    let w = workload(SHOP, "shop", "reviews-v2-0");
    assert_eq!(w.authorization_policies, vec!["shop/l4-reviews"]);
    let strict = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: shop}\nspec: {selector: {matchLabels: {version: v2}}, mtls: {mode: STRICT}}\n";
    let w = workload(&format!("{SHOP}{strict}"), "shop", "reviews-v2-0");
    assert_eq!(
        w.authorization_policies,
        vec!["shop/l4-reviews", "shop/converted_peer_authentication_p"]
    );
}
