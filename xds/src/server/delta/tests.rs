use std::collections::HashMap;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status;

use super::DeltaSession;
use crate::server::decide::Reply;
use crate::server::session::testing::{snapshot, strings, with_eds_cluster};
use crate::server::session::{Session, Step};
use crate::type_url::{ADDRESS, CLUSTER, ENDPOINT, LISTENER, ROUTE};

fn req(
    type_url: &str,
    subscribe: &[&str],
    unsubscribe: &[&str],
    nonce: &str,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.into(),
        resource_names_subscribe: strings(subscribe),
        resource_names_unsubscribe: strings(unsubscribe),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

/// Per response: (type, ["name@version"…], [removed…]).
fn sent(step: &Step<DeltaDiscoveryResponse>) -> Vec<(String, Vec<String>, Vec<String>)> {
    step.responses
        .iter()
        .map(|(r, _)| {
            let updated = r
                .resources
                .iter()
                .map(|x| format!("{}@{}", x.name, x.version))
                .collect();
            (r.type_url.clone(), updated, r.removed_resources.clone())
        })
        .collect()
}

fn one(t: &str, updated: &[&str], removed: &[&str]) -> (String, Vec<String>, Vec<String>) {
    (t.to_owned(), strings(updated), strings(removed))
}

fn nonce(step: &Step<DeltaDiscoveryResponse>) -> String {
    step.responses
        .last()
        .map(|(r, _)| r.nonce.clone())
        .expect("a response")
}

#[test]
fn wildcard_updates_and_removals() {
    let mut s = DeltaSession::new(snapshot(&[(ADDRESS, "a", "1"), (ADDRESS, "b", "1")]));
    let step = s.on_request(req(ADDRESS, &[], &[], "")).expect("first");
    assert_eq!(sent(&step), [one(ADDRESS, &["a@1", "b@1"], &[])]);
    let ack = s
        .on_request(req(ADDRESS, &[], &[], &nonce(&step)))
        .expect("ack");
    assert!(matches!(
        ack.answer.as_ref().map(|a| &a.reply),
        Some(Reply::Ack { .. })
    ));
    assert!(ack.responses.is_empty());

    let step = s.on_snapshot(snapshot(&[(ADDRESS, "a", "2"), (ADDRESS, "c", "1")]));
    assert_eq!(
        sent(&step),
        [
            one(ADDRESS, &["a@2", "c@1"], &[]),
            one(ADDRESS, &[], &["b"])
        ]
    );
    assert!(
        s.on_snapshot(snapshot(&[(ADDRESS, "a", "2"), (ADDRESS, "c", "1")]))
            .responses
            .is_empty()
    );
}

#[test]
fn reconnect_with_initial_versions() {
    let snap = snapshot(&[
        (ADDRESS, "a", "1"),
        (ADDRESS, "b", "2"),
        (ADDRESS, "new", "1"),
    ]);
    let mut s = DeltaSession::new(snap);
    let first = DeltaDiscoveryRequest {
        initial_resource_versions: HashMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "1".to_owned()),
            ("gone".to_owned(), "1".to_owned()),
        ]),
        ..req(ADDRESS, &[], &[], "")
    };
    let step = s.on_request(first).expect("first");
    assert_eq!(sent(&step), [one(ADDRESS, &["b@2", "new@1"], &["gone"])]);
}

#[test]
fn reconnect_with_nothing_changed_still_answers_once() {
    let mut s = DeltaSession::new(snapshot(&[(ADDRESS, "a", "1")]));
    let first = DeltaDiscoveryRequest {
        initial_resource_versions: HashMap::from([("a".to_owned(), "1".to_owned())]),
        ..req(ADDRESS, &[], &[], "")
    };
    let step = s.on_request(first).expect("first");
    assert_eq!(
        sent(&step),
        [one(ADDRESS, &[], &[])],
        "an empty first answer so the client knows it is current"
    );
}

#[test]
fn named_subscriptions() {
    let mut s = DeltaSession::new(snapshot(&[(ENDPOINT, "a", "1"), (ENDPOINT, "b", "1")]));
    let step = s
        .on_request(req(ENDPOINT, &["a", "missing"], &[], ""))
        .expect("first");
    assert_eq!(
        sent(&step),
        [one(ENDPOINT, &["a@1"], &["missing"])],
        "unknown name → removed_resources"
    );
    let n1 = nonce(&step);

    // Stale nonce (a newer response is out), subscription change honoured anyway.
    let step = s.on_snapshot(snapshot(&[(ENDPOINT, "a", "2"), (ENDPOINT, "b", "1")]));
    assert_eq!(sent(&step), [one(ENDPOINT, &["a@2"], &[])]);
    let step = s
        .on_request(req(ENDPOINT, &["b"], &[], "not-a-nonce-we-sent"))
        .expect("stale");
    assert_eq!(
        step.answer.as_ref().map(|a| a.reply.clone()),
        Some(Reply::Stale)
    );
    assert_eq!(sent(&step), [one(ENDPOINT, &["b@1"], &[])]);

    // An older but still in-flight nonce is an ACK of that response.
    let step = s
        .on_request(req(ENDPOINT, &[], &[], &n1))
        .expect("late ack");
    assert!(matches!(
        step.answer.map(|a| a.reply),
        Some(Reply::Ack { .. })
    ));

    // Re-subscribing a held name sends it again; unsubscribing sends nothing.
    let step = s
        .on_request(req(ENDPOINT, &["a"], &[], ""))
        .expect("resubscribe");
    assert_eq!(sent(&step), [one(ENDPOINT, &["a@2"], &[])]);
    let step = s
        .on_request(req(ENDPOINT, &[], &["a", "b"], ""))
        .expect("unsubscribe");
    assert!(step.responses.is_empty());

    // The missing name appears.
    let step = s.on_snapshot(snapshot(&[
        (ENDPOINT, "a", "2"),
        (ENDPOINT, "missing", "1"),
    ]));
    assert_eq!(sent(&step), [one(ENDPOINT, &["missing@1"], &[])]);
}

#[test]
fn unsubscribing_a_name_covered_by_the_wildcard_resends_it() {
    let mut s = DeltaSession::new(snapshot(&[(CLUSTER, "a", "1")]));
    s.on_request(req(CLUSTER, &["*", "a", "x"], &[], ""))
        .expect("first");
    let step = s
        .on_request(req(CLUSTER, &[], &["a", "x"], ""))
        .expect("unsubscribe");
    assert_eq!(
        sent(&step),
        [one(CLUSTER, &["a@1"], &[])],
        "a is still in the wildcard"
    );
    let step = s
        .on_request(req(CLUSTER, &[], &["*"], ""))
        .expect("unsubscribe *");
    assert!(step.responses.is_empty());
}

#[test]
fn make_before_break_order() {
    let v1 = snapshot(&[
        (CLUSTER, "old", "1"),
        (ENDPOINT, "old", "1"),
        (LISTENER, "l", "1"),
        (LISTENER, "gone", "1"),
        (ROUTE, "r", "1"),
        (ROUTE, "gone", "1"),
    ]);
    let mut s = DeltaSession::new(v1);
    for t in [ROUTE, LISTENER, ENDPOINT, CLUSTER] {
        s.on_request(req(t, &["*"], &[], "")).expect("subscribe");
    }
    let v2 = snapshot(&[
        (CLUSTER, "new", "1"),
        (ENDPOINT, "new", "1"),
        (LISTENER, "l", "2"),
        (ROUTE, "r", "2"),
    ]);
    let step = s.on_snapshot(v2);
    assert_eq!(
        sent(&step),
        [
            one(CLUSTER, &["new@1"], &[]),
            one(ENDPOINT, &["new@1"], &[]),
            one(LISTENER, &["l@2"], &[]),
            one(ROUTE, &["r@2"], &[]),
            one(ROUTE, &[], &["gone"]),
            one(LISTENER, &[], &["gone"]),
            one(ENDPOINT, &[], &["old"]),
            one(CLUSTER, &[], &["old"]),
        ]
    );
}

#[test]
fn nack_is_recorded_and_not_resent() {
    let mut s = DeltaSession::new(snapshot(&[(CLUSTER, "a", "1")]));
    let first = s.on_request(req(CLUSTER, &[], &[], "")).expect("first");
    s.on_request(req(CLUSTER, &[], &[], &nonce(&first)))
        .expect("ack");
    let step = s.on_snapshot(snapshot(&[(CLUSTER, "a", "bad")]));
    let nack = DeltaDiscoveryRequest {
        error_detail: Some(Status {
            code: 13,
            message: "invalid".into(),
            details: vec![],
        }),
        ..req(CLUSTER, &[], &[], &nonce(&step))
    };
    let step = s.on_request(nack).expect("nack");
    match step.answer.map(|a| a.reply) {
        Some(Reply::Nack(n)) => assert_eq!(n.message, "invalid"),
        other => panic!("expected a NACK, got {other:?}"),
    }
    assert!(step.responses.is_empty());
}

/// Envoy re-warms a changed cluster and needs its (unchanged) endpoints again, also after a reconnect
/// where the client claims the endpoints' current version.
#[test]
fn changed_cluster_resends_its_endpoints() {
    let base = snapshot(&[(ENDPOINT, "a", "1"), (ENDPOINT, "b", "1")]);
    let v1 = with_eds_cluster(&with_eds_cluster(&base, "a", 1), "b", 1);
    let mut s = DeltaSession::new(v1.clone());
    s.on_request(req(CLUSTER, &[], &[], "")).expect("cds");
    s.on_request(req(ENDPOINT, &["a", "b"], &[], ""))
        .expect("eds");

    let v2 = with_eds_cluster(&v1, "a", 2);
    let step = s.on_snapshot(v2.clone());
    assert_eq!(
        sent(&step),
        [one(CLUSTER, &["a@2"], &[]), one(ENDPOINT, &["a@1"], &[])]
    );
    assert!(
        s.on_snapshot(v2.clone()).responses.is_empty(),
        "and only once"
    );

    // Reconnect: the client had a@1 (now a@2) and claims the endpoints it holds.
    let mut s = DeltaSession::new(v2);
    let cds = DeltaDiscoveryRequest {
        initial_resource_versions: HashMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "1".to_owned()),
        ]),
        ..req(CLUSTER, &[], &[], "")
    };
    assert_eq!(
        sent(&s.on_request(cds).expect("cds")),
        [one(CLUSTER, &["a@2"], &[])]
    );
    let eds = DeltaDiscoveryRequest {
        initial_resource_versions: HashMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "1".to_owned()),
        ]),
        ..req(ENDPOINT, &["a", "b"], &[], "")
    };
    assert_eq!(
        sent(&s.on_request(eds).expect("eds")),
        [one(ENDPOINT, &["a@1"], &[])],
        "b is current, a re-warms"
    );
}
