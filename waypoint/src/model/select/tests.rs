#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use http::{HeaderMap, Method};

use super::*;
use crate::model::{
    Forward, HeaderMatch, PathMatch, QueryMatch, Regex, RouteAction, RouteMatch, StringMatch,
};

fn vh(name: &str, domains: &[&str]) -> VirtualHost {
    VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        ..VirtualHost::default()
    }
}

fn table(vhs: Vec<VirtualHost>) -> RouteTable {
    RouteTable {
        name: "t".into(),
        virtual_hosts: vhs,
    }
}

#[test]
fn virtual_host_selection() {
    let t = table(vec![
        vh(
            "exact",
            &["reviews.default.svc.cluster.local", "reviews:8080"],
        ),
        vh("vip", &["10.96.0.10:8080", "10.96.0.10"]),
        vh("v6", &["[fd00::10]:8080"]),
        vh("suffix-long", &["*.default.svc.cluster.local"]),
        vh("suffix-short", &["*.cluster.local", "*-suffix.com"]),
        vh("prefix", &["api.*", "api-v2.*"]),
        vh("default", &["*"]),
    ]);
    let d = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
    let cases: Vec<(Option<SocketAddr>, &str, &str)> = vec![
        (None, "reviews.default.svc.cluster.local", "exact"),
        (None, "Reviews.Default.SVC.cluster.local:9999", "exact"),
        (None, "reviews:8080", "exact"),
        (None, "reviews:9090", "default"),
        (None, "ratings.default.svc.cluster.local", "suffix-long"),
        (None, "ratings.default.svc.cluster.local:80", "suffix-long"),
        (None, "x.other.svc.cluster.local", "suffix-short"),
        (None, "foo-suffix.com", "suffix-short"),
        (None, "-suffix.com", "default"),
        (None, "api.example.com", "prefix"),
        (None, "api-v2.example.com", "prefix"),
        (None, "api.", "default"),
        (None, "elsewhere", "default"),
        (d("10.96.0.10:8080"), "reviews:8080", "vip"),
        (d("10.96.0.10:9999"), "whatever", "vip"),
        (d("10.1.1.1:8080"), "reviews:8080", "exact"),
        (d("[fd00::10]:8080"), "", "v6"),
        (None, "10.96.0.10:8080", "vip"),
    ];
    for (dest, authority, want) in cases {
        let got = virtual_host(&t, dest, authority).map(|v| v.name.as_str());
        assert_eq!(got, Some(want), "{dest:?} {authority}");
    }
    let no_default = table(vec![vh("exact", &["a"])]);
    assert!(virtual_host(&no_default, None, "b").is_none());
}

#[test]
fn longest_wildcard_wins_whatever_the_order() {
    let t = table(vec![
        vh("short", &["*.com"]),
        vh("long", &["*.example.com"]),
    ]);
    assert_eq!(
        virtual_host(&t, None, "a.example.com").unwrap().name,
        "long"
    );
}

fn regex(s: &str) -> Regex {
    Regex {
        source: s.into(),
        compiled: regex::Regex::new(&format!("^(?:{s})$")).unwrap(),
    }
}

fn any_route() -> RouteMatch {
    RouteMatch {
        path: PathMatch::Any,
        case_sensitive: true,
        headers: vec![],
        query: vec![],
        grpc: false,
    }
}

fn route_with(name: &str, matcher: RouteMatch) -> Route {
    Route {
        name: name.into(),
        matcher,
        action: RouteAction::Forward(Forward {
            clusters: vec![],
            prefix_rewrite: None,
            regex_rewrite: None,
            host_rewrite: None,
            timeout: None,
            retry: None,
            hash_policy: vec![],
            mirrors: vec![],
        }),
        request_headers: Default::default(),
        response_headers: Default::default(),
        overrides: Default::default(),
    }
}

fn header(name: &str, value: StringMatch, invert: bool) -> HeaderMatch {
    HeaderMatch {
        name: name.into(),
        value,
        invert,
        missing_as_empty: false,
    }
}

fn exact(v: &str) -> StringMatch {
    StringMatch::Exact {
        value: v.into(),
        ignore_case: false,
    }
}

struct Req {
    method: Method,
    path: &'static str,
    authority: &'static str,
    headers: HeaderMap,
}

fn req(method: Method, path: &'static str, headers: &[(&'static str, &'static str)]) -> Req {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, v.parse().unwrap());
    }
    Req {
        method,
        path,
        authority: "reviews:8080",
        headers: h,
    }
}

impl Req {
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            path_and_query: self.path,
            authority: self.authority,
            headers: &self.headers,
        }
    }
}

#[test]
fn route_matching() {
    let m = |path: PathMatch| RouteMatch {
        path,
        ..any_route()
    };
    let routes = vec![
        route_with("exact", m(PathMatch::Exact("/exact".into()))),
        route_with(
            "exact-ci",
            RouteMatch {
                case_sensitive: false,
                ..m(PathMatch::Exact("/CI".into()))
            },
        ),
        route_with("segment", m(PathMatch::SegmentPrefix("/api".into()))),
        route_with("regex", m(PathMatch::Regex(regex("/r/[0-9]+")))),
        route_with(
            "get-only",
            RouteMatch {
                headers: vec![header(":method", exact("GET"), false)],
                ..m(PathMatch::Prefix("/get".into()))
            },
        ),
        route_with(
            "query",
            RouteMatch {
                query: vec![
                    QueryMatch {
                        name: "v".into(),
                        value: Some(exact("2")),
                    },
                    QueryMatch {
                        name: "flag".into(),
                        value: None,
                    },
                ],
                ..m(PathMatch::Prefix("/q".into()))
            },
        ),
        route_with(
            "grpc",
            RouteMatch {
                grpc: true,
                ..m(PathMatch::Prefix("/pkg.Svc/".into()))
            },
        ),
        route_with(
            "joined",
            RouteMatch {
                headers: vec![header("x-multi", exact("a,b"), false)],
                ..m(PathMatch::Prefix("/multi".into()))
            },
        ),
        route_with(
            "not-beta",
            RouteMatch {
                headers: vec![header("x-beta", StringMatch::Present, true)],
                ..m(PathMatch::Prefix("/beta".into()))
            },
        ),
        route_with("catch-all", any_route()),
    ];
    let v = VirtualHost {
        routes,
        ..vh("v", &["*"])
    };
    let cases: Vec<(Req, &str)> = vec![
        (req(Method::GET, "/exact", &[]), "exact"),
        (req(Method::GET, "/exact?x=1", &[]), "exact"),
        (req(Method::GET, "/exact/", &[]), "catch-all"),
        (req(Method::GET, "/Exact", &[]), "catch-all"),
        (req(Method::GET, "/ci", &[]), "exact-ci"),
        (req(Method::GET, "/api", &[]), "segment"),
        (req(Method::GET, "/api/v1", &[]), "segment"),
        (req(Method::GET, "/apiv1", &[]), "catch-all"),
        (req(Method::GET, "/r/123?x", &[]), "regex"),
        (req(Method::GET, "/r/123/4", &[]), "catch-all"),
        (req(Method::GET, "/get/x", &[]), "get-only"),
        (req(Method::POST, "/get/x", &[]), "catch-all"),
        (req(Method::GET, "/q?flag&v=2", &[]), "query"),
        (req(Method::GET, "/q?v=2&flag=", &[]), "query"),
        (req(Method::GET, "/q?v=3&flag&v=2", &[]), "catch-all"),
        (req(Method::GET, "/q?v=2", &[]), "catch-all"),
        (
            req(
                Method::POST,
                "/pkg.Svc/Get",
                &[("content-type", "application/grpc")],
            ),
            "grpc",
        ),
        (
            req(
                Method::POST,
                "/pkg.Svc/Get",
                &[("content-type", "application/grpc+proto")],
            ),
            "grpc",
        ),
        (
            req(
                Method::POST,
                "/pkg.Svc/Get",
                &[("content-type", "application/grpc-web")],
            ),
            "catch-all",
        ),
        (req(Method::POST, "/pkg.Svc/Get", &[]), "catch-all"),
        (
            req(Method::GET, "/multi", &[("x-multi", "a"), ("x-multi", "b")]),
            "joined",
        ),
        (req(Method::GET, "/multi", &[("x-multi", "a")]), "catch-all"),
        (req(Method::GET, "/beta", &[]), "not-beta"),
        (req(Method::GET, "/beta", &[("x-beta", "1")]), "catch-all"),
    ];
    for (r, want) in cases {
        let got = route(&v, &r.view()).map(|r| r.name.as_str());
        assert_eq!(got, Some(want), "{} {}", r.method, r.path);
    }
}

#[test]
fn header_match_semantics() {
    let r = req(Method::GET, "/p?x=1", &[("x-a", "Hello"), ("x-empty", "")]);
    let v = r.view();
    let ci = |value: &str| StringMatch::Exact {
        value: value.into(),
        ignore_case: true,
    };
    let cases: Vec<(HeaderMatch, bool)> = vec![
        (header("x-a", exact("Hello"), false), true),
        (header("x-a", exact("hello"), false), false),
        (header("x-a", ci("hello"), false), true),
        (header("x-a", exact("hello"), true), true),
        (header("x-missing", exact("x"), false), false),
        // A missing header fails a value match even when inverted (Envoy).
        (header("x-missing", exact("x"), true), false),
        (header("x-missing", StringMatch::Present, false), false),
        (header("x-missing", StringMatch::Present, true), true),
        (header("x-empty", StringMatch::Present, false), true),
        (
            HeaderMatch {
                missing_as_empty: true,
                ..header("x-missing", exact(""), false)
            },
            true,
        ),
        (header(":path", exact("/p?x=1"), false), true),
        (header(":authority", exact("reviews:8080"), false), true),
        (header("host", exact("reviews:8080"), false), true),
        (header(":scheme", exact("http"), false), true),
        (header(":method", exact("GET"), false), true),
        (header(":status", StringMatch::Present, false), false),
        (
            header(
                "x-a",
                StringMatch::Prefix {
                    value: "HE".into(),
                    ignore_case: true,
                },
                false,
            ),
            true,
        ),
        (
            header(
                "x-a",
                StringMatch::Suffix {
                    value: "LO".into(),
                    ignore_case: false,
                },
                false,
            ),
            false,
        ),
        (
            header(
                "x-a",
                StringMatch::Contains {
                    value: "ELL".into(),
                    ignore_case: true,
                },
                false,
            ),
            true,
        ),
        (
            header("x-a", StringMatch::Regex(regex("H.*o")), false),
            true,
        ),
        (
            header("x-a", StringMatch::Regex(regex("ell")), false),
            false,
        ),
    ];
    for (h, want) in cases {
        assert_eq!(h.matches(&v), want, "{h:?}");
    }
}

#[test]
fn query_params() {
    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        ("/p?a=1&b=2", "b", Some("2")),
        ("/p?a=1&a=2", "a", Some("1")),
        ("/p?a", "a", Some("")),
        ("/p?a=", "a", Some("")),
        ("/p?a+b=c", "a+b", Some("c")),
        ("/p?x=a=b", "x", Some("a=b")),
        ("/p", "a", None),
        ("/p?ab=1", "a", None),
        ("/p?a=1#frag", "a", Some("1")),
    ];
    for (pq, name, want) in cases {
        assert_eq!(query_param(pq, name), want, "{pq} {name}");
    }
    assert_eq!(path_only("/a/b?c#d"), "/a/b");
    assert_eq!(path_only("/a#d"), "/a");
}

fn wc(name: &str, weight: u32) -> WeightedCluster {
    WeightedCluster {
        name: name.into(),
        weight,
        request_headers: Default::default(),
        response_headers: Default::default(),
    }
}

#[test]
fn weighted_clusters() {
    let cs = vec![wc("a", 3), wc("zero", 0), wc("b", 1)];
    assert_eq!(total_weight(&cs), 4);
    let picks: Vec<Option<&str>> = (0..5)
        .map(|roll| weighted_cluster(&cs, roll).map(|c| c.name.as_str()))
        .collect();
    assert_eq!(
        picks,
        vec![Some("a"), Some("a"), Some("a"), Some("b"), None]
    );
    assert_eq!(total_weight(&[]), 0);
    assert!(weighted_cluster(&[], 0).is_none());
    assert_eq!(
        total_weight(&[wc("x", u32::MAX), wc("y", u32::MAX)]),
        2 * u64::from(u32::MAX)
    );
}
