use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;

use super::{Decision, SentVersions, decide};
use crate::Resource;
use crate::server::decide::Subscription;
use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};

fn res(type_url: &str, name: &str, version: &str) -> Arc<Resource> {
    Arc::new(Resource {
        name: name.to_owned(),
        version: version.to_owned(),
        body: Any {
            type_url: type_url.to_owned(),
            value: version.as_bytes().to_vec(),
        },
    })
}

fn snapshot(type_url: &str, items: &[(&str, &str)]) -> BTreeMap<String, Arc<Resource>> {
    items
        .iter()
        .map(|(n, v)| (n.to_string(), res(type_url, n, v)))
        .collect()
}

fn sent(items: &[(&str, &str)]) -> SentVersions {
    items
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn sub(names: &[&str]) -> Subscription {
    let mut s = Subscription::default();
    s.apply_sotw(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
    s
}

fn names(d: &Decision) -> Option<Vec<String>> {
    d.send.as_ref().map(|v| {
        v.iter()
            .map(|r| format!("{}@{}", r.name, r.version))
            .collect()
    })
}

struct Case<'a> {
    name: &'a str,
    type_url: &'a str,
    sub: &'a [&'a str],
    /// `None`: the snapshot does not declare the type.
    snapshot: Option<&'a [(&'a str, &'a str)]>,
    sent: &'a [(&'a str, &'a str)],
    answered: bool,
    send: Option<&'a [&'a str]>,
    sent_after: &'a [(&'a str, &'a str)],
}

#[test]
fn table() {
    let cases = [
        Case {
            name: "wildcard CDS, first answer: everything",
            type_url: CLUSTER,
            sub: &[],
            snapshot: Some(&[("a", "1"), ("b", "1")]),
            sent: &[],
            answered: false,
            send: Some(&["a@1", "b@1"]),
            sent_after: &[("a", "1"), ("b", "1")],
        },
        Case {
            name: "wildcard CDS, declared but empty: an empty first answer",
            type_url: CLUSTER,
            sub: &[],
            snapshot: Some(&[]),
            sent: &[],
            answered: false,
            send: Some(&[]),
            sent_after: &[],
        },
        Case {
            name: "wildcard CDS, type not declared: wait",
            type_url: CLUSTER,
            sub: &[],
            snapshot: None,
            sent: &[],
            answered: false,
            send: None,
            sent_after: &[],
        },
        Case {
            name: "wildcard CDS, unchanged: nothing",
            type_url: CLUSTER,
            sub: &[],
            snapshot: Some(&[("a", "1"), ("b", "1")]),
            sent: &[("a", "1"), ("b", "1")],
            answered: true,
            send: None,
            sent_after: &[("a", "1"), ("b", "1")],
        },
        Case {
            name: "wildcard CDS, one changed: the full set",
            type_url: CLUSTER,
            sub: &[],
            snapshot: Some(&[("a", "2"), ("b", "1")]),
            sent: &[("a", "1"), ("b", "1")],
            answered: true,
            send: Some(&["a@2", "b@1"]),
            sent_after: &[("a", "2"), ("b", "1")],
        },
        Case {
            name: "wildcard LDS, one removed: the remaining set",
            type_url: LISTENER,
            sub: &[],
            snapshot: Some(&[("a", "1")]),
            sent: &[("a", "1"), ("b", "1")],
            answered: true,
            send: Some(&["a@1"]),
            sent_after: &[("a", "1")],
        },
        Case {
            name: "wildcard LDS, all removed: an empty response",
            type_url: LISTENER,
            sub: &[],
            snapshot: Some(&[]),
            sent: &[("a", "1")],
            answered: true,
            send: Some(&[]),
            sent_after: &[],
        },
        Case {
            name: "named CDS (gRPC): the full named set",
            type_url: CLUSTER,
            sub: &["a", "c"],
            snapshot: Some(&[("a", "2"), ("b", "1"), ("c", "1")]),
            sent: &[("a", "1"), ("c", "1")],
            answered: true,
            send: Some(&["a@2", "c@1"]),
            sent_after: &[("a", "2"), ("c", "1")],
        },
        Case {
            name: "named LDS, a name that does not exist: nothing new",
            type_url: LISTENER,
            sub: &["a", "missing"],
            snapshot: Some(&[("a", "1")]),
            sent: &[("a", "1")],
            answered: true,
            send: None,
            sent_after: &[("a", "1")],
        },
        Case {
            name: "EDS first request: the named subset",
            type_url: ENDPOINT,
            sub: &["a", "b"],
            snapshot: Some(&[("a", "1"), ("b", "1"), ("c", "1")]),
            sent: &[],
            answered: false,
            send: Some(&["a@1", "b@1"]),
            sent_after: &[("a", "1"), ("b", "1")],
        },
        Case {
            name: "EDS one changed: only that one",
            type_url: ENDPOINT,
            sub: &["a", "b"],
            snapshot: Some(&[("a", "1"), ("b", "2")]),
            sent: &[("a", "1"), ("b", "1")],
            answered: true,
            send: Some(&["b@2"]),
            sent_after: &[("a", "1"), ("b", "2")],
        },
        Case {
            name: "EDS a name added: only the new one",
            type_url: ENDPOINT,
            sub: &["a", "b", "c"],
            snapshot: Some(&[("a", "1"), ("b", "1"), ("c", "1")]),
            sent: &[("a", "1"), ("b", "1")],
            answered: true,
            send: Some(&["c@1"]),
            sent_after: &[("a", "1"), ("b", "1"), ("c", "1")],
        },
        Case {
            name: "EDS a name dropped: nothing, and forgotten (so re-subscribing sends it again)",
            type_url: ENDPOINT,
            sub: &["a"],
            snapshot: Some(&[("a", "1"), ("b", "1")]),
            sent: &[("a", "1"), ("b", "1")],
            answered: true,
            send: None,
            sent_after: &[("a", "1")],
        },
        Case {
            name: "RDS named, none exists yet: no response (the client's timer decides)",
            type_url: ROUTE,
            sub: &["r"],
            snapshot: Some(&[]),
            sent: &[],
            answered: false,
            send: None,
            sent_after: &[],
        },
        Case {
            name: "RDS named resource removed from the snapshot: nothing (deletion is via the parent)",
            type_url: ROUTE,
            sub: &["r"],
            snapshot: Some(&[]),
            sent: &[("r", "1")],
            answered: true,
            send: None,
            sent_after: &[],
        },
        Case {
            name: "RDS wildcard (\"*\"): full set like LDS",
            type_url: ROUTE,
            sub: &["*"],
            snapshot: Some(&[("r", "1"), ("s", "2")]),
            sent: &[("r", "1")],
            answered: true,
            send: Some(&["r@1", "s@2"]),
            sent_after: &[("r", "1"), ("s", "2")],
        },
        Case {
            name: "named, none of the names exists: nothing",
            type_url: ENDPOINT,
            sub: &["x"],
            snapshot: Some(&[("a", "1")]),
            sent: &[],
            answered: true,
            send: None,
            sent_after: &[],
        },
    ];
    for c in cases {
        let snap = c.snapshot.map(|s| snapshot(c.type_url, s));
        let d = decide(
            c.type_url,
            &sub(c.sub),
            snap.as_ref(),
            &sent(c.sent),
            c.answered,
        );
        let expect = c.send.map(|v| v.iter().map(|s| s.to_string()).collect());
        assert_eq!(names(&d), expect, "{}: send", c.name);
        assert_eq!(d.sent, sent(c.sent_after), "{}: sent after", c.name);
    }
}

#[test]
fn empty_after_explicit_names_means_nothing() {
    let mut s = Subscription::default();
    s.apply_sotw(&["a".to_owned()]);
    s.apply_sotw(&[]);
    let snap = snapshot(CLUSTER, &[("a", "1")]);
    let d = decide(CLUSTER, &s, Some(&snap), &sent(&[("a", "1")]), true);
    assert_eq!(
        names(&d),
        Some(vec![]),
        "the client unsubscribed from everything: an empty full set"
    );
}
