//! Route configurations, virtual hosts, route matches, per-filter overrides.

use std::collections::HashMap;

use xds::pb::envoy::config::route::v3::{
    FilterConfig, HeaderMatcher, QueryParameterMatcher, Route as PbRoute, RouteAction as PbAction,
    RouteConfiguration, RouteMatch as PbMatch, VirtualHost as PbVh,
    header_matcher::HeaderMatchSpecifier as H,
    query_parameter_matcher::QueryParameterMatchSpecifier as Q, route,
    route_action::ClusterSpecifier, route_match::PathSpecifier,
};
use xds::pb::envoy::extensions::filters::http::rbac::v3::{Rbac, RbacPerRoute};
use xds::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use xds::pb::envoy::r#type::v3::Int64Range;
use xds::pb::google::protobuf as pbuf;

use super::fault::{abort, delay, pct};
use super::rate_limit::istio_style;
use super::{any, exact, hvo, re, secs, sm, where_};
use crate::model::from_proto::route_table;
use crate::model::rbac::RbacFilter;
use crate::model::{
    AbortStatus, FilterOverride, HeaderMatch, PathMatch, QueryMatch, RouteAction, StringMatch,
};

pub(super) fn to_cluster(name: &str) -> Option<route::Action> {
    Some(route::Action::Route(PbAction {
        cluster_specifier: Some(ClusterSpecifier::Cluster(name.into())),
        timeout: Some(secs(0)),
        ..PbAction::default()
    }))
}

pub(super) fn path(p: PathSpecifier) -> PbMatch {
    PbMatch {
        path_specifier: Some(p),
        ..PbMatch::default()
    }
}

pub(super) fn table_of(routes: Vec<PbRoute>) -> RouteConfiguration {
    RouteConfiguration {
        name: "8080".into(),
        virtual_hosts: vec![PbVh {
            name: "reviews.default.svc.cluster.local:8080".into(),
            domains: vec!["reviews.default.svc.cluster.local".into(), "*".into()],
            routes,
            ..PbVh::default()
        }],
        ..RouteConfiguration::default()
    }
}

pub(super) fn one_route(m: PbMatch) -> PbRoute {
    PbRoute {
        name: "r".into(),
        r#match: Some(m),
        action: to_cluster("outbound|8080||reviews.default.svc.cluster.local"),
        ..PbRoute::default()
    }
}

/// What the control plane emits for a Service with an HTTPRoute (path prefix + header +
/// query match) and the default route.
#[test]
fn control_plane_shaped_table_converts() {
    let api = PbRoute {
        name: "default.reviews.0.0".into(),
        r#match: Some(PbMatch {
            path_specifier: Some(PathSpecifier::PathSeparatedPrefix("/api".into())),
            headers: vec![HeaderMatcher {
                name: "X-Version".into(),
                header_match_specifier: Some(H::StringMatch(exact("v2"))),
                ..HeaderMatcher::default()
            }],
            query_parameters: vec![QueryParameterMatcher {
                name: "debug".into(),
                query_parameter_match_specifier: Some(Q::StringMatch(sm(MatchPattern::SafeRegex(
                    re("1|true"),
                )))),
            }],
            ..PbMatch::default()
        }),
        action: to_cluster("outbound|8080||reviews-v2.default.svc.cluster.local"),
        ..PbRoute::default()
    };
    let default = PbRoute {
        name: "default".into(),
        r#match: Some(path(PathSpecifier::Prefix("/".into()))),
        action: to_cluster("outbound|8080||reviews.default.svc.cluster.local"),
        ..PbRoute::default()
    };
    let rc = RouteConfiguration {
        name: "8080".into(),
        virtual_hosts: vec![PbVh {
            name: "reviews.default.svc.cluster.local:8080".into(),
            domains: vec![
                "reviews.default.svc.cluster.local:8080".into(),
                "Reviews.Default.svc.cluster.local".into(),
                "10.96.0.10:8080".into(),
                "10.96.0.10".into(),
            ],
            routes: vec![api, default],
            ..PbVh::default()
        }],
        ..RouteConfiguration::default()
    };
    let t = route_table(&rc).unwrap();
    assert_eq!(t.name, "8080");
    let vh = &t.virtual_hosts[0];
    assert_eq!(vh.domains[1], "reviews.default.svc.cluster.local");
    assert_eq!(vh.routes.len(), 2);
    let m = &vh.routes[0].matcher;
    assert_eq!(m.path, PathMatch::SegmentPrefix("/api".into()));
    assert!(m.case_sensitive);
    assert_eq!(
        m.headers,
        vec![HeaderMatch {
            name: "x-version".into(),
            value: StringMatch::Exact {
                value: "v2".into(),
                ignore_case: false
            },
            invert: false,
            missing_as_empty: false,
        }]
    );
    assert_eq!(m.query[0].name, "debug");
    assert!(matches!(&m.query[0].value, Some(StringMatch::Regex(r)) if r.source == "1|true"));
    assert_eq!(vh.routes[1].matcher.path, PathMatch::Any);
    let RouteAction::Forward(f) = &vh.routes[1].action else {
        panic!("not a forward");
    };
    assert_eq!(
        f.clusters[0].name,
        "outbound|8080||reviews.default.svc.cluster.local"
    );
    assert_eq!(f.clusters[0].weight, 1);
    assert_eq!(f.timeout, None);
}

#[test]
fn header_matcher_forms() {
    #[allow(deprecated)]
    let cases: Vec<(H, bool, StringMatch, bool)> = vec![
        (
            H::ExactMatch("a".into()),
            false,
            StringMatch::Exact {
                value: "a".into(),
                ignore_case: false,
            },
            false,
        ),
        (
            H::ExactMatch(String::new()),
            false,
            StringMatch::Present,
            false,
        ),
        (
            H::PrefixMatch("a".into()),
            true,
            StringMatch::Prefix {
                value: "a".into(),
                ignore_case: false,
            },
            true,
        ),
        (
            H::SuffixMatch("a".into()),
            false,
            StringMatch::Suffix {
                value: "a".into(),
                ignore_case: false,
            },
            false,
        ),
        (
            H::ContainsMatch("a".into()),
            false,
            StringMatch::Contains {
                value: "a".into(),
                ignore_case: false,
            },
            false,
        ),
        (H::PresentMatch(true), false, StringMatch::Present, false),
        (H::PresentMatch(false), false, StringMatch::Present, true),
        (H::PresentMatch(false), true, StringMatch::Present, false),
        (
            H::StringMatch(xds::pb::envoy::r#type::matcher::v3::StringMatcher {
                ignore_case: true,
                match_pattern: Some(MatchPattern::Exact("A".into())),
            }),
            false,
            StringMatch::Exact {
                value: "A".into(),
                ignore_case: true,
            },
            false,
        ),
    ];
    for (spec, invert, want, want_invert) in cases {
        let m = PbMatch {
            headers: vec![HeaderMatcher {
                name: "x".into(),
                invert_match: invert,
                header_match_specifier: Some(spec.clone()),
                ..HeaderMatcher::default()
            }],
            ..path(PathSpecifier::Prefix("/".into()))
        };
        let t = route_table(&table_of(vec![one_route(m)])).unwrap();
        let h = &t.virtual_hosts[0].routes[0].matcher.headers[0];
        assert_eq!((&h.value, h.invert), (&want, want_invert), "{spec:?}");
    }
    // Deprecated safe_regex_match, and no specifier at all (= present).
    #[allow(deprecated)]
    let m = PbMatch {
        headers: vec![
            HeaderMatcher {
                name: "x".into(),
                header_match_specifier: Some(H::SafeRegexMatch(re("a+"))),
                ..HeaderMatcher::default()
            },
            HeaderMatcher {
                name: "y".into(),
                treat_missing_header_as_empty: true,
                ..HeaderMatcher::default()
            },
        ],
        ..path(PathSpecifier::Prefix("/".into()))
    };
    let t = route_table(&table_of(vec![one_route(m)])).unwrap();
    let hs = &t.virtual_hosts[0].routes[0].matcher.headers;
    assert!(
        matches!(&hs[0].value, StringMatch::Regex(r) if r.compiled.is_match("aa") && !r.compiled.is_match("aab"))
    );
    assert_eq!(hs[1].value, StringMatch::Present);
    assert!(hs[1].missing_as_empty);
}

#[test]
fn path_and_match_options() {
    let cases: Vec<(PbMatch, PathMatch, bool)> = vec![
        (
            path(PathSpecifier::Prefix(String::new())),
            PathMatch::Any,
            true,
        ),
        (
            path(PathSpecifier::Prefix("/a".into())),
            PathMatch::Prefix("/a".into()),
            true,
        ),
        (
            path(PathSpecifier::Path("/a/b".into())),
            PathMatch::Exact("/a/b".into()),
            true,
        ),
        (
            PbMatch {
                case_sensitive: Some(pbuf::BoolValue { value: false }),
                ..path(PathSpecifier::Prefix("/A".into()))
            },
            PathMatch::Prefix("/A".into()),
            false,
        ),
    ];
    for (m, want, case_sensitive) in cases {
        let t = route_table(&table_of(vec![one_route(m.clone())])).unwrap();
        let got = &t.virtual_hosts[0].routes[0].matcher;
        assert_eq!(
            (&got.path, got.case_sensitive),
            (&want, case_sensitive),
            "{m:?}"
        );
    }
    let m = PbMatch {
        grpc: Some(Default::default()),
        query_parameters: vec![QueryParameterMatcher {
            name: "q".into(),
            query_parameter_match_specifier: Some(Q::PresentMatch(true)),
        }],
        ..path(PathSpecifier::SafeRegex(re("/svc/[^/]+")))
    };
    let t = route_table(&table_of(vec![one_route(m)])).unwrap();
    let got = &t.virtual_hosts[0].routes[0].matcher;
    assert!(got.grpc);
    assert_eq!(
        got.query,
        vec![QueryMatch {
            name: "q".into(),
            value: None
        }]
    );
    let PathMatch::Regex(r) = &got.path else {
        panic!("not a regex")
    };
    assert!(r.compiled.is_match("/svc/Get"));
    assert!(!r.compiled.is_match("/svc/Get/x"), "anchored at both ends");
}

#[test]
fn rejected_matches() {
    let cases: Vec<(PbMatch, &str, &str)> = vec![
        (PbMatch::default(), "match.path_specifier", "missing"),
        (
            path(PathSpecifier::PathSeparatedPrefix("/a/".into())),
            "match.path_separated_prefix",
            "invalid",
        ),
        (
            path(PathSpecifier::SafeRegex(re("(unclosed"))),
            "match.safe_regex",
            "invalid",
        ),
        (
            path(PathSpecifier::ConnectMatcher(Default::default())),
            "match.connect_matcher",
            "unsupported",
        ),
        (
            PbMatch {
                runtime_fraction: Some(Default::default()),
                ..path(PathSpecifier::Prefix("/".into()))
            },
            "match.runtime_fraction",
            "unsupported",
        ),
        (
            PbMatch {
                cookies: vec![Default::default()],
                ..path(PathSpecifier::Prefix("/".into()))
            },
            "match.cookies",
            "unsupported",
        ),
        (
            PbMatch {
                headers: vec![HeaderMatcher {
                    name: "x".into(),
                    header_match_specifier: Some(H::RangeMatch(Int64Range { start: 1, end: 2 })),
                    ..HeaderMatcher::default()
                }],
                ..path(PathSpecifier::Prefix("/".into()))
            },
            "match.headers[0].range_match",
            "unsupported",
        ),
        (
            PbMatch {
                headers: vec![HeaderMatcher {
                    name: "x".into(),
                    header_match_specifier: Some(H::StringMatch(sm(MatchPattern::Prefix(
                        String::new(),
                    )))),
                    ..HeaderMatcher::default()
                }],
                ..path(PathSpecifier::Prefix("/".into()))
            },
            "match.headers[0].string_match.prefix",
            "invalid",
        ),
    ];
    for (m, field, kind) in cases {
        let e = route_table(&table_of(vec![one_route(m.clone())])).unwrap_err();
        let (got_field, got_kind) = where_(&e);
        assert_eq!(
            (got_field.as_str(), got_kind),
            (
                format!("virtual_hosts[\"reviews.default.svc.cluster.local:8080\"].routes[\"r\"].{field}").as_str(),
                kind
            ),
            "{m:?}: {e}"
        );
    }
}

#[test]
fn duplicate_domains_are_rejected() {
    let mut rc = table_of(vec![]);
    let mut second = rc.virtual_hosts[0].clone();
    second.name = "other".into();
    second.domains = vec!["REVIEWS.default.svc.cluster.local".into()];
    rc.virtual_hosts.push(second);
    let e = route_table(&rc).unwrap_err();
    assert!(e.to_string().contains("duplicate domain"), "{e}");
}

#[test]
fn table_level_headers_fold_into_virtual_hosts() {
    let mut rc = table_of(vec![]);
    rc.virtual_hosts[0].request_headers_to_add = vec![hvo("x-a", "vh", 2), hvo("x-b", "vh", 2)];
    rc.request_headers_to_add = vec![hvo("x-a", "table", 2)];
    rc.request_headers_to_remove = vec!["x-b".into()];
    let t = route_table(&rc).unwrap();
    let h = &t.virtual_hosts[0].request_headers;
    // The table comes last: it removes x-b (so the virtual host's x-b add is dropped) and its
    // x-a overwrites the virtual host's.
    assert_eq!(h.remove, vec![http::HeaderName::from_static("x-b")]);
    let adds: Vec<(&str, &str)> = h
        .add
        .iter()
        .map(|(n, v, _)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(adds, vec![("x-a", "vh"), ("x-a", "table")]);

    rc.most_specific_header_mutations_wins = true;
    let t = route_table(&rc).unwrap();
    let adds: Vec<&str> = t.virtual_hosts[0]
        .request_headers
        .add
        .iter()
        .map(|(_, v, _)| v.to_str().unwrap())
        .collect();
    assert_eq!(adds, vec!["table", "vh", "vh"]);
}

fn per_route(rbac: Option<Rbac>) -> pbuf::Any {
    any(&RbacPerRoute { rbac })
}

#[test]
fn per_filter_configs() {
    let mut rc = table_of(vec![one_route(path(PathSpecifier::Prefix("/".into())))]);
    let rules = Rbac {
        rules: Some(Default::default()),
        ..Rbac::default()
    };
    rc.typed_per_filter_config = HashMap::from([("istio.rbac.allow".into(), per_route(None))]);
    rc.virtual_hosts[0].typed_per_filter_config = HashMap::from([
        ("istio.rbac.deny".into(), per_route(Some(rules.clone()))),
        (
            "istio.rbac.other".into(),
            any(&FilterConfig {
                disabled: true,
                ..FilterConfig::default()
            }),
        ),
        (
            "some.optional".into(),
            any(&FilterConfig {
                config: Some(any(&pbuf::Struct::default())),
                is_optional: true,
                ..FilterConfig::default()
            }),
        ),
    ]);
    rc.virtual_hosts[0].routes[0].typed_per_filter_config = HashMap::from([(
        "istio.rbac.allow".into(),
        any(&FilterConfig {
            config: Some(per_route(Some(rules))),
            ..FilterConfig::default()
        }),
    )]);
    let t = route_table(&rc).unwrap();
    let vh = &t.virtual_hosts[0];
    let names: Vec<&str> = vh.overrides.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["istio.rbac.allow", "istio.rbac.deny", "istio.rbac.other"]
    );
    assert_eq!(
        vh.overrides["istio.rbac.allow"],
        FilterOverride::Rbac(RbacFilter::disabled())
    );
    assert_eq!(vh.overrides["istio.rbac.other"], FilterOverride::Disabled);
    let FilterOverride::Rbac(deny) = &vh.overrides["istio.rbac.deny"] else {
        panic!("{:?}", vh.overrides)
    };
    assert!(!deny.is_disabled());
    let r = &vh.routes[0].overrides;
    let FilterOverride::Rbac(allow) = &r["istio.rbac.allow"] else {
        panic!("{r:?}")
    };
    assert!(!allow.is_disabled());

    rc.virtual_hosts[0].typed_per_filter_config = HashMap::from([(
        "envoy.filters.http.fault".into(),
        any(&pbuf::Struct::default()),
    )]);
    let e = route_table(&rc).unwrap_err();
    assert!(e.is_unsupported(), "{e}");
    assert!(e.to_string().contains("envoy.filters.http.fault"), "{e}");
}

const FAULT: &str = "envoy.filters.http.fault";
const RATE_LIMIT: &str = "envoy.filters.http.local_ratelimit";

fn disabled() -> pbuf::Any {
    any(&FilterConfig {
        disabled: true,
        ..FilterConfig::default()
    })
}

/// Fault and rate-limit overrides: the route configuration's apply to every virtual host that
/// does not replace them (one shared config, so one bucket), a host's own win, routes keep theirs.
#[test]
fn fault_and_rate_limit_overrides() {
    use xds::pb::envoy::extensions::filters::http::fault::v3::{HttpFault, fault_abort::ErrorType};
    use xds::pb::envoy::r#type::v3::fractional_percent::DenominatorType as D;
    let table_fault = HttpFault {
        abort: Some(abort(
            ErrorType::HttpStatus(503),
            Some(pct(100, D::Hundred)),
        )),
        ..HttpFault::default()
    };
    let route_fault = HttpFault {
        delay: Some(delay(secs(3), Some(pct(1, D::Million)))),
        ..HttpFault::default()
    };
    let mut rc = table_of(vec![one_route(path(PathSpecifier::Prefix("/".into())))]);
    rc.typed_per_filter_config = HashMap::from([
        (FAULT.into(), any(&table_fault)),
        (RATE_LIMIT.into(), any(&istio_style(100))),
    ]);
    let mut other = rc.virtual_hosts[0].clone();
    other.name = "other".into();
    other.domains = vec!["other.default.svc.cluster.local".into()];
    other.typed_per_filter_config = HashMap::from([(FAULT.into(), disabled())]);
    rc.virtual_hosts[0].routes[0].typed_per_filter_config = HashMap::from([
        (
            FAULT.into(),
            any(&FilterConfig {
                config: Some(any(&route_fault)),
                ..FilterConfig::default()
            }),
        ),
        (RATE_LIMIT.into(), any(&istio_style(5))),
    ]);
    rc.virtual_hosts.push(other);
    let t = route_table(&rc).unwrap();
    let (first, other) = (&t.virtual_hosts[0], &t.virtual_hosts[1]);

    let FilterOverride::Fault(f) = &first.overrides[FAULT] else {
        panic!("{:?}", first.overrides)
    };
    let a = f.abort.unwrap();
    assert_eq!(
        (a.status, a.share.per_million),
        (
            AbortStatus::Http(http::StatusCode::SERVICE_UNAVAILABLE),
            1_000_000
        )
    );
    assert_eq!(other.overrides[FAULT], FilterOverride::Disabled);
    // Both hosts inherit the route configuration's one rate limit, bucket and all.
    let (FilterOverride::RateLimit(a), FilterOverride::RateLimit(b)) =
        (&first.overrides[RATE_LIMIT], &other.overrides[RATE_LIMIT])
    else {
        panic!("{:?}", (&first.overrides, &other.overrides))
    };
    assert!(std::sync::Arc::ptr_eq(a, b));
    assert_eq!(a.bucket.as_ref().unwrap().max_tokens, 100);

    let r = &first.routes[0].overrides;
    let FilterOverride::Fault(f) = &r[FAULT] else {
        panic!("{r:?}")
    };
    assert_eq!(f.abort, None);
    assert_eq!(f.delay.unwrap().share.per_million, 1);
    let FilterOverride::RateLimit(l) = &r[RATE_LIMIT] else {
        panic!("{r:?}")
    };
    assert_eq!(l.bucket.as_ref().unwrap().max_tokens, 5);
    assert!(other.routes[0].overrides.is_empty());
}

#[test]
fn override_errors_name_the_filter() {
    use xds::pb::envoy::extensions::filters::http::fault::v3::{HttpFault, fault_abort::ErrorType};
    use xds::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
    let bad_fault = HttpFault {
        abort: Some(abort(ErrorType::HttpStatus(100), None)),
        ..HttpFault::default()
    };
    // Envoy refuses a per-route rate limit without a bucket.
    let no_bucket = LocalRateLimit {
        token_bucket: None,
        ..istio_style(1)
    };
    let vh = "virtual_hosts[\"reviews.default.svc.cluster.local:8080\"]";
    let cases = [
        (
            FAULT,
            any(&bad_fault),
            format!("{vh}.typed_per_filter_config[\"{FAULT}\"].abort.http_status"),
            "invalid",
        ),
        (
            RATE_LIMIT,
            any(&no_bucket),
            format!("{vh}.typed_per_filter_config[\"{RATE_LIMIT}\"].token_bucket"),
            "missing",
        ),
        (
            "unknown",
            any(&FilterConfig {
                config: Some(any(&pbuf::Struct::default())),
                ..FilterConfig::default()
            }),
            format!("{vh}.typed_per_filter_config[\"unknown\"]"),
            "unsupported",
        ),
    ];
    for (name, config, field, kind) in cases {
        let mut rc = table_of(vec![one_route(path(PathSpecifier::Prefix("/".into())))]);
        rc.virtual_hosts[0].typed_per_filter_config = HashMap::from([(name.into(), config)]);
        let e = route_table(&rc).unwrap_err();
        assert_eq!(where_(&e), (field, kind), "{e}");
    }
    // At the route configuration's level the path starts there.
    let mut rc = table_of(vec![]);
    rc.typed_per_filter_config = HashMap::from([(RATE_LIMIT.into(), any(&no_bucket))]);
    let e = route_table(&rc).unwrap_err();
    assert_eq!(
        where_(&e),
        (
            format!("typed_per_filter_config[\"{RATE_LIMIT}\"].token_bucket"),
            "missing"
        )
    );
}

#[test]
fn virtual_host_retry_and_mirrors_are_defaults_for_routes() {
    use xds::pb::envoy::config::route::v3::{RetryPolicy, route_action::RequestMirrorPolicy};
    let mut rc = table_of(vec![one_route(path(PathSpecifier::Prefix("/".into())))]);
    rc.virtual_hosts[0].retry_policy = Some(RetryPolicy {
        retry_on: "5xx".into(),
        ..RetryPolicy::default()
    });
    rc.request_mirror_policies = vec![RequestMirrorPolicy {
        cluster: "shadow".into(),
        ..RequestMirrorPolicy::default()
    }];
    let t = route_table(&rc).unwrap();
    let RouteAction::Forward(f) = &t.virtual_hosts[0].routes[0].action else {
        panic!("not a forward")
    };
    assert!(f.retry.as_ref().unwrap().on.server_error);
    assert_eq!(f.mirrors[0].cluster, "shadow");
}

#[test]
fn route_without_action_or_with_unsupported_action() {
    let mut r = one_route(path(PathSpecifier::Prefix("/".into())));
    r.action = None;
    let (field, kind) = where_(&route_table(&table_of(vec![r.clone()])).unwrap_err());
    assert!(
        field.ends_with("routes[\"r\"].action") && kind == "missing",
        "{field}"
    );
    r.action = Some(route::Action::NonForwardingAction(Default::default()));
    assert!(
        route_table(&table_of(vec![r]))
            .unwrap_err()
            .is_unsupported()
    );
}

#[test]
fn vhds_and_require_tls_are_unsupported() {
    let mut rc = table_of(vec![]);
    rc.virtual_hosts[0].require_tls = 2;
    assert!(route_table(&rc).unwrap_err().is_unsupported());
    let mut rc = table_of(vec![]);
    rc.vhds = Some(Default::default());
    assert!(route_table(&rc).unwrap_err().is_unsupported());
}
