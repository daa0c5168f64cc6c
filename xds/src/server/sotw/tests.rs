use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status;

use super::SotwSession;
use crate::server::decide::Reply;
use crate::server::session::testing::{label, snapshot, strings, with_eds_cluster};
use crate::server::session::{Session, Step};
use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};

fn req(type_url: &str, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: "n".into(),
            ..Default::default()
        }),
        type_url: type_url.into(),
        resource_names: strings(names),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn sent(step: &Step<DiscoveryResponse>) -> Vec<(String, Vec<String>)> {
    step.responses
        .iter()
        .map(|(r, _)| (r.type_url.clone(), r.resources.iter().map(label).collect()))
        .collect()
}

fn only(step: Step<DiscoveryResponse>) -> DiscoveryResponse {
    assert_eq!(step.responses.len(), 1, "{:?}", sent(&step));
    step.responses
        .into_iter()
        .map(|(r, _)| r)
        .next()
        .expect("one response")
}

fn reply(step: &Step<DiscoveryResponse>) -> Reply {
    step.answer.as_ref().expect("answer").reply.clone()
}

#[test]
fn envoy_like_flow() {
    let snap = snapshot(&[
        (CLUSTER, "a", "1"),
        (CLUSTER, "b", "1"),
        (ENDPOINT, "a", "1"),
        (ENDPOINT, "b", "1"),
    ]);
    let mut s = SotwSession::new(snap.clone());

    let cds = only(s.on_request(req(CLUSTER, &[], "", "")).expect("cds"));
    assert_eq!(cds.version_info, snap.type_version(CLUSTER));
    assert_eq!(
        cds.resources.iter().map(label).collect::<Vec<_>>(),
        ["a@1", "b@1"]
    );

    let ack = s
        .on_request(req(CLUSTER, &[], &cds.version_info, &cds.nonce))
        .expect("ack");
    assert_eq!(
        reply(&ack),
        Reply::Ack {
            version: cds.version_info.clone()
        }
    );
    assert!(ack.responses.is_empty(), "an ACK is not answered");

    let eds = only(
        s.on_request(req(ENDPOINT, &["a", "b"], "", ""))
            .expect("eds"),
    );
    assert_ne!(eds.nonce, cds.nonce);
    s.on_request(req(ENDPOINT, &["a", "b"], &eds.version_info, &eds.nonce))
        .expect("ack");

    assert!(
        s.on_snapshot(snap.clone()).responses.is_empty(),
        "identical snapshot: nothing"
    );

    let snap2 = snapshot(&[
        (CLUSTER, "a", "1"),
        (CLUSTER, "b", "1"),
        (ENDPOINT, "a", "1"),
        (ENDPOINT, "b", "2"),
    ]);
    let step = s.on_snapshot(snap2.clone());
    assert_eq!(
        sent(&step),
        [(ENDPOINT.to_owned(), vec!["b@2".to_owned()])],
        "only the changed endpoint"
    );
    let eds2 = only(step);
    assert_eq!(eds2.version_info, snap2.type_version(ENDPOINT));

    // NACK: error_detail present, version_info = the version kept.
    let nack = DiscoveryRequest {
        error_detail: Some(Status {
            code: 13,
            message: "bad endpoint".into(),
            details: vec![],
        }),
        ..req(ENDPOINT, &["a", "b"], &eds.version_info, &eds2.nonce)
    };
    let step = s.on_request(nack).expect("nack");
    match reply(&step) {
        Reply::Nack(n) => {
            assert_eq!(n.version, eds.version_info);
            assert_eq!(n.rejected_version, eds2.version_info);
            assert_eq!(n.message, "bad endpoint");
        }
        other => panic!("expected a NACK, got {other:?}"),
    }
    assert!(
        step.responses.is_empty(),
        "a NACK is not answered with the same config"
    );
}

#[test]
fn stale_nonce_is_no_ack_but_names_count() {
    let snap = snapshot(&[
        (ENDPOINT, "a", "1"),
        (ENDPOINT, "b", "1"),
        (ENDPOINT, "c", "1"),
    ]);
    let mut s = SotwSession::new(snap);
    let first = only(s.on_request(req(ENDPOINT, &["a"], "", "")).expect("eds"));
    let snap2 = snapshot(&[
        (ENDPOINT, "a", "2"),
        (ENDPOINT, "b", "1"),
        (ENDPOINT, "c", "1"),
    ]);
    let second = only(s.on_snapshot(snap2));
    // The client answers the first response (now stale) and adds "c" at the same time.
    let step = s
        .on_request(req(
            ENDPOINT,
            &["a", "c"],
            &first.version_info,
            &first.nonce,
        ))
        .expect("stale");
    assert_eq!(reply(&step), Reply::Stale);
    assert_eq!(sent(&step), [(ENDPOINT.to_owned(), vec!["c@1".to_owned()])]);
    // A stale NACK is ignored too.
    let stale_nack = DiscoveryRequest {
        error_detail: Some(Status::default()),
        ..req(ENDPOINT, &["a", "c"], "", &second.nonce)
    };
    let step = s.on_request(stale_nack).expect("stale nack");
    assert_eq!(
        reply(&step),
        Reply::Stale,
        "second was superseded by the response carrying c"
    );
}

#[test]
fn push_order_and_full_sets() {
    let v1 = snapshot(&[
        (CLUSTER, "c", "1"),
        (ENDPOINT, "c", "1"),
        (LISTENER, "l", "1"),
        (ROUTE, "r", "1"),
    ]);
    let mut s = SotwSession::new(v1);
    // Subscribe in the "wrong" order: RDS, LDS, EDS, CDS.
    s.on_request(req(ROUTE, &["r"], "", "")).expect("rds");
    s.on_request(req(LISTENER, &[], "", "")).expect("lds");
    s.on_request(req(ENDPOINT, &["c", "d"], "", ""))
        .expect("eds");
    s.on_request(req(CLUSTER, &[], "", "")).expect("cds");
    let v2 = snapshot(&[
        (CLUSTER, "c", "1"),
        (CLUSTER, "d", "1"),
        (ENDPOINT, "c", "1"),
        (ENDPOINT, "d", "1"),
        (LISTENER, "l", "2"),
        (ROUTE, "r", "2"),
    ]);
    let step = s.on_snapshot(v2);
    let expect = [
        (CLUSTER, vec!["c@1", "d@1"]),
        (ENDPOINT, vec!["d@1"]),
        (LISTENER, vec!["l@2"]),
        (ROUTE, vec!["r@2"]),
    ];
    let expect: Vec<(String, Vec<String>)> = expect
        .iter()
        .map(|(t, v)| (t.to_string(), strings(v)))
        .collect();
    assert_eq!(sent(&step), expect);

    // Cluster d removed: CDS full set without it; EDS sends nothing (deletion is via the cluster).
    let v3 = snapshot(&[
        (CLUSTER, "c", "1"),
        (ENDPOINT, "c", "1"),
        (LISTENER, "l", "2"),
        (ROUTE, "r", "2"),
    ]);
    let step = s.on_snapshot(v3);
    assert_eq!(sent(&step), [(CLUSTER.to_owned(), strings(&["c@1"]))]);
}

#[test]
fn bad_requests() {
    let mut s = SotwSession::new(snapshot(&[]));
    assert!(s.on_request(req("", &[], "", "")).is_err(), "no type_url");
    for i in 0..crate::server::session::MAX_TYPES {
        s.on_request(req(&format!("t/{i}"), &[], "", ""))
            .expect("within the limit");
    }
    assert!(s.on_request(req("t/one-too-many", &[], "", "")).is_err());
    assert!(
        s.on_request(req("t/0", &[], "", "")).is_ok(),
        "known types still work"
    );
}

/// Envoy re-warms a changed cluster and needs its (unchanged) endpoints again.
#[test]
fn changed_cluster_resends_its_endpoints() {
    let base = snapshot(&[(ENDPOINT, "a", "1"), (ENDPOINT, "b", "1")]);
    let v1 = with_eds_cluster(&with_eds_cluster(&base, "a", 1), "b", 1);
    let mut s = SotwSession::new(v1.clone());
    let cds = only(s.on_request(req(CLUSTER, &[], "", "")).expect("cds"));
    let eds = only(
        s.on_request(req(ENDPOINT, &["a", "b"], "", ""))
            .expect("eds"),
    );
    s.on_request(req(CLUSTER, &[], &cds.version_info, &cds.nonce))
        .expect("ack");
    s.on_request(req(ENDPOINT, &["a", "b"], &eds.version_info, &eds.nonce))
        .expect("ack");

    let v2 = with_eds_cluster(&v1, "a", 2);
    let step = s.on_snapshot(v2.clone());
    let got: Vec<(String, usize)> = step
        .responses
        .iter()
        .map(|(r, _)| (r.type_url.clone(), r.resources.len()))
        .collect();
    assert_eq!(
        got,
        [(CLUSTER.to_owned(), 2), (ENDPOINT.to_owned(), 1)],
        "full CDS set, then a's endpoints"
    );
    assert_eq!(
        step.responses[1]
            .0
            .resources
            .iter()
            .map(label)
            .collect::<Vec<_>>(),
        ["a@1"]
    );
    assert!(s.on_snapshot(v2).responses.is_empty(), "and only once");
}

#[test]
fn cluster_request_that_sends_a_cluster_also_resends_its_endpoints() {
    let base = snapshot(&[(ENDPOINT, "a", "1"), (ENDPOINT, "b", "1")]);
    let v1 = with_eds_cluster(&with_eds_cluster(&base, "a", 1), "b", 1);
    let mut s = SotwSession::new(v1);
    let cds = only(s.on_request(req(CLUSTER, &["a"], "", "")).expect("cds"));
    let eds = only(
        s.on_request(req(ENDPOINT, &["a", "b"], "", ""))
            .expect("eds"),
    );
    assert_eq!(
        eds.resources.iter().map(label).collect::<Vec<_>>(),
        ["a@1", "b@1"]
    );
    let step = s
        .on_request(req(CLUSTER, &["a", "b"], &cds.version_info, &cds.nonce))
        .expect("cds +b");
    let got: Vec<(String, Vec<String>)> = sent(&step);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, CLUSTER);
    assert_eq!(
        got[1],
        (ENDPOINT.to_owned(), vec!["b@1".to_owned()]),
        "b's cluster is new to the client"
    );
}
