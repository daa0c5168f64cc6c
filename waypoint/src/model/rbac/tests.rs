#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, Method};

use super::*;
use crate::model::Regex;

fn exact(v: &str) -> StringMatch {
    StringMatch::Exact {
        value: v.into(),
        ignore_case: false,
    }
}

fn regex(s: &str) -> StringMatch {
    StringMatch::Regex(Regex {
        source: s.into(),
        compiled: regex::Regex::new(&format!("^(?:{s})$")).unwrap(),
    })
}

fn header(name: &str, value: StringMatch) -> HeaderMatch {
    HeaderMatch {
        name: name.into(),
        value,
        invert: false,
        missing_as_empty: false,
    }
}

fn policy(name: &str, permissions: Vec<Permission>, principals: Vec<Principal>) -> RbacPolicy {
    RbacPolicy {
        name: name.into(),
        permissions,
        principals,
    }
}

fn rules(action: RbacAction, policies: Vec<RbacPolicy>) -> Option<RbacRules> {
    Some(RbacRules { action, policies })
}

struct Conn {
    identity: Option<hbone::Identity>,
    remote: IpAddr,
    destination: SocketAddr,
}

impl Conn {
    fn from(ns: Option<&str>, remote: &str) -> Conn {
        Conn {
            identity: ns.map(|ns| hbone::Identity::new("cluster.local", ns, "sleep").unwrap()),
            remote: remote.parse().unwrap(),
            destination: "10.96.0.10:8080".parse().unwrap(),
        }
    }

    fn view(&self) -> ConnectionView<'_> {
        ConnectionView {
            peer_identity: self.identity.as_ref(),
            remote_ip: self.remote,
            destination: self.destination,
        }
    }
}

fn check(filter: &RbacFilter, method: Method, path: &str, conn: &Conn) -> RbacDecision {
    let headers = HeaderMap::new();
    let req = RequestView {
        method: &method,
        path_and_query: path,
        authority: "reviews:8080",
        headers: &headers,
    };
    evaluate(filter, &req, &conn.view())
}

/// Istio's "allow GET /api/* from namespace foo".
fn allow_foo_get_api() -> RbacPolicy {
    policy(
        "ns[default]-policy[allow-foo]-rule[0]",
        vec![Permission::And(vec![
            Permission::Header(header(":method", exact("GET"))),
            Permission::UrlPath(StringMatch::Prefix {
                value: "/api/".into(),
                ignore_case: false,
            }),
        ])],
        vec![Principal::Authenticated(Some(regex(".*/ns/foo/.*")))],
    )
}

#[test]
fn actions() {
    let foo = Conn::from(Some("foo"), "10.0.0.1");
    let bar = Conn::from(Some("bar"), "10.0.0.1");
    let plain = Conn::from(None, "10.0.0.1");
    let allow = RbacFilter {
        rules: rules(RbacAction::Allow, vec![allow_foo_get_api()]),
        ..RbacFilter::default()
    };
    let deny = RbacFilter {
        rules: rules(RbacAction::Deny, vec![allow_foo_get_api()]),
        ..RbacFilter::default()
    };
    let log = RbacFilter {
        rules: rules(RbacAction::Log, vec![allow_foo_get_api()]),
        ..RbacFilter::default()
    };
    let empty_allow = RbacFilter {
        rules: rules(RbacAction::Allow, vec![]),
        ..RbacFilter::default()
    };
    let disabled = RbacFilter::disabled();
    let name = Some("ns[default]-policy[allow-foo]-rule[0]".to_owned());
    type Case<'a> = (
        &'a RbacFilter,
        Method,
        &'a str,
        &'a Conn,
        bool,
        Option<String>,
    );
    let cases: Vec<Case<'_>> = vec![
        (&allow, Method::GET, "/api/x?q", &foo, true, name.clone()),
        (&allow, Method::POST, "/api/x", &foo, false, None),
        (&allow, Method::GET, "/other", &foo, false, None),
        (&allow, Method::GET, "/api/x", &bar, false, None),
        (&allow, Method::GET, "/api/x", &plain, false, None),
        (&deny, Method::GET, "/api/x", &foo, false, name.clone()),
        (&deny, Method::GET, "/api/x", &bar, true, None),
        (&log, Method::GET, "/api/x", &foo, true, name.clone()),
        (&log, Method::GET, "/api/x", &bar, true, None),
        (&empty_allow, Method::GET, "/", &foo, false, None),
        (&disabled, Method::GET, "/", &plain, true, None),
    ];
    for (f, method, path, conn, allowed, policy) in cases {
        let d = check(f, method.clone(), path, conn);
        assert_eq!(
            (d.allowed, d.policy, d.shadow),
            (allowed, policy, None),
            "{method} {path} {:?}",
            conn.identity
        );
    }
}

#[test]
fn shadow_rules_are_reported_not_enforced() {
    let f = RbacFilter {
        rules: None,
        shadow_rules: rules(RbacAction::Deny, vec![allow_foo_get_api()]),
        shadow_rules_stat_prefix: "istio_dry_run_deny_".into(),
    };
    let d = check(
        &f,
        Method::GET,
        "/api/x",
        &Conn::from(Some("foo"), "10.0.0.1"),
    );
    assert!(d.allowed);
    assert_eq!(d.policy, None);
    assert_eq!(
        d.shadow,
        Some(ShadowDecision {
            allowed: false,
            policy: Some("ns[default]-policy[allow-foo]-rule[0]".into())
        })
    );
}

#[test]
fn first_matching_policy_by_name_is_reported() {
    let any = |name: &str| policy(name, vec![Permission::Any], vec![Principal::Any]);
    let f = RbacFilter {
        rules: rules(RbacAction::Deny, vec![any("a"), any("b")]),
        ..RbacFilter::default()
    };
    let d = check(&f, Method::GET, "/", &Conn::from(None, "10.0.0.1"));
    assert_eq!(d.policy.as_deref(), Some("a"));
}

#[test]
fn permission_kinds() {
    let conn = Conn::from(Some("foo"), "10.0.0.1");
    let cases: Vec<(Permission, bool)> = vec![
        (Permission::Any, true),
        (Permission::Not(Box::new(Permission::Any)), false),
        (
            Permission::Or(vec![
                Permission::DestinationPort(9090),
                Permission::DestinationPort(8080),
            ]),
            true,
        ),
        (
            Permission::And(vec![
                Permission::DestinationPort(8080),
                Permission::DestinationIp("10.96.0.0/16".parse().unwrap()),
            ]),
            true,
        ),
        (
            Permission::DestinationIp("10.97.0.0/16".parse().unwrap()),
            false,
        ),
        (
            Permission::DestinationPortRange {
                start: 8000,
                end: 8080,
            },
            false,
        ),
        (
            Permission::DestinationPortRange {
                start: 8000,
                end: 8081,
            },
            true,
        ),
        (Permission::UrlPath(exact("/a/b")), true),
        (
            Permission::Header(header(":authority", exact("reviews:8080"))),
            true,
        ),
        (Permission::RequestedServerName(regex(".*")), false),
        (Permission::Metadata, false),
        (Permission::Not(Box::new(Permission::Metadata)), true),
    ];
    for (p, want) in cases {
        let f = RbacFilter {
            rules: rules(
                RbacAction::Allow,
                vec![policy("p", vec![p.clone()], vec![Principal::Any])],
            ),
            ..RbacFilter::default()
        };
        assert_eq!(
            check(&f, Method::GET, "/a/b?c=d", &conn).allowed,
            want,
            "{p:?}"
        );
    }
}

#[test]
fn principal_kinds() {
    let foo = Conn::from(Some("foo"), "10.0.0.1");
    let mapped = Conn::from(None, "::ffff:10.0.0.1");
    let plain = Conn::from(None, "192.168.0.1");
    let spiffe = "spiffe://cluster.local/ns/foo/sa/sleep";
    let cases: Vec<(Principal, &Conn, bool)> = vec![
        (Principal::Authenticated(None), &foo, true),
        (Principal::Authenticated(None), &plain, false),
        (Principal::Authenticated(Some(exact(spiffe))), &foo, true),
        (
            Principal::Authenticated(Some(StringMatch::Prefix {
                value: "spiffe://cluster.local/ns/bar/".into(),
                ignore_case: false,
            })),
            &foo,
            false,
        ),
        (
            Principal::Not(Box::new(Principal::Authenticated(Some(exact(spiffe))))),
            &plain,
            true,
        ),
        (
            Principal::RemoteIp("10.0.0.0/8".parse().unwrap()),
            &foo,
            true,
        ),
        (
            Principal::RemoteIp("10.0.0.0/8".parse().unwrap()),
            &mapped,
            true,
        ),
        (
            Principal::RemoteIp("10.0.0.0/8".parse().unwrap()),
            &plain,
            false,
        ),
        (
            Principal::And(vec![
                Principal::RemoteIp("10.0.0.0/8".parse().unwrap()),
                Principal::Authenticated(None),
            ]),
            &mapped,
            false,
        ),
        (
            Principal::Or(vec![Principal::Metadata, Principal::Any]),
            &plain,
            true,
        ),
        (
            Principal::Header(header(":method", exact("GET"))),
            &plain,
            true,
        ),
        (Principal::UrlPath(exact("/a/b")), &plain, true),
    ];
    for (p, conn, want) in cases {
        let f = RbacFilter {
            rules: rules(
                RbacAction::Allow,
                vec![policy("p", vec![Permission::Any], vec![p.clone()])],
            ),
            ..RbacFilter::default()
        };
        assert_eq!(
            check(&f, Method::GET, "/a/b?c=d", conn).allowed,
            want,
            "{p:?} {}",
            conn.remote
        );
    }
}
