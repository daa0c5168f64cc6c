//! Table-driven tests of spec §5: one row per semantic rule, plus policies built the way istiod
//! translates an AuthorizationPolicy (§5.3).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::*;
use crate::model::policy::{Clause, Rule};
use crate::telemetry::access_log::tests::with_local_subscriber;

const FRONTEND: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
const ADMIN: &str = "spiffe://cluster.local/ns/ops/sa/admin";
const SRC: &str = "10.0.0.1";
const DST: &str = "10.1.0.7";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn conn(identity: Option<&str>, src: &str, port: u16) -> ConnectionInfo {
    ConnectionInfo {
        src_ip: ip(src),
        src_identity: identity.map(|i| i.parse().unwrap()),
        dst_ip: ip(DST),
        dst_port: port,
    }
}

/// An mTLS connection from `identity` to port 8080.
fn mtls(identity: &str) -> ConnectionInfo {
    conn(Some(identity), SRC, 8080)
}

/// A plaintext (15006) connection to port 8080.
fn plain() -> ConnectionInfo {
    conn(None, SRC, 8080)
}

fn policy(name: &str, action: PolicyAction, rules: Vec<Rule>) -> Authorization {
    Authorization {
        name: name.into(),
        namespace: "shop".into(),
        scope: PolicyScope::Namespace,
        action,
        dry_run: false,
        rules,
    }
}

fn allow(rules: Vec<Rule>) -> Authorization {
    policy("allow", PolicyAction::Allow, rules)
}

fn deny(rules: Vec<Rule>) -> Authorization {
    policy("deny", PolicyAction::Deny, rules)
}

fn dry(mut p: Authorization) -> Authorization {
    p.dry_run = true;
    p.name = format!("{}-dry", p.name);
    p
}

/// One rule, one clause, one match.
fn only(m: Match) -> Vec<Rule> {
    vec![vec![vec![m]]]
}

fn exact(s: &str) -> StringMatch {
    StringMatch::Exact(s.into())
}

fn principals(p: Vec<StringMatch>) -> Match {
    Match {
        principals: p,
        ..Match::default()
    }
}

fn ports(p: &[u16]) -> Match {
    Match {
        destination_ports: p.to_vec(),
        ..Match::default()
    }
}

const ALLOW: Verdict = Verdict::Allow;

fn denied_by(name: &str) -> Verdict {
    Verdict::Deny {
        policy: Some(format!("shop/{name}")),
    }
}

fn no_allow_matched() -> Verdict {
    Verdict::Deny { policy: None }
}

struct Case {
    name: &'static str,
    policies: Vec<Authorization>,
    conn: ConnectionInfo,
    want: Verdict,
}

fn run(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in &cases {
        let got = evaluate(&c.policies, &c.conn);
        if got != c.want {
            failures.push(format!("{}: got {:?}, want {:?}", c.name, got, c.want));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing rows:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn combination_rules() {
    let frontend_only = principals(vec![exact("cluster.local/ns/shop/sa/frontend")]);
    run(vec![
        Case {
            name: "no policies: allow",
            policies: vec![],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "ALLOW without rules denies everything",
            policies: vec![allow(vec![])],
            conn: mtls(FRONTEND),
            want: no_allow_matched(),
        },
        Case {
            name: "DENY without rules is a no-op",
            policies: vec![deny(vec![])],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "rule with zero clauses matches (istiod's allow-all `rules: [{}]`)",
            policies: vec![allow(vec![vec![]])],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "DENY rule with zero clauses denies everything",
            policies: vec![deny(vec![vec![]])],
            conn: mtls(FRONTEND),
            want: denied_by("deny"),
        },
        Case {
            name: "clause with zero matches matches",
            policies: vec![allow(vec![vec![Clause::new()]])],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "all-empty Match never matches (ALLOW)",
            policies: vec![allow(only(Match::default()))],
            conn: mtls(FRONTEND),
            want: no_allow_matched(),
        },
        Case {
            name: "all-empty Match never matches (DENY)",
            policies: vec![deny(only(Match::default()))],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "all-empty Match is skipped, a sibling Match still matches (clause = OR)",
            policies: vec![allow(vec![vec![vec![
                Match::default(),
                frontend_only.clone(),
            ]]])],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "clauses AND: principal matches, port clause does not",
            policies: vec![allow(vec![vec![
                vec![frontend_only.clone()],
                vec![ports(&[9090])],
            ]])],
            conn: mtls(FRONTEND),
            want: no_allow_matched(),
        },
        Case {
            name: "clauses AND: both match",
            policies: vec![allow(vec![vec![
                vec![frontend_only.clone()],
                vec![ports(&[8080])],
            ]])],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "rules OR: second rule matches",
            policies: vec![allow(vec![
                vec![vec![ports(&[9090])]],
                vec![vec![ports(&[8080])]],
            ])],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "match categories AND: principal matches, port does not",
            policies: vec![allow(only(Match {
                destination_ports: vec![9090],
                ..frontend_only.clone()
            }))],
            conn: mtls(FRONTEND),
            want: no_allow_matched(),
        },
        Case {
            name: "positive list is OR over entries",
            policies: vec![allow(only(ports(&[9090, 8080])))],
            conn: plain(),
            want: ALLOW,
        },
    ]);
}

#[test]
fn identity_categories() {
    let ns = |v: Vec<StringMatch>, not: Vec<StringMatch>| Match {
        namespaces: v,
        not_namespaces: not,
        ..Match::default()
    };
    let sa = |ns: &str, sa: &str| ServiceAccountMatch {
        namespace: ns.into(),
        service_account: sa.into(),
    };
    run(vec![
        Case {
            name: "principal exact, without spiffe://",
            policies: vec![allow(only(principals(vec![exact(
                "cluster.local/ns/shop/sa/frontend",
            )])))],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "principal with spiffe:// prefix does not match",
            policies: vec![allow(only(principals(vec![exact(FRONTEND)])))],
            conn: mtls(FRONTEND),
            want: no_allow_matched(),
        },
        Case {
            name: "principal mismatch",
            policies: vec![allow(only(principals(vec![exact(
                "cluster.local/ns/shop/sa/frontend",
            )])))],
            conn: mtls(ADMIN),
            want: no_allow_matched(),
        },
        Case {
            name: "principal presence with identity",
            policies: vec![allow(only(principals(vec![StringMatch::Presence()])))],
            conn: mtls(ADMIN),
            want: ALLOW,
        },
        Case {
            name: "principal presence without identity",
            policies: vec![allow(only(principals(vec![StringMatch::Presence()])))],
            conn: plain(),
            want: no_allow_matched(),
        },
        Case {
            name: "positive principal never matches without identity, even Prefix(\"\")",
            policies: vec![allow(only(principals(vec![StringMatch::Prefix(
                String::new(),
            )])))],
            conn: plain(),
            want: no_allow_matched(),
        },
        Case {
            name: "negated principal passes without identity",
            policies: vec![allow(only(Match {
                not_principals: vec![exact("cluster.local/ns/ops/sa/admin")],
                ..Match::default()
            }))],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "negated principal fails when it matches",
            policies: vec![allow(only(Match {
                not_principals: vec![exact("cluster.local/ns/ops/sa/admin")],
                ..Match::default()
            }))],
            conn: mtls(ADMIN),
            want: no_allow_matched(),
        },
        Case {
            name: "principal prefix",
            policies: vec![allow(only(principals(vec![StringMatch::Prefix(
                "cluster.local/ns/shop/".into(),
            )])))],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "principal suffix",
            policies: vec![allow(only(principals(vec![StringMatch::Suffix(
                "/sa/admin".into(),
            )])))],
            conn: mtls(ADMIN),
            want: ALLOW,
        },
        Case {
            name: "principal suffix mismatch",
            policies: vec![allow(only(principals(vec![StringMatch::Suffix(
                "/sa/admin".into(),
            )])))],
            conn: mtls(FRONTEND),
            want: no_allow_matched(),
        },
        Case {
            name: "namespace = identity namespace",
            policies: vec![allow(only(ns(vec![exact("shop")], vec![])))],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "namespace mismatch",
            policies: vec![allow(only(ns(vec![exact("shop")], vec![])))],
            conn: mtls(ADMIN),
            want: no_allow_matched(),
        },
        Case {
            name: "namespace without identity is the empty string",
            policies: vec![allow(only(ns(vec![exact("")], vec![])))],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "namespace presence without identity fails",
            policies: vec![allow(only(ns(vec![StringMatch::Presence()], vec![])))],
            conn: plain(),
            want: no_allow_matched(),
        },
        Case {
            name: "not_namespaces excludes",
            policies: vec![deny(only(ns(vec![], vec![exact("shop")])))],
            conn: mtls(ADMIN),
            want: denied_by("deny"),
        },
        Case {
            name: "not_namespaces lets the listed namespace through",
            policies: vec![deny(only(ns(vec![], vec![exact("shop")])))],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "service account match",
            policies: vec![allow(only(Match {
                service_accounts: vec![sa("shop", "frontend")],
                ..Match::default()
            }))],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "service account: namespace must match too",
            policies: vec![allow(only(Match {
                service_accounts: vec![sa("ops", "frontend")],
                ..Match::default()
            }))],
            conn: mtls(FRONTEND),
            want: no_allow_matched(),
        },
        Case {
            name: "service account never matches without identity",
            policies: vec![allow(only(Match {
                service_accounts: vec![sa("", "")],
                ..Match::default()
            }))],
            conn: plain(),
            want: no_allow_matched(),
        },
        Case {
            name: "not_service_accounts passes without identity",
            policies: vec![allow(only(Match {
                not_service_accounts: vec![sa("shop", "frontend")],
                ..Match::default()
            }))],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "not_service_accounts fails for the listed account",
            policies: vec![allow(only(Match {
                not_service_accounts: vec![sa("shop", "frontend")],
                ..Match::default()
            }))],
            conn: mtls(FRONTEND),
            want: no_allow_matched(),
        },
    ]);
}

#[test]
fn address_and_port_categories() {
    let src = |v: &[&str], not: &[&str]| Match {
        source_ips: v.iter().map(|s| net(s)).collect(),
        not_source_ips: not.iter().map(|s| net(s)).collect(),
        ..Match::default()
    };
    run(vec![
        Case {
            name: "ipBlocks: CIDR containment",
            policies: vec![allow(only(src(&["10.0.0.0/8"], &[])))],
            conn: conn(None, "10.200.3.4", 8080),
            want: ALLOW,
        },
        Case {
            name: "ipBlocks: outside the CIDR",
            policies: vec![allow(only(src(&["10.0.0.0/8"], &[])))],
            conn: conn(None, "192.168.1.1", 8080),
            want: no_allow_matched(),
        },
        Case {
            name: "ipBlocks: single address /32",
            policies: vec![allow(only(src(&["10.0.0.1/32"], &[])))],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "ipBlocks: v4-mapped v6 peer address is compared as v4",
            policies: vec![allow(only(src(&["10.0.0.0/8"], &[])))],
            conn: conn(None, "::ffff:10.0.0.1", 8080),
            want: ALLOW,
        },
        Case {
            name: "ipBlocks: v4 CIDR never contains a v6 peer",
            policies: vec![allow(only(src(&["0.0.0.0/0"], &[])))],
            conn: conn(None, "fd00::1", 8080),
            want: no_allow_matched(),
        },
        Case {
            name: "ipBlocks: v6 CIDR",
            policies: vec![allow(only(src(&["fd00::/8"], &[])))],
            conn: conn(None, "fd00::1", 8080),
            want: ALLOW,
        },
        Case {
            name: "notIpBlocks: excluded range",
            policies: vec![allow(only(src(&["10.0.0.0/8"], &["10.0.0.0/24"])))],
            conn: plain(),
            want: no_allow_matched(),
        },
        Case {
            name: "notIpBlocks alone: anything else passes",
            policies: vec![deny(only(src(&[], &["10.0.0.0/24"])))],
            conn: conn(None, "10.9.9.9", 8080),
            want: denied_by("deny"),
        },
        Case {
            name: "destination ip",
            policies: vec![allow(only(Match {
                destination_ips: vec![net("10.1.0.0/16")],
                ..Match::default()
            }))],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "not destination ip",
            policies: vec![allow(only(Match {
                not_destination_ips: vec![net("10.1.0.7/32")],
                ..Match::default()
            }))],
            conn: plain(),
            want: no_allow_matched(),
        },
        Case {
            name: "destination port is the target port",
            policies: vec![allow(only(ports(&[8080])))],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "destination port mismatch",
            policies: vec![allow(only(ports(&[80])))],
            conn: plain(),
            want: no_allow_matched(),
        },
        Case {
            name: "notPorts excludes the port",
            policies: vec![deny(only(Match {
                not_destination_ports: vec![8080],
                ..Match::default()
            }))],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "notPorts: other ports are matched",
            policies: vec![deny(only(Match {
                not_destination_ports: vec![8080],
                ..Match::default()
            }))],
            conn: conn(None, SRC, 9090),
            want: denied_by("deny"),
        },
    ]);
}

#[test]
fn dry_run_and_multiple_policies() {
    let frontend = principals(vec![exact("cluster.local/ns/shop/sa/frontend")]);
    run(vec![
        Case {
            name: "dry-run DENY that matches does not deny",
            policies: vec![dry(deny(vec![vec![]]))],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "dry-run ALLOW that does not match does not deny",
            policies: vec![dry(allow(vec![]))],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "dry-run ALLOW that matches does not rescue a real ALLOW miss",
            policies: vec![allow(only(ports(&[1]))), dry(allow(vec![vec![]]))],
            conn: mtls(FRONTEND),
            want: no_allow_matched(),
        },
        Case {
            name: "DENY wins over a matching ALLOW, whatever the order",
            policies: vec![allow(vec![vec![]]), deny(only(frontend.clone()))],
            conn: mtls(FRONTEND),
            want: denied_by("deny"),
        },
        Case {
            name: "non-matching DENY, matching ALLOW",
            policies: vec![deny(only(frontend.clone())), allow(vec![vec![]])],
            conn: mtls(ADMIN),
            want: ALLOW,
        },
        Case {
            name: "any of several ALLOW policies",
            policies: vec![
                policy("a", PolicyAction::Allow, only(ports(&[1]))),
                policy("b", PolicyAction::Allow, only(frontend.clone())),
            ],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "several ALLOW policies, none matching",
            policies: vec![
                policy("a", PolicyAction::Allow, only(ports(&[1]))),
                policy("b", PolicyAction::Allow, only(frontend.clone())),
            ],
            conn: mtls(ADMIN),
            want: no_allow_matched(),
        },
        Case {
            name: "the first matching DENY is reported",
            policies: vec![
                policy("d1", PolicyAction::Deny, only(ports(&[1]))),
                policy("d2", PolicyAction::Deny, vec![vec![]]),
                policy("d3", PolicyAction::Deny, vec![vec![]]),
            ],
            conn: plain(),
            want: denied_by("d2"),
        },
    ]);
}

/// The DENY istiod sends for PeerAuthentication STRICT (§5.3).
fn strict(exempt_ports: &[u16]) -> Authorization {
    Authorization {
        name: "istio_converted_static_strict".into(),
        namespace: "istio-system".into(),
        scope: PolicyScope::WorkloadSelector,
        action: PolicyAction::Deny,
        dry_run: false,
        rules: only(Match {
            not_principals: vec![StringMatch::Presence()],
            not_destination_ports: exempt_ports.to_vec(),
            ..Match::default()
        }),
    }
}

#[test]
fn strict_mtls() {
    let strict_deny = Verdict::Deny {
        policy: Some("istio-system/istio_converted_static_strict".into()),
    };
    run(vec![
        Case {
            name: "STRICT rejects plaintext",
            policies: vec![strict(&[])],
            conn: plain(),
            want: strict_deny.clone(),
        },
        Case {
            name: "STRICT admits mTLS",
            policies: vec![strict(&[])],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "STRICT with a PERMISSIVE port admits plaintext on that port",
            policies: vec![strict(&[8080])],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "STRICT with a PERMISSIVE port rejects plaintext elsewhere",
            policies: vec![strict(&[8080])],
            conn: conn(None, SRC, 9090),
            want: strict_deny,
        },
    ]);
}

/// Policies shaped as istiod translates AuthorizationPolicy resources (§5.3): per rule, one
/// clause of `to` matches, one clause of `from` matches, one clause per `when` condition.
#[test]
fn istiod_translations() {
    // from: [{source: {principals: [cluster.local/ns/shop/sa/frontend]}},
    //        {source: {namespaces: [ops]}}]
    // to: [{operation: {ports: ["8080"]}}]
    let from_to = allow(vec![vec![
        vec![ports(&[8080])],
        vec![
            principals(vec![exact("cluster.local/ns/shop/sa/frontend")]),
            Match {
                namespaces: vec![exact("ops")],
                ..Match::default()
            },
        ],
    ]]);
    // spec: {}  (allow nothing)
    let allow_nothing = allow(vec![]);
    // rules: [{}]  (allow all)
    let allow_all = allow(vec![vec![]]);
    // ALLOW with only `methods: [GET]`: the rule is dropped, leaving zero rules.
    let allow_http_only = allow(vec![]);
    // DENY to: [{operation: {methods: [GET], ports: ["8080"]}}]: methods omitted, broader deny.
    let deny_http = deny(vec![vec![vec![ports(&[8080])]]]);
    // from: [{source: {principals: ["*"]}}] → presence; notNamespaces: ["test-*"] → prefix.
    let wildcards = allow(vec![vec![vec![Match {
        principals: vec![StringMatch::Presence()],
        not_namespaces: vec![StringMatch::Prefix("test-".into())],
        ..Match::default()
    }]]]);
    // from: [{source: {serviceAccounts: [frontend]}}] in namespace shop (bare SA).
    // when: [{key: source.ip, values: [10.0.0.0/8]}]
    let sa_when = allow(vec![vec![
        vec![Match {
            service_accounts: vec![ServiceAccountMatch {
                namespace: "shop".into(),
                service_account: "frontend".into(),
            }],
            ..Match::default()
        }],
        vec![Match {
            source_ips: vec![net("10.0.0.0/8")],
            ..Match::default()
        }],
    ]]);
    run(vec![
        Case {
            name: "from+to: principal on the port",
            policies: vec![from_to.clone()],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "from+to: second `from` entry (namespace)",
            policies: vec![from_to.clone()],
            conn: mtls(ADMIN),
            want: ALLOW,
        },
        Case {
            name: "from+to: right principal, wrong port",
            policies: vec![from_to],
            conn: conn(Some(FRONTEND), SRC, 9090),
            want: no_allow_matched(),
        },
        Case {
            name: "spec {} allows nothing",
            policies: vec![allow_nothing],
            conn: mtls(FRONTEND),
            want: no_allow_matched(),
        },
        Case {
            name: "rules [{}] allows everything",
            policies: vec![allow_all],
            conn: plain(),
            want: ALLOW,
        },
        Case {
            name: "ALLOW with only HTTP attributes denies at L4",
            policies: vec![allow_http_only],
            conn: mtls(FRONTEND),
            want: no_allow_matched(),
        },
        Case {
            name: "DENY with HTTP attributes denies the whole port at L4",
            policies: vec![deny_http],
            conn: mtls(FRONTEND),
            want: denied_by("deny"),
        },
        Case {
            name: "wildcards: any authenticated peer outside test-*",
            policies: vec![wildcards.clone()],
            conn: mtls(ADMIN),
            want: ALLOW,
        },
        Case {
            name: "wildcards: plaintext has no principal",
            policies: vec![wildcards.clone()],
            conn: plain(),
            want: no_allow_matched(),
        },
        Case {
            name: "wildcards: test-* namespace excluded",
            policies: vec![wildcards],
            conn: mtls("spiffe://cluster.local/ns/test-1/sa/x"),
            want: no_allow_matched(),
        },
        Case {
            name: "serviceAccounts and when source.ip",
            policies: vec![sa_when.clone()],
            conn: mtls(FRONTEND),
            want: ALLOW,
        },
        Case {
            name: "serviceAccounts ok, when source.ip not",
            policies: vec![sa_when],
            conn: conn(Some(FRONTEND), "192.168.0.1", 8080),
            want: no_allow_matched(),
        },
        Case {
            name: "STRICT plus namespace ALLOW: plaintext denied by STRICT first",
            policies: vec![allow(vec![vec![]]), strict(&[])],
            conn: plain(),
            want: Verdict::Deny {
                policy: Some("istio-system/istio_converted_static_strict".into()),
            },
        },
    ]);
}

#[test]
fn applicable_policies() {
    let mk = |ns: &str, name: &str, scope| {
        let p = Authorization {
            name: name.into(),
            namespace: ns.into(),
            scope,
            ..Authorization::default()
        };
        (p.key(), Arc::new(p))
    };
    let all: BTreeMap<String, Arc<Authorization>> = [
        mk("istio-system", "global", PolicyScope::Global),
        mk("shop", "ns-wide", PolicyScope::Namespace),
        mk("other", "ns-wide", PolicyScope::Namespace),
        mk("shop", "selected", PolicyScope::WorkloadSelector),
        mk("shop", "not-selected", PolicyScope::WorkloadSelector),
        mk(
            "istio-system",
            "istio_converted_static_strict",
            PolicyScope::WorkloadSelector,
        ),
    ]
    .into_iter()
    .collect();
    let w = Workload {
        uid: "k1//v1/Pod/shop/cart-0".into(),
        namespace: "shop".into(),
        authorization_policies: vec![
            "shop/selected".into(),
            "istio-system/istio_converted_static_strict".into(),
            "shop/ns-wide".into(), // also namespace-scoped: listed once
            "shop/gone".into(),    // unknown: skipped
        ],
        ..Workload::default()
    };
    let mut got: Vec<String> = applicable(&all, &w).iter().map(|p| p.key()).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "istio-system/global",
            "istio-system/istio_converted_static_strict",
            "shop/ns-wide",
            "shop/selected",
        ]
    );

    let bare = Workload {
        namespace: "elsewhere".into(),
        ..Workload::default()
    };
    let got: Vec<String> = applicable(&all, &bare).iter().map(|p| p.key()).collect();
    assert_eq!(got, ["istio-system/global"]);
}

/// Collects everything a `fmt` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn dry_run_is_logged_at_debug_on_the_authz_target() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let verdict = with_local_subscriber(subscriber, || {
        evaluate(
            &[
                deny(vec![vec![]]),
                dry(allow(vec![])),
                dry(deny(vec![vec![]])),
            ],
            &plain(),
        )
    });
    assert_eq!(verdict, denied_by("deny"));
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("dry-run"))
        .unwrap_or_else(|| panic!("no dry-run log in {text:?}"));
    assert!(line.contains("DEBUG") && line.contains("authz"), "{line}");
    assert!(
        line.contains("shop/allow-dry") && line.contains("matched=false"),
        "{line}"
    );
    // Logged although a real DENY had already decided.
    let line = text.lines().find(|l| l.contains("shop/deny-dry")).unwrap();
    assert!(line.contains("matched=true"), "{line}");
}

#[test]
fn verdict_display() {
    assert_eq!(ALLOW.to_string(), "allow");
    assert!(ALLOW.is_allow());
    assert_eq!(denied_by("x").to_string(), "denied by policy shop/x");
    assert_eq!(no_allow_matched().to_string(), "no ALLOW policy matched");
}
