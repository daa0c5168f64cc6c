//! The spec §11 example, bad inputs whose errors must name the field, and a JSON round trip.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;

use super::*;
use crate::model::{
    GatewayAddress, Match, PolicyAction, PolicyScope, PortMap, Protocol, StringMatch,
};

/// Verbatim from spec §11.
const SPEC_EXAMPLE: &str = r#"
workloads:
  - uid: k1//v1/Pod/shop/cart-0        # primary key
    name: cart-0
    namespace: shop
    serviceAccount: cart               # -> spiffe://cluster.local/ns/shop/sa/cart
    workloadIps: ["10.1.0.7"]
    protocol: HBONE                    # or TCP
    node: node-a
    canonicalName: cart
    canonicalRevision: v2
    waypoint: {destination: "shop/wp.shop.svc.cluster.local", hboneMtlsPort: 15008}
    authorizationPolicies: ["shop/cart-only-frontend"]
    services:                          # "ns/hostname": {servicePort: targetPort}
      "shop/cart.shop.svc.cluster.local": {80: 8080}
services:
  - name: cart
    namespace: shop
    hostname: cart.shop.svc.cluster.local
    vips: ["/10.96.3.3"]
    ports: {80: 8080}
policies:
  - name: cart-only-frontend
    namespace: shop
    scope: WorkloadSelector            # Global | Namespace | WorkloadSelector
    action: Allow                      # Allow | Deny
    dryRun: false
    rules:                             # rules -> clauses -> matches
      - - - principals: [{Exact: "cluster.local/ns/shop/sa/frontend"}]
        - - destinationPorts: [8080]
"#;

/// Every other key §11 lists, to prove each is accepted.
const ALL_KEYS: &str = r#"
workloads:
  - uid: u1
    name: n
    namespace: shop
    trustDomain: td.example
    network: net1
    networkMode: HostNetwork
    hostname: vm.example.com
    networkGateway: {destination: "net1/192.168.0.1"}
    nativeTunnel: true
    applicationTunnel: {protocol: PROXY, port: 15088}
    status: Unhealthy
    clusterId: c2
    locality: {region: r, zone: z, subzone: s}
    capacity: 4
    workloadName: n
    workloadType: deployment
services:
  - name: s
    namespace: shop
    hostname: s.shop.svc.cluster.local
    subjectAltNames: ["spiffe://cluster.local/ns/shop/sa/s"]
    waypoint: {destination: "shop/wp.shop.svc.cluster.local"}
    loadBalancer: {routingPreferences: [Network, Zone], mode: Failover, healthPolicy: AllowAll}
    ipFamilies: Dual
    canonical: true
    visibility: Namespace
policies:
  - name: p
    namespace: shop
    rules:
      - - - namespaces: [{Prefix: "sh"}]
            notNamespaces: [{Suffix: "x"}]
            principals: [{Presence: []}]
            notPrincipals: [{Exact: "a"}]
            serviceAccounts: [{namespace: shop, serviceAccount: a}]
            notServiceAccounts: [{namespace: ops, serviceAccount: b}]
            sourceIps: ["10.0.0.0/8"]
            notSourceIps: ["10.9.0.0/16"]
            destinationIps: ["fd00::/8"]
            notDestinationIps: ["fd00::1/128"]
            destinationPorts: [80]
            notDestinationPorts: [81]
"#;

fn parse(text: &str) -> Result<LocalConfig, LocalConfigError> {
    LocalConfig::from_yaml(text, "test.yaml")
}

/// Parses `text`, expecting an error whose document path contains `path`.
fn parse_err(text: &str, path: &str) -> LocalConfigError {
    let e = parse(text).unwrap_err();
    assert!(
        e.path().is_some_and(|p| p.contains(path)) && e.to_string().contains(path),
        "error should name {path:?}: {e}"
    );
    assert!(e.to_string().starts_with("test.yaml: "), "{e}");
    e
}

#[test]
fn spec_example_parses() {
    let c = parse(SPEC_EXAMPLE).unwrap();
    let w = &c.workloads[0];
    assert_eq!(w.uid, "k1//v1/Pod/shop/cart-0");
    assert_eq!(
        w.identity().unwrap().to_string(),
        "spiffe://cluster.local/ns/shop/sa/cart"
    );
    assert_eq!(
        w.workload_ips,
        vec!["10.1.0.7".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(w.protocol, Protocol::Hbone);
    assert_eq!(
        w.waypoint,
        Some(GatewayAddress {
            destination: "shop/wp.shop.svc.cluster.local".parse().unwrap(),
            hbone_mtls_port: 15008,
        })
    );
    assert_eq!(
        w.services,
        BTreeMap::from([(
            "shop/cart.shop.svc.cluster.local".parse().unwrap(),
            PortMap::from([(80, 8080)])
        )])
    );
    assert_eq!(w.capacity, 1);

    let s = &c.services[0];
    assert_eq!(s.key().to_string(), "shop/cart.shop.svc.cluster.local");
    assert_eq!(s.vips[0].to_string(), "/10.96.3.3");
    assert_eq!(s.ports, BTreeMap::from([(80, 8080)]));

    let p = &c.policies[0];
    assert_eq!(p.key(), "shop/cart-only-frontend");
    assert_eq!(
        (p.scope, p.action, p.dry_run),
        (PolicyScope::WorkloadSelector, PolicyAction::Allow, false)
    );
    assert_eq!(
        p.rules,
        vec![vec![
            vec![Match {
                principals: vec![StringMatch::Exact(
                    "cluster.local/ns/shop/sa/frontend".into()
                )],
                ..Match::default()
            }],
            vec![Match {
                destination_ports: vec![8080],
                ..Match::default()
            }],
        ]]
    );
}

#[test]
fn every_documented_key_is_accepted() {
    let c = parse(ALL_KEYS).unwrap();
    assert_eq!(c.workloads[0].capacity, 4);
    assert_eq!(
        c.policies[0].rules[0][0][0].principals,
        vec![StringMatch::Presence()]
    );
}

#[test]
fn json_round_trip() {
    for text in [SPEC_EXAMPLE, ALL_KEYS] {
        let c = parse(text).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: LocalConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c, "{json}");
    }
}

#[test]
fn empty_lists_may_be_omitted() {
    assert_eq!(parse("workloads: []").unwrap(), LocalConfig::default());
    assert_eq!(parse("{}").unwrap(), LocalConfig::default());
    assert_eq!(parse("").unwrap(), LocalConfig::default());
}

#[test]
fn unknown_field_is_named() {
    let e = parse_err(
        "workloads:\n  - {uid: a, name: a, namespace: ns}\n  - {uid: b, name: b, namespace: ns, servicez: {}}\n",
        "workloads[1]",
    );
    assert!(e.to_string().contains("servicez"), "{e}");
    let e = parse_err("workload: []\n", "workload");
    assert!(e.to_string().contains("workload"), "{e}");
}

#[test]
fn bad_services_map_is_named() {
    parse_err(
        "workloads:\n  - {uid: a, name: a, namespace: ns}\n  - {uid: b, name: b, namespace: ns, services: {\"no-slash\": {80: 8080}}}\n",
        "workloads[1].services",
    );
}

#[test]
fn bad_enum_is_named() {
    let e = parse_err(
        "policies:\n  - {name: p, namespace: ns, action: Permit}\n",
        "policies[0].action",
    );
    assert!(e.to_string().contains("Permit"), "{e}");
    parse_err(
        "workloads:\n  - {uid: a, name: a, namespace: ns, protocol: hbone}\n",
        "workloads[0].protocol",
    );
}

#[test]
fn bad_ip_is_named() {
    parse_err(
        "workloads:\n  - {uid: a, name: a, namespace: ns, workloadIps: [\"10.0.0.1\", \"10.0.0.300\"]}\n",
        "workloads[0].workloadIps[1]",
    );
    parse_err(
        "services:\n  - {name: s, namespace: ns, hostname: h, vips: [\"10.96.0.1\"]}\n",
        "services[0].vips[0]",
    );
}

#[test]
fn bad_cidr_is_named() {
    let text = "policies:\n  - name: p\n    namespace: ns\n    rules:\n      - - - sourceIps: [\"10.0.0.0/33\"]\n";
    parse_err(text, "policies[0].rules[0][0][0].sourceIps[0]");
    let text = "policies:\n  - name: p\n    namespace: ns\n    rules:\n      - - - destinationIps: [\"10.0.0.1\"]\n";
    parse_err(text, "destinationIps[0]");
}

#[test]
fn bad_port_is_named() {
    parse_err(
        "services:\n  - {name: s, namespace: ns, hostname: h, ports: {80: 70000}}\n",
        "services[0].ports",
    );
}

#[test]
fn duplicate_workload_uid() {
    let e = parse_err(
        "workloads:\n  - {uid: a, name: a, namespace: ns}\n  - {uid: a, name: b, namespace: ns}\n",
        "workloads[1].uid",
    );
    assert!(matches!(e, LocalConfigError::Invalid { .. }), "{e:?}");
}

#[test]
fn empty_workload_uid() {
    parse_err(
        "workloads:\n  - {uid: \"\", name: a, namespace: ns}\n",
        "workloads[0].uid",
    );
}

#[test]
fn invalid_identity_parts() {
    for w in [
        "{uid: a, name: a, namespace: \"\"}",
        "{uid: a, name: a, namespace: ns, serviceAccount: \"a/b\"}",
        "{uid: a, name: a, namespace: ns, trustDomain: \"Bad TD\"}",
    ] {
        let e = parse_err(&format!("workloads:\n  - {w}\n"), "workloads[0]");
        assert!(e.to_string().contains("identity"), "{e}");
    }
}

#[test]
fn duplicate_service_key() {
    let text = "services:\n  - {name: a, namespace: ns, hostname: h}\n  - {name: b, namespace: ns, hostname: h}\n";
    let e = parse_err(text, "services[1]");
    assert!(e.to_string().contains("duplicate service ns/h"), "{e}");
}

#[test]
fn empty_service_hostname() {
    parse_err(
        "services:\n  - {name: a, namespace: ns, hostname: \"\"}\n",
        "services[0]",
    );
}

#[test]
fn duplicate_policy_key() {
    let text =
        "policies:\n  - {name: p, namespace: ns}\n  - {name: p, namespace: ns, action: Deny}\n";
    let e = parse_err(text, "policies[1]");
    assert!(e.to_string().contains("duplicate policy ns/p"), "{e}");
}

#[test]
fn shared_vip_is_allowed() {
    let text = "services:\n  - {name: a, namespace: ns, hostname: a, vips: [\"/10.96.0.1\"]}\n  - {name: b, namespace: other, hostname: b, vips: [\"/10.96.0.1\"]}\n";
    assert_eq!(parse(text).unwrap().services.len(), 2);
}

#[test]
fn not_yaml() {
    let e = parse("workloads: [\n").unwrap_err();
    assert!(matches!(e, LocalConfigError::Parse { .. }), "{e:?}");
}

#[test]
fn load_reads_a_file() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(SPEC_EXAMPLE.as_bytes()).unwrap();
    let c = load(f.path()).unwrap();
    assert_eq!(c.workloads.len(), 1);

    let missing = f.path().with_extension("missing");
    let e = load(&missing).unwrap_err();
    assert!(matches!(e, LocalConfigError::Read { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );
    assert_eq!(e.path(), None);
}
