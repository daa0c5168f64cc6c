use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;

use super::{Decision, Known, KnownSet, decide};
use crate::Resource;
use crate::server::decide::Subscription;

const T: &str = "type.googleapis.com/istio.workload.Address";

fn snapshot(items: &[(&str, &str)]) -> BTreeMap<String, Arc<Resource>> {
    items
        .iter()
        .map(|(n, v)| {
            let r = Resource {
                name: n.to_string(),
                version: v.to_string(),
                body: Any {
                    type_url: T.to_owned(),
                    value: v.as_bytes().to_vec(),
                },
            };
            (n.to_string(), Arc::new(r))
        })
        .collect()
}

/// `"name@version"` for a held version, `"name!"` for a name reported absent.
fn known(items: &[&str]) -> KnownSet {
    KnownSet(
        items
            .iter()
            .map(|s| match s.split_once('@') {
                Some((n, v)) => (n.to_owned(), Known::Version(v.to_owned())),
                None => (s.trim_end_matches('!').to_owned(), Known::Absent),
            })
            .collect(),
    )
}

fn sub(subscribe: &[&str]) -> Subscription {
    let mut s = Subscription::default();
    s.apply_delta(
        true,
        &subscribe.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        &[],
    );
    s
}

fn updated(d: &Decision) -> Vec<String> {
    d.updated
        .iter()
        .map(|r| format!("{}@{}", r.name, r.version))
        .collect()
}

struct Case<'a> {
    name: &'a str,
    subscribe: &'a [&'a str],
    snapshot: Option<&'a [(&'a str, &'a str)]>,
    known: &'a [&'a str],
    updated: &'a [&'a str],
    removed: &'a [&'a str],
    known_after: &'a [&'a str],
}

#[test]
fn table() {
    let cases = [
        Case {
            name: "wildcard, fresh client: everything",
            subscribe: &[],
            snapshot: Some(&[("a", "1"), ("b", "1")]),
            known: &[],
            updated: &["a@1", "b@1"],
            removed: &[],
            known_after: &["a@1", "b@1"],
        },
        Case {
            name: "wildcard, unchanged: nothing",
            subscribe: &[],
            snapshot: Some(&[("a", "1"), ("b", "1")]),
            known: &["a@1", "b@1"],
            updated: &[],
            removed: &[],
            known_after: &["a@1", "b@1"],
        },
        Case {
            name: "wildcard, one changed, one removed, one added",
            subscribe: &["*"],
            snapshot: Some(&[("a", "2"), ("c", "1")]),
            known: &["a@1", "b@1"],
            updated: &["a@2", "c@1"],
            removed: &["b"],
            known_after: &["a@2", "c@1"],
        },
        Case {
            name: "reconnect with initial versions: only changes, claimed-but-gone removed",
            subscribe: &[],
            snapshot: Some(&[("a", "1"), ("b", "2"), ("new", "1")]),
            known: &["a@1", "b@1", "gone@1"],
            updated: &["b@2", "new@1"],
            removed: &["gone"],
            known_after: &["a@1", "b@2", "new@1"],
        },
        Case {
            name: "named: only the names, unknown name reported removed",
            subscribe: &["a", "missing"],
            snapshot: Some(&[("a", "1"), ("b", "1")]),
            known: &[],
            updated: &["a@1"],
            removed: &["missing"],
            known_after: &["a@1", "missing!"],
        },
        Case {
            name: "named: absent name already reported is not reported again",
            subscribe: &["a", "missing"],
            snapshot: Some(&[("a", "1")]),
            known: &["a@1", "missing!"],
            updated: &[],
            removed: &[],
            known_after: &["a@1", "missing!"],
        },
        Case {
            name: "named: an absent name appears",
            subscribe: &["a", "missing"],
            snapshot: Some(&[("a", "1"), ("missing", "1")]),
            known: &["a@1", "missing!"],
            updated: &["missing@1"],
            removed: &[],
            known_after: &["a@1", "missing@1"],
        },
        Case {
            name: "named: a held resource disappears and stays remembered as absent",
            subscribe: &["a"],
            snapshot: Some(&[]),
            known: &["a@1"],
            updated: &[],
            removed: &["a"],
            known_after: &["a!"],
        },
        Case {
            name: "named, type not declared: names reported removed",
            subscribe: &["a"],
            snapshot: None,
            known: &[],
            updated: &[],
            removed: &["a"],
            known_after: &["a!"],
        },
        Case {
            name: "wildcard, type not declared: nothing",
            subscribe: &[],
            snapshot: None,
            known: &[],
            updated: &[],
            removed: &[],
            known_after: &[],
        },
        Case {
            name: "wildcard plus name: name counted once",
            subscribe: &["*", "a", "zz"],
            snapshot: Some(&[("a", "1")]),
            known: &[],
            updated: &["a@1"],
            removed: &["zz"],
            known_after: &["a@1", "zz!"],
        },
    ];
    for c in cases {
        let s = sub(c.subscribe);
        let snap = c.snapshot.map(snapshot);
        let mut k = known(c.known);
        let d = decide(&s, snap.as_ref(), &k);
        assert_eq!(updated(&d), c.updated, "{}: updated", c.name);
        assert_eq!(d.removed, c.removed, "{}: removed", c.name);
        k.commit(&s, &d);
        assert_eq!(k, known(c.known_after), "{}: known after", c.name);
    }
}

#[test]
fn initial_versions_and_forget() {
    let initial = HashMap::from([("a".to_owned(), "1".to_owned())]);
    let mut k = KnownSet::from_initial(&initial);
    assert_eq!(k.held(), 1);
    let s = sub(&["a"]);
    let snap = snapshot(&[("a", "1")]);
    assert!(decide(&s, Some(&snap), &k).is_empty());
    k.forget("a");
    assert_eq!(
        updated(&decide(&s, Some(&snap), &k)),
        ["a@1"],
        "a re-subscribed name is sent again"
    );
}
