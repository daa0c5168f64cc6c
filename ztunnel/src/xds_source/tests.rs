#![allow(clippy::unwrap_used)]

use proto::istio::security as xsec;
use proto::istio::workload as pw;
use xds::client::Update;
use xds::pb::google::protobuf::Any;

use super::*;

fn workload(uid: &str, ip: [u8; 4]) -> pw::Address {
    pw::Address {
        r#type: Some(pw::address::Type::Workload(pw::Workload {
            uid: uid.into(),
            name: "p".into(),
            namespace: "ns".into(),
            addresses: vec![ip.to_vec()],
            ..Default::default()
        })),
    }
}

fn service(ns: &str, host: &str) -> pw::Address {
    pw::Address {
        r#type: Some(pw::address::Type::Service(pw::Service {
            name: "svc".into(),
            namespace: ns.into(),
            hostname: host.into(),
            ..Default::default()
        })),
    }
}

fn update(name: &str, type_url: &str, msg: &impl Message) -> Update {
    Update {
        name: name.into(),
        version: "1".into(),
        body: Any {
            type_url: type_url.into(),
            value: msg.encode_to_vec(),
        },
    }
}

fn handlers() -> (AddressHandler, AuthorizationHandler, Store) {
    let store = Store::new();
    let held = Shared::default();
    (
        AddressHandler {
            held: held.clone(),
            store: store.clone(),
        },
        AuthorizationHandler {
            held,
            store: store.clone(),
        },
        store,
    )
}

#[test]
fn valid_resources_reach_the_store_and_bad_ones_are_named() {
    let (mut a, _, store) = handlers();
    let rejected = a.apply(Changes {
        updated: vec![
            update("u1", type_url::ADDRESS, &workload("u1", [10, 0, 0, 1])),
            update(
                "ns/a.ns.svc.cluster.local",
                type_url::ADDRESS,
                &service("ns", "a.ns.svc.cluster.local"),
            ),
            update(
                "u2",
                type_url::ADDRESS,
                &workload("other-uid", [10, 0, 0, 2]),
            ),
            update("u3", type_url::ADDRESS, &workload("u3", [10, 0, 0, 1])),
            update("garbage", type_url::ADDRESS, &pw::Address { r#type: None }),
            Update {
                name: "bytes".into(),
                version: "1".into(),
                body: Any {
                    type_url: type_url::ADDRESS.into(),
                    value: vec![0xff, 0x01],
                },
            },
        ],
        removed: vec![],
    });
    let names: Vec<&str> = rejected.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["u2", "u3", "garbage", "bytes"], "{rejected:?}");
    assert!(rejected[0].reason.contains("workload uid"));
    assert!(
        rejected[1]
            .reason
            .contains("already belongs to workload u1")
    );
    let snap = store.snapshot();
    assert_eq!(snap.workloads().count(), 1);
    assert_eq!(snap.services().count(), 1);
}

#[test]
fn removals_try_workloads_then_services_and_free_addresses() {
    let (mut a, _, store) = handlers();
    a.apply(Changes {
        updated: vec![
            update("u1", type_url::ADDRESS, &workload("u1", [10, 0, 0, 1])),
            update(
                "ns/a.ns.svc.cluster.local",
                type_url::ADDRESS,
                &service("ns", "a.ns.svc.cluster.local"),
            ),
        ],
        removed: vec![],
    });
    let r = a.apply(Changes {
        updated: vec![],
        removed: vec!["u1".into(), "ns/a.ns.svc.cluster.local".into()],
    });
    assert!(r.is_empty());
    let snap = store.snapshot();
    assert!(snap.workloads().count() == 0 && snap.services().count() == 0);
    // The address is free again.
    let r = a.apply(Changes {
        updated: vec![update(
            "u9",
            type_url::ADDRESS,
            &workload("u9", [10, 0, 0, 1]),
        )],
        removed: vec![],
    });
    assert!(r.is_empty(), "{r:?}");
}

#[test]
fn a_workload_may_move_to_a_new_address() {
    let (mut a, _, store) = handlers();
    a.apply(Changes {
        updated: vec![update(
            "u1",
            type_url::ADDRESS,
            &workload("u1", [10, 0, 0, 1]),
        )],
        removed: vec![],
    });
    let r = a.apply(Changes {
        updated: vec![
            update("u1", type_url::ADDRESS, &workload("u1", [10, 0, 0, 5])),
            update("u2", type_url::ADDRESS, &workload("u2", [10, 0, 0, 1])),
        ],
        removed: vec![],
    });
    assert!(r.is_empty(), "{r:?}");
    assert_eq!(store.snapshot().workloads().count(), 2);
}

#[test]
fn policies_are_keyed_by_namespace_and_name() {
    let (_, mut p, store) = handlers();
    let good = xsec::Authorization {
        name: "deny".into(),
        namespace: "ns".into(),
        scope: xsec::Scope::Namespace as i32,
        action: xsec::Action::Deny as i32,
        ..Default::default()
    };
    let r = p.apply(Changes {
        updated: vec![
            update("ns/deny", type_url::AUTHORIZATION, &good),
            update("ns/wrong", type_url::AUTHORIZATION, &good),
        ],
        removed: vec![],
    });
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].name, "ns/wrong");
    assert_eq!(store.snapshot().policies().len(), 1);
    p.apply(Changes {
        updated: vec![],
        removed: vec!["ns/deny".into()],
    });
    assert!(store.snapshot().policies().is_empty());
}

#[test]
fn the_node_id_is_what_istiod_expects() {
    let source = XdsSource {
        address: "http://127.0.0.1:15010".into(),
        root_cert: None,
        alt_hostname: None,
        token_file: None,
        headers: vec![],
        instance_ip: "10.0.0.9".into(),
        pod_name: "ztunnel-abc".into(),
        pod_namespace: "istio-system".into(),
        metadata: vec![("FOO".into(), "bar".into())],
    };
    let n = node(&source, "node1", "Kubernetes");
    assert_eq!(
        n.id,
        "ztunnel~10.0.0.9~ztunnel-abc.istio-system~istio-system.svc.cluster.local"
    );
    let md = n.metadata.unwrap().fields;
    assert!(
        matches!(md.get("NODE_NAME").and_then(|v| v.kind.clone()), Some(Kind::StringValue(s)) if s == "node1")
    );
    assert!(md.contains_key("FOO"));
    let text = |key: &str| match md.get(key).and_then(|v| v.kind.clone()) {
        Some(Kind::StringValue(s)) => s,
        other => panic!("{key}: {other:?}"),
    };
    // istiod warns for every connection without ISTIO_VERSION; "unknown" parses as its newest release.
    assert_eq!(
        text("ISTIO_VERSION"),
        crate::version::BuildInfo::from_env().istio_version
    );
    assert_eq!(text("CLUSTER_ID"), "Kubernetes");

    // ISTIO_META_<name> wins over what the tunnel fills in.
    let mut source = source;
    source.metadata = vec![
        ("CLUSTER_ID".into(), "east".into()),
        ("ISTIO_VERSION".into(), "1.28.0".into()),
    ];
    let md = node(&source, "node1", "Kubernetes")
        .metadata
        .unwrap()
        .fields;
    let text = |key: &str| match md.get(key).and_then(|v| v.kind.clone()) {
        Some(Kind::StringValue(s)) => s,
        other => panic!("{key}: {other:?}"),
    };
    assert_eq!(text("CLUSTER_ID"), "east");
    assert_eq!(text("ISTIO_VERSION"), "1.28.0");
}
