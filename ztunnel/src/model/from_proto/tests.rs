//! Conversion tests: a full round trip per resource kind, and one test per rejection asserting
//! the error names the field.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use prost::Message;

use super::*;

fn v4(s: &str) -> Vec<u8> {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets().to_vec()
}

fn v6(s: &str) -> Vec<u8> {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec()
}

fn xport(service_port: u32, target_port: u32) -> xds::Port {
    xds::Port {
        service_port,
        target_port,
        app_protocol: 0,
    }
}

fn wp_hostname() -> xds::GatewayAddress {
    xds::GatewayAddress {
        hbone_mtls_port: 15008,
        destination: Some(xds::gateway_address::Destination::Hostname(
            xds::NamespacedHostname {
                namespace: "shop".into(),
                hostname: "wp.shop.svc.cluster.local".into(),
            },
        )),
    }
}

fn wp_address(length: Option<u32>) -> xds::GatewayAddress {
    xds::GatewayAddress {
        hbone_mtls_port: 15008,
        destination: Some(xds::gateway_address::Destination::Address(
            xds::NetworkAddress {
                network: "net2".into(),
                address: v4("192.168.9.9"),
                length,
            },
        )),
    }
}

/// A minimal valid workload.
fn xworkload() -> xds::Workload {
    xds::Workload {
        uid: "k1//v1/Pod/shop/cart-0".into(),
        name: "cart-0".into(),
        namespace: "shop".into(),
        ..Default::default()
    }
}

/// A workload with every field set.
fn xworkload_full() -> xds::Workload {
    xds::Workload {
        uid: "k1//v1/Pod/shop/cart-0".into(),
        name: "cart-0".into(),
        namespace: "shop".into(),
        addresses: vec![v4("10.1.0.7"), v6("fd00::7")],
        hostname: "cart-0.cart.shop.svc.cluster.local".into(),
        network: "net1".into(),
        tunnel_protocol: xds::TunnelProtocol::Hbone as i32,
        trust_domain: "td.example".into(),
        service_account: "cart".into(),
        waypoint: Some(wp_hostname()),
        network_gateway: Some(wp_address(Some(32))),
        node: "node-a".into(),
        canonical_name: "cart".into(),
        canonical_revision: "v2".into(),
        workload_type: xds::WorkloadType::Deployment as i32,
        workload_name: "cart".into(),
        native_tunnel: true,
        application_tunnel: Some(xds::ApplicationTunnel {
            protocol: xds::application_tunnel::Protocol::Proxy as i32,
            port: 15088,
        }),
        services: HashMap::from([(
            "shop/cart.shop.svc.cluster.local".to_owned(),
            xds::PortList {
                ports: vec![xport(80, 8080), xport(443, 8443)],
            },
        )]),
        authorization_policies: vec!["shop/cart-only-frontend".into()],
        status: xds::WorkloadStatus::Unhealthy as i32,
        cluster_id: "c2".into(),
        locality: Some(xds::Locality {
            region: "r".into(),
            zone: "z".into(),
            subzone: "s".into(),
        }),
        network_mode: xds::NetworkMode::HostNetwork as i32,
        extensions: vec![],
        capacity: Some(3),
    }
}

fn expected_workload() -> Workload {
    Workload {
        uid: "k1//v1/Pod/shop/cart-0".into(),
        name: "cart-0".into(),
        namespace: "shop".into(),
        workload_ips: vec!["10.1.0.7".parse().unwrap(), "fd00::7".parse().unwrap()],
        hostname: "cart-0.cart.shop.svc.cluster.local".into(),
        network: "net1".into(),
        protocol: Protocol::Hbone,
        trust_domain: "td.example".into(),
        service_account: "cart".into(),
        waypoint: Some(GatewayAddress {
            destination: "shop/wp.shop.svc.cluster.local".parse().unwrap(),
            hbone_mtls_port: 15008,
        }),
        network_gateway: Some(GatewayAddress {
            destination: "net2/192.168.9.9".parse().unwrap(),
            hbone_mtls_port: 15008,
        }),
        node: "node-a".into(),
        canonical_name: "cart".into(),
        canonical_revision: "v2".into(),
        workload_type: "deployment".into(),
        workload_name: "cart".into(),
        native_tunnel: true,
        application_tunnel: Some(ApplicationTunnel {
            protocol: AppTunnelProtocol::Proxy,
            port: Some(15088),
        }),
        services: BTreeMap::from([(
            NamespacedHostname::new("shop", "cart.shop.svc.cluster.local"),
            PortMap::from([(80, 8080), (443, 8443)]),
        )]),
        authorization_policies: vec!["shop/cart-only-frontend".into()],
        status: HealthStatus::Unhealthy,
        cluster_id: "c2".into(),
        locality: Locality {
            region: "r".into(),
            zone: "z".into(),
            subzone: "s".into(),
        },
        network_mode: NetworkMode::HostNetwork,
        capacity: 3,
    }
}

fn xservice() -> xds::Service {
    xds::Service {
        name: "cart".into(),
        namespace: "shop".into(),
        hostname: "cart.shop.svc.cluster.local".into(),
        ..Default::default()
    }
}

fn xservice_full() -> xds::Service {
    use self::xds::load_balancing::{HealthPolicy, Mode, Scope};
    xds::Service {
        addresses: vec![
            xds::NetworkAddress {
                network: String::new(),
                address: v4("10.96.3.3"),
                length: None,
            },
            xds::NetworkAddress {
                network: "net1".into(),
                address: v6("fd00:96::3"),
                length: Some(128),
            },
        ],
        ports: vec![xport(80, 8080), xport(9090, 0)],
        subject_alt_names: vec!["spiffe://cluster.local/ns/shop/sa/cart".into()],
        waypoint: Some(wp_hostname()),
        load_balancing: Some(xds::LoadBalancing {
            routing_preference: vec![Scope::Network as i32, Scope::Zone as i32],
            mode: Mode::Failover as i32,
            health_policy: HealthPolicy::AllowAll as i32,
        }),
        ip_families: xds::IpFamilies::Dual as i32,
        canonical: true,
        ingress_use_waypoint: true,
        visibility: xds::Visibility::Namespace as i32,
        ..xservice()
    }
}

fn expected_service() -> Service {
    Service {
        name: "cart".into(),
        namespace: "shop".into(),
        hostname: "cart.shop.svc.cluster.local".into(),
        vips: vec![
            "/10.96.3.3".parse().unwrap(),
            "net1/fd00:96::3".parse().unwrap(),
        ],
        ports: BTreeMap::from([(80, 8080), (9090, 0)]),
        subject_alt_names: vec!["spiffe://cluster.local/ns/shop/sa/cart".into()],
        waypoint: Some(GatewayAddress {
            destination: "shop/wp.shop.svc.cluster.local".parse().unwrap(),
            hbone_mtls_port: 15008,
        }),
        load_balancer: Some(LoadBalancer {
            routing_preferences: vec![LoadBalancerScope::Network, LoadBalancerScope::Zone],
            mode: LoadBalancerMode::Failover,
            health_policy: LoadBalancerHealthPolicy::AllowAll,
        }),
        ip_families: IpFamilies::Dual,
        canonical: true,
        visibility: Visibility::Namespace,
    }
}

fn sm(t: xsec::string_match::MatchType) -> xsec::StringMatch {
    xsec::StringMatch {
        match_type: Some(t),
    }
}

fn xaddr(a: Vec<u8>, length: u32) -> xsec::Address {
    xsec::Address { address: a, length }
}

fn xpolicy(matches: Vec<xsec::Match>) -> xsec::Authorization {
    xsec::Authorization {
        name: "p".into(),
        namespace: "shop".into(),
        scope: xsec::Scope::WorkloadSelector as i32,
        action: xsec::Action::Deny as i32,
        rules: vec![xsec::Rule {
            clauses: vec![xsec::Clause { matches }],
        }],
        dry_run: true,
        extensions: vec![],
    }
}

fn xmatch_full() -> xsec::Match {
    use xsec::string_match::MatchType as T;
    let sa = |ns: &str, sa: &str| xsec::ServiceAccountMatch {
        namespace: ns.into(),
        service_account: sa.into(),
    };
    xsec::Match {
        namespaces: vec![sm(T::Exact("shop".into()))],
        not_namespaces: vec![sm(T::Prefix("test-".into()))],
        principals: vec![sm(T::Suffix("/sa/frontend".into()))],
        not_principals: vec![sm(T::Presence(()))],
        source_ips: vec![xaddr(v4("10.0.0.0"), 8)],
        not_source_ips: vec![xaddr(v6("fd00::"), 8)],
        destination_ips: vec![xaddr(v4("10.1.0.7"), 32)],
        not_destination_ips: vec![xaddr(v4("0.0.0.0"), 0)],
        destination_ports: vec![8080],
        not_destination_ports: vec![9090],
        service_accounts: vec![sa("shop", "frontend")],
        not_service_accounts: vec![sa("ops", "admin")],
    }
}

fn expected_match() -> Match {
    let sa = |ns: &str, sa: &str| ServiceAccountMatch {
        namespace: ns.into(),
        service_account: sa.into(),
    };
    Match {
        namespaces: vec![StringMatch::Exact("shop".into())],
        not_namespaces: vec![StringMatch::Prefix("test-".into())],
        principals: vec![StringMatch::Suffix("/sa/frontend".into())],
        not_principals: vec![StringMatch::Presence()],
        service_accounts: vec![sa("shop", "frontend")],
        not_service_accounts: vec![sa("ops", "admin")],
        source_ips: vec!["10.0.0.0/8".parse().unwrap()],
        not_source_ips: vec!["fd00::/8".parse().unwrap()],
        destination_ips: vec!["10.1.0.7/32".parse().unwrap()],
        not_destination_ips: vec!["0.0.0.0/0".parse().unwrap()],
        destination_ports: vec![8080],
        not_destination_ports: vec![9090],
    }
}

/// Encodes, decodes as the xDS client would, converts.
fn via_wire_address(t: xds::address::Type) -> Result<AddressResource, ModelError> {
    let bytes = xds::Address { r#type: Some(t) }.encode_to_vec();
    xds::Address::decode(bytes.as_slice()).unwrap().try_into()
}

fn json_round_trip<T>(v: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
}

/// The field named by an `Invalid` error.
fn field(e: ModelError) -> &'static str {
    match e {
        ModelError::Invalid { field, .. } => field,
        other => panic!("expected ModelError::Invalid, got {other:?}"),
    }
}

fn workload_err(w: xds::Workload) -> ModelError {
    Workload::try_from(w).unwrap_err()
}

fn service_err(s: xds::Service) -> ModelError {
    Service::try_from(s).unwrap_err()
}

fn policy_err(p: xsec::Authorization) -> ModelError {
    Authorization::try_from(p).unwrap_err()
}

#[test]
fn workload_full_round_trip() {
    let got = via_wire_address(xds::address::Type::Workload(xworkload_full())).unwrap();
    let AddressResource::Workload(w) = got else {
        panic!("not a workload: {got:?}")
    };
    assert_eq!(w, expected_workload());
    assert_eq!(json_round_trip(&w), w);
}

#[test]
fn workload_defaults() {
    let w = Workload::try_from(xworkload()).unwrap();
    assert_eq!(w.trust_domain, "cluster.local");
    assert_eq!(w.service_account, "default");
    assert_eq!(w.cluster_id, "Kubernetes");
    assert_eq!(w.capacity, 1);
    assert_eq!(w.protocol, Protocol::Tcp);
    assert_eq!(w.workload_type, "deployment"); // proto3 default enum value
    assert_eq!(
        w.identity().unwrap().to_string(),
        "spiffe://cluster.local/ns/shop/sa/default"
    );
    assert_eq!(json_round_trip(&w), w);
}

#[test]
fn workload_type_is_lower_case() {
    for (t, want) in [
        (xds::WorkloadType::Cronjob, "cronjob"),
        (xds::WorkloadType::Pod, "pod"),
        (xds::WorkloadType::Job, "job"),
    ] {
        let w = Workload::try_from(xds::Workload {
            workload_type: t as i32,
            ..xworkload()
        })
        .unwrap();
        assert_eq!(w.workload_type, want);
    }
}

#[test]
fn rejects_empty_uid() {
    let e = workload_err(xds::Workload {
        uid: String::new(),
        ..xworkload()
    });
    assert_eq!(field(e), "workload.uid");
}

#[test]
fn rejects_bad_ip_length() {
    let e = workload_err(xds::Workload {
        addresses: vec![vec![10, 0, 0, 1, 5]],
        ..xworkload()
    });
    assert!(e.to_string().contains("got 5"), "{e}");
    assert_eq!(field(e), "workload.addresses");
    let e = service_err(xds::Service {
        addresses: vec![xds::NetworkAddress {
            network: String::new(),
            address: vec![],
            length: None,
        }],
        ..xservice()
    });
    assert_eq!(field(e), "service.addresses");
}

#[test]
fn rejects_legacy_istio_mtls() {
    let e = workload_err(xds::Workload {
        tunnel_protocol: xds::TunnelProtocol::LegacyIstioMtls as i32,
        ..xworkload()
    });
    assert!(e.to_string().contains("LEGACY_ISTIO_MTLS"), "{e}");
    assert_eq!(field(e), "workload.tunnel_protocol");
}

#[test]
fn rejects_invalid_identity() {
    for w in [
        xds::Workload {
            namespace: String::new(),
            ..xworkload()
        },
        xds::Workload {
            service_account: "a/b".into(),
            ..xworkload()
        },
        xds::Workload {
            trust_domain: "Upper.Case".into(),
            ..xworkload()
        },
    ] {
        let e = workload_err(w);
        assert!(field(e).contains("identity"));
    }
}

#[test]
fn rejects_ports_above_u16() {
    let e = workload_err(xds::Workload {
        services: HashMap::from([(
            "shop/cart.shop.svc.cluster.local".to_owned(),
            xds::PortList {
                ports: vec![xport(80, 70000)],
            },
        )]),
        ..xworkload()
    });
    assert!(e.to_string().contains("70000"), "{e}");
    assert_eq!(field(e), "workload.services");

    let e = workload_err(xds::Workload {
        application_tunnel: Some(xds::ApplicationTunnel {
            protocol: 1,
            port: 65536,
        }),
        ..xworkload()
    });
    assert_eq!(field(e), "workload.application_tunnel.port");

    let mut gw = wp_hostname();
    gw.hbone_mtls_port = 1 << 20;
    let e = workload_err(xds::Workload {
        waypoint: Some(gw),
        ..xworkload()
    });
    assert_eq!(field(e), "workload.waypoint");

    let e = service_err(xds::Service {
        ports: vec![xport(65536, 80)],
        ..xservice()
    });
    assert_eq!(field(e), "service.ports");

    let e = policy_err(xpolicy(vec![xsec::Match {
        not_destination_ports: vec![80, 65536],
        ..Default::default()
    }]));
    assert!(
        e.to_string()
            .contains("rules[0].clauses[0].matches[0].not_destination_ports[1]"),
        "{e}"
    );
}

#[test]
fn rejects_bad_service_key() {
    for key in ["cart.shop.svc.cluster.local", "/cart", "shop/", "shop/a/b"] {
        let e = workload_err(xds::Workload {
            services: HashMap::from([(key.to_owned(), xds::PortList::default())]),
            ..xworkload()
        });
        assert!(e.to_string().contains(key), "{e}");
        assert_eq!(field(e), "workload.services");
    }
}

#[test]
fn rejects_bad_service_identity() {
    for s in [
        xds::Service {
            hostname: String::new(),
            ..xservice()
        },
        xds::Service {
            namespace: "a/b".into(),
            ..xservice()
        },
    ] {
        assert_eq!(field(service_err(s)), "service namespace/hostname");
    }
}

#[test]
fn cidr_vips_only_full_length() {
    let with_len = |length| xds::Service {
        addresses: vec![xds::NetworkAddress {
            network: String::new(),
            address: v4("10.96.0.0"),
            length,
        }],
        ..xservice()
    };
    assert!(Service::try_from(with_len(None)).is_ok());
    assert!(Service::try_from(with_len(Some(32))).is_ok());
    let e = service_err(with_len(Some(16)));
    assert!(
        e.to_string().contains("CIDR VIPs are not supported yet"),
        "{e}"
    );
    assert_eq!(field(e), "service.addresses");
    let e = service_err(with_len(Some(33)));
    assert!(e.to_string().contains("longer than /32"), "{e}");

    let e = workload_err(xds::Workload {
        network_gateway: Some(wp_address(Some(24))),
        ..xworkload()
    });
    assert_eq!(field(e), "workload.network_gateway");
}

#[test]
fn rejects_gateway_without_destination() {
    let e = workload_err(xds::Workload {
        waypoint: Some(xds::GatewayAddress {
            hbone_mtls_port: 15008,
            destination: None,
        }),
        ..xworkload()
    });
    assert!(e.to_string().contains("destination"), "{e}");
    assert_eq!(field(e), "workload.waypoint");
}

#[test]
fn rejects_gateway_hostname_that_reads_as_address() {
    let mut gw = wp_hostname();
    gw.destination = Some(xds::gateway_address::Destination::Hostname(
        xds::NamespacedHostname {
            namespace: "net".into(),
            hostname: "10.0.0.1".into(),
        },
    ));
    let e = service_err(xds::Service {
        waypoint: Some(gw),
        ..xservice()
    });
    assert_eq!(field(e), "service.waypoint");
}

#[test]
fn rejects_unknown_enum_values() {
    assert_eq!(
        field(workload_err(xds::Workload {
            tunnel_protocol: 7,
            ..xworkload()
        })),
        "workload.tunnel_protocol"
    );
    assert_eq!(
        field(workload_err(xds::Workload {
            status: 9,
            ..xworkload()
        })),
        "workload.status"
    );
    let e = service_err(xds::Service {
        load_balancing: Some(xds::LoadBalancing {
            routing_preference: vec![0],
            ..Default::default()
        }),
        ..xservice()
    });
    assert_eq!(field(e), "service.load_balancing.routing_preference");
    let mut p = xpolicy(vec![]);
    p.action = 5;
    assert_eq!(field(policy_err(p)), "authorization.action");
}

#[test]
fn rejects_empty_address() {
    let e = AddressResource::try_from(xds::Address { r#type: None }).unwrap_err();
    assert_eq!(field(e), "address.type");
}

#[test]
fn service_full_round_trip() {
    let got = via_wire_address(xds::address::Type::Service(xservice_full())).unwrap();
    let AddressResource::Service(s) = got else {
        panic!("not a service: {got:?}")
    };
    assert_eq!(s, expected_service());
    assert_eq!(json_round_trip(&s), s);

    let minimal = Service::try_from(xservice()).unwrap();
    assert_eq!(minimal.load_balancer, None);
    assert_eq!(
        minimal.key().to_string(),
        "shop/cart.shop.svc.cluster.local"
    );
}

#[test]
fn authorization_full_round_trip() {
    let p = xpolicy(vec![xmatch_full(), xsec::Match::default()]);
    let bytes = p.encode_to_vec();
    let got =
        Authorization::try_from(xsec::Authorization::decode(bytes.as_slice()).unwrap()).unwrap();
    let want = Authorization {
        name: "p".into(),
        namespace: "shop".into(),
        scope: PolicyScope::WorkloadSelector,
        action: PolicyAction::Deny,
        dry_run: true,
        rules: vec![vec![vec![expected_match(), Match::default()]]],
    };
    assert_eq!(got, want);
    assert_eq!(json_round_trip(&got), got);
}

#[test]
fn authorization_shapes_survive() {
    // Zero rules, a rule with zero clauses and a clause with zero matches stay distinct.
    let mut p = xpolicy(vec![]);
    p.rules = vec![
        xsec::Rule { clauses: vec![] },
        xsec::Rule {
            clauses: vec![xsec::Clause { matches: vec![] }],
        },
    ];
    let got = Authorization::try_from(p).unwrap();
    assert_eq!(got.rules, vec![vec![], vec![vec![]]]);
    let mut none = xpolicy(vec![]);
    none.rules.clear();
    assert!(Authorization::try_from(none).unwrap().rules.is_empty());
}

#[test]
fn rejects_string_match_without_type() {
    let e = policy_err(xpolicy(vec![xsec::Match {
        principals: vec![xsec::StringMatch { match_type: None }],
        ..Default::default()
    }]));
    assert!(
        e.to_string()
            .contains("rules[0].clauses[0].matches[0].principals[0]: match_type"),
        "{e}"
    );
    assert_eq!(field(e), "authorization.rules");
}

#[test]
fn rejects_address_length_beyond_width() {
    let e = policy_err(xpolicy(vec![xsec::Match {
        source_ips: vec![xaddr(v4("10.0.0.0"), 33)],
        ..Default::default()
    }]));
    assert!(e.to_string().contains("source_ips[0]: 10.0.0.0/33"), "{e}");
    let e = policy_err(xpolicy(vec![xsec::Match {
        destination_ips: vec![xaddr(v6("::"), 129)],
        ..Default::default()
    }]));
    assert!(e.to_string().contains("destination_ips[0]"), "{e}");
    let e = policy_err(xpolicy(vec![xsec::Match {
        not_source_ips: vec![xaddr(vec![1, 2, 3], 8)],
        ..Default::default()
    }]));
    assert!(
        e.to_string()
            .contains("not_source_ips[0]: IP address must be 4 or 16 bytes"),
        "{e}"
    );
}

#[test]
fn rejects_unnamed_policy() {
    let mut p = xpolicy(vec![]);
    p.name.clear();
    assert_eq!(field(policy_err(p)), "authorization.name");
    let mut p = xpolicy(vec![]);
    p.namespace.clear();
    assert_eq!(field(policy_err(p)), "authorization.namespace");
}

/// The stable-toolchain twin of the `xds_address` fuzz target: full resources, then
/// deterministic pseudo-random mutations of their encodings. Nothing panics, and whatever
/// converts survives the JSON (config_dump / local config) shape unchanged.
#[test]
fn conversions_survive_mutated_encodings() {
    let seeds = [
        xds::Address {
            r#type: Some(xds::address::Type::Workload(xworkload_full())),
        }
        .encode_to_vec(),
        xds::Address {
            r#type: Some(xds::address::Type::Service(xservice_full())),
        }
        .encode_to_vec(),
        xpolicy(vec![xmatch_full()]).encode_to_vec(),
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut converted, mut rejected) = (0, 0);
    for i in 0..20_000 {
        let mut data = seeds[i % seeds.len()].clone();
        for _ in 0..=(next() % 4) {
            let at = (next() as usize) % data.len().max(1);
            match next() % 3 {
                0 if !data.is_empty() => data[at] = next() as u8,
                1 => data.insert(at.min(data.len()), next() as u8),
                _ => data.truncate(at),
            }
        }
        if let Ok(a) = xds::Address::decode(data.as_slice()) {
            match AddressResource::try_from(a) {
                Ok(AddressResource::Workload(w)) => {
                    converted += 1;
                    assert!(w.identity().is_ok());
                    assert_eq!(json_round_trip(&w), w);
                }
                Ok(AddressResource::Service(s)) => {
                    converted += 1;
                    assert_eq!(json_round_trip(&s), s);
                }
                Err(_) => rejected += 1,
            }
        }
        if let Ok(p) = xsec::Authorization::decode(data.as_slice()) {
            match Authorization::try_from(p) {
                Ok(p) => {
                    converted += 1;
                    assert_eq!(json_round_trip(&p), p);
                }
                Err(_) => rejected += 1,
            }
        }
    }
    assert!(
        converted > 100 && rejected > 100,
        "converted {converted}, rejected {rejected}"
    );
}
