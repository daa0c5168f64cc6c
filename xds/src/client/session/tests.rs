#![allow(clippy::unwrap_used)]

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::service::discovery::v3::Resource;
use prost::Message;

use super::*;

/// Accepts everything except bodies equal to `b"bad"`; records what it saw.
#[derive(Default)]
struct Recorder {
    applied: Vec<Changes>,
}

impl Handler for Recorder {
    fn apply(&mut self, changes: Changes) -> Vec<Rejected> {
        let bad = changes
            .updated
            .iter()
            .filter(|u| u.body.value == b"bad")
            .map(|u| Rejected::new(&u.name, "bad body"))
            .collect();
        self.applied.push(changes);
        bad
    }
    fn resource_name(&self, body: &Any) -> Result<String, String> {
        if body.type_url == type_url::CLUSTER {
            return names::resource_name(body);
        }
        String::from_utf8(body.value.clone())
            .map(|s| s.split(':').next().unwrap_or_default().to_owned())
            .map_err(|e| e.to_string())
    }
}

const T: &str = "type.googleapis.com/istio.workload.Address";

fn any(value: &str) -> Any {
    Any {
        type_url: T.into(),
        value: value.as_bytes().to_vec(),
    }
}

fn delta_resp(
    nonce: &str,
    resources: &[(&str, &str, &str)],
    removed: &[&str],
) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        type_url: T.into(),
        nonce: nonce.into(),
        resources: resources
            .iter()
            .map(|(n, v, body)| Resource {
                name: (*n).into(),
                version: (*v).into(),
                resource: Some(any(body)),
                ..Default::default()
            })
            .collect(),
        removed_resources: removed.iter().map(|s| (*s).into()).collect(),
        ..Default::default()
    }
}

fn session() -> Session {
    Session::new(vec![(T.into(), Names::Wildcard)])
}

#[test]
fn delta_first_request_is_legacy_wildcard_and_reconnect_carries_versions() {
    let mut s = session();
    let first = s.initial_delta();
    assert_eq!(first.len(), 1);
    assert!(first[0].resource_names_subscribe.is_empty());
    assert!(first[0].initial_resource_versions.is_empty());
    let mut h = Recorder::default();
    let (ack, out) = s.on_delta_response(
        delta_resp("n1", &[("a", "1", "a"), ("b", "1", "b")], &[]),
        &mut h,
    );
    assert_eq!(ack.response_nonce, "n1");
    assert!(ack.error_detail.is_none());
    assert_eq!(out.updated, 2);
    s.reconnected();
    let again = s.initial_delta();
    let mut versions: Vec<_> = again[0].initial_resource_versions.iter().collect();
    versions.sort();
    assert_eq!(
        versions,
        vec![
            (&"a".to_string(), &"1".to_string()),
            (&"b".to_string(), &"1".to_string())
        ]
    );
}

#[test]
fn delta_nack_names_each_rejected_resource_and_keeps_the_rest() {
    let mut s = session();
    let mut h = Recorder::default();
    s.on_delta_response(delta_resp("n1", &[("a", "1", "a")], &[]), &mut h);
    let (ack, out) = s.on_delta_response(
        delta_resp(
            "n2",
            &[("a", "2", "bad"), ("b", "1", "b"), ("c", "1", "bad")],
            &[],
        ),
        &mut h,
    );
    let detail = ack.error_detail.unwrap();
    assert_eq!(detail.code, 3);
    assert_eq!(detail.message, "a: bad body; c: bad body");
    assert_eq!(out.updated, 1);
    // The rejected update of `a` keeps version 1; `c` is not recorded as known.
    let held = s.held(T);
    assert_eq!(held.get("a").map(String::as_str), Some("1"));
    assert_eq!(held.get("b").map(String::as_str), Some("1"));
    assert!(!held.contains_key("c"));
}

#[test]
fn delta_duplicates_missing_bodies_and_wrong_types_are_rejected() {
    let mut s = session();
    let mut h = Recorder::default();
    let mut resp = delta_resp("n1", &[("a", "1", "a"), ("a", "2", "a")], &[]);
    resp.resources.push(Resource {
        name: "x".into(),
        ..Default::default()
    });
    resp.resources.push(Resource {
        name: "y".into(),
        resource: Some(Any {
            type_url: "type.googleapis.com/other".into(),
            value: vec![],
        }),
        ..Default::default()
    });
    let (ack, _) = s.on_delta_response(resp, &mut h);
    let m = ack.error_detail.unwrap().message;
    assert!(m.contains("a: duplicate name"), "{m}");
    assert!(m.contains("x: no resource body"), "{m}");
    assert!(m.contains("y: type type.googleapis.com/other"), "{m}");
    // Neither copy of a duplicated name is applied.
    assert!(s.held(T).is_empty());
    assert!(h.applied.is_empty());
}

#[test]
fn delta_removals_are_applied_and_forgotten() {
    let mut s = session();
    let mut h = Recorder::default();
    s.on_delta_response(
        delta_resp("n1", &[("a", "1", "a"), ("b", "1", "b")], &[]),
        &mut h,
    );
    let (_, out) = s.on_delta_response(delta_resp("n2", &[], &["a", "zzz"]), &mut h);
    assert_eq!(out.removed, 2);
    assert_eq!(
        h.applied.last().unwrap().removed,
        vec!["a".to_string(), "zzz".to_string()]
    );
    assert_eq!(s.held(T).keys().collect::<Vec<_>>(), vec!["b"]);
}

#[test]
fn delta_resubscribe_sends_the_difference_and_drops_unsubscribed() {
    let mut s = Session::new(vec![(
        T.into(),
        Names::Named(["a".to_string(), "b".to_string()].into()),
    )]);
    let mut h = Recorder::default();
    assert_eq!(
        s.initial_delta()[0].resource_names_subscribe,
        vec!["a", "b"]
    );
    s.on_delta_response(
        delta_resp("n1", &[("a", "1", "a"), ("b", "1", "b")], &[]),
        &mut h,
    );
    let (req, out) = s
        .resubscribe_delta(
            T,
            Names::Named(["b".to_string(), "c".to_string()].into()),
            &mut h,
        )
        .unwrap();
    assert_eq!(req.resource_names_subscribe, vec!["c"]);
    assert_eq!(req.resource_names_unsubscribe, vec!["a"]);
    assert!(req.response_nonce.is_empty());
    assert_eq!(out.removed, 1);
    assert!(
        s.resubscribe_delta(
            T,
            Names::Named(["b".to_string(), "c".to_string()].into()),
            &mut h
        )
        .is_none()
    );
    let (req, _) = s.resubscribe_delta(T, Names::Wildcard, &mut h).unwrap();
    assert_eq!(req.resource_names_subscribe, vec!["*"]);
    assert_eq!(req.resource_names_unsubscribe, vec!["b", "c"]);
}

fn sotw_resp(version: &str, nonce: &str, bodies: &[&str]) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: version.into(),
        nonce: nonce.into(),
        type_url: T.into(),
        resources: bodies.iter().map(|b| any(b)).collect(),
        ..Default::default()
    }
}

#[test]
fn sotw_wildcard_full_state_acks_versions_and_skips_unchanged() {
    let mut s = session();
    let mut h = Recorder::default();
    let init = s.initial_sotw();
    assert!(init[0].resource_names.is_empty() && init[0].version_info.is_empty());
    let (ack, out) = s.on_sotw_response(sotw_resp("v1", "n1", &["a:1", "b:1"]), &mut h);
    assert_eq!(
        (ack.version_info.as_str(), ack.response_nonce.as_str()),
        ("v1", "n1")
    );
    assert_eq!(out.updated, 2);
    // b unchanged, a changed, c new, nothing removed.
    let (_, out) = s.on_sotw_response(sotw_resp("v2", "n2", &["a:2", "b:1", "c:1"]), &mut h);
    assert_eq!(out.updated, 2);
    let names: Vec<_> = h
        .applied
        .last()
        .unwrap()
        .updated
        .iter()
        .map(|u| u.name.clone())
        .collect();
    assert_eq!(names, vec!["a", "c"]);
    // Absent from a wildcard response = deleted.
    let (ack, out) = s.on_sotw_response(sotw_resp("v3", "n3", &["c:1"]), &mut h);
    assert_eq!(out.removed, 2);
    assert_eq!(ack.version_info, "v3");
    s.reconnected();
    assert_eq!(s.initial_sotw()[0].version_info, "v3");
}

#[test]
fn sotw_nack_reports_the_last_good_version_and_keeps_rejected_resources() {
    let mut s = session();
    let mut h = Recorder::default();
    s.on_sotw_response(sotw_resp("v1", "n1", &["a:1"]), &mut h);
    // `bad` is named "bad" by the recorder and rejected; "a" is absent but the response was NACKed
    // only for "bad", so "a" is removed (it is simply not in the new state).
    let (ack, out) = s.on_sotw_response(sotw_resp("v2", "n2", &["bad", "b:1"]), &mut h);
    assert_eq!(ack.version_info, "v1");
    assert_eq!(ack.response_nonce, "n2");
    assert_eq!(ack.error_detail.unwrap().message, "bad: bad body");
    assert_eq!(out.updated, 1);
    assert!(s.held(T).contains_key("b"));
}

#[test]
fn sotw_names_come_from_envoy_messages_and_wrappers() {
    let mut s = Session::new(vec![(type_url::CLUSTER.into(), Names::Wildcard)]);
    let mut h = Recorder::default();
    let c = Cluster {
        name: "outbound|80||a".into(),
        ..Default::default()
    };
    let body = Any {
        type_url: type_url::CLUSTER.into(),
        value: c.encode_to_vec(),
    };
    let wrapped = Any {
        type_url: names::WRAPPED.into(),
        value: Resource {
            name: "outbound|81||b".into(),
            resource: Some(Any {
                type_url: type_url::CLUSTER.into(),
                value: Cluster {
                    name: "outbound|81||b".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            }),
            ..Default::default()
        }
        .encode_to_vec(),
    };
    let garbage = Any {
        type_url: type_url::CLUSTER.into(),
        value: vec![0xff, 0xff, 0xff],
    };
    let (ack, out) = s.on_sotw_response(
        DiscoveryResponse {
            version_info: "1".into(),
            nonce: "n".into(),
            type_url: type_url::CLUSTER.into(),
            resources: vec![body, wrapped, garbage],
            ..Default::default()
        },
        &mut h,
    );
    assert_eq!(out.updated, 2);
    assert!(
        ack.error_detail
            .unwrap()
            .message
            .starts_with("resources[2]: cannot decode")
    );
    assert_eq!(s.held(type_url::CLUSTER).len(), 2);
}

#[test]
fn sotw_named_endpoints_are_not_full_state_and_resubscribe_uses_the_nonce() {
    let mut s = Session::new(vec![(
        T.into(),
        Names::Named(["a".to_string(), "b".to_string()].into()),
    )]);
    let mut h = Recorder::default();
    s.on_sotw_response(sotw_resp("v1", "n1", &["a:1", "b:1"]), &mut h);
    let (_, out) = s.on_sotw_response(sotw_resp("v2", "n2", &["a:2"]), &mut h);
    assert_eq!(
        out.removed, 0,
        "a named non-LDS/CDS response may carry a subset"
    );
    let (req, out) = s
        .resubscribe_sotw(T, Names::Named(["a".to_string()].into()), &mut h)
        .unwrap();
    assert_eq!(req.resource_names, vec!["a"]);
    assert_eq!(req.response_nonce, "n2");
    assert_eq!(req.version_info, "v2");
    assert_eq!(out.removed, 1);
}
