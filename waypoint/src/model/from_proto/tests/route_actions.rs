//! Route actions: forwarding (clusters, rewrites, timeouts, retries, hashing, mirrors),
//! redirects, direct responses, header options.

use std::time::Duration;

use xds::pb::envoy::config::core::v3::{
    DataSource, HeaderValueOption, RuntimeFractionalPercent, data_source,
};
use xds::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, RetryPolicy as PbRetry, RouteAction as PbAction,
    WeightedCluster as PbWeighted,
    redirect_action::{PathRewriteSpecifier, SchemeRewriteSpecifier},
    retry_policy::RetryBackOff,
    route,
    route_action::{
        ClusterSpecifier, HashPolicy as PbHash, HostRewriteSpecifier, RequestMirrorPolicy,
        hash_policy::{ConnectionProperties, Cookie, Header, PolicySpecifier, QueryParameter},
    },
    route_match::PathSpecifier,
    weighted_cluster::ClusterWeight,
};
use xds::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use xds::pb::envoy::r#type::v3::FractionalPercent;
use xds::pb::google::protobuf as pbuf;

use super::routes::{one_route, path, table_of};
use super::{hvo, millis, re, secs, u32v, where_};
use crate::model::from_proto::route_table;
use crate::model::{
    Forward, HashPolicy, HeaderChanges, PathMatch, Redirect, RetryOn, Route, RouteAction,
};

fn convert(action: route::Action) -> Result<Route, crate::model::from_proto::ModelError> {
    let mut r = one_route(path(PathSpecifier::Prefix("/".into())));
    r.action = Some(action);
    route_table(&table_of(vec![r])).map(|t| t.virtual_hosts[0].routes[0].clone())
}

fn forward(a: PbAction) -> Forward {
    match convert(route::Action::Route(a)).unwrap().action {
        RouteAction::Forward(f) => f,
        other => panic!("{other:?}"),
    }
}

fn to(name: &str) -> Option<ClusterSpecifier> {
    Some(ClusterSpecifier::Cluster(name.into()))
}

#[test]
fn timeouts() {
    let cases = [
        (None, Some(Duration::from_secs(15))),
        (Some(secs(0)), None),
        (
            Some(pbuf::Duration {
                seconds: 2,
                nanos: 500_000_000,
            }),
            Some(Duration::from_millis(2500)),
        ),
    ];
    for (timeout, want) in cases {
        let f = forward(PbAction {
            cluster_specifier: to("c"),
            timeout,
            ..PbAction::default()
        });
        assert_eq!(f.timeout, want);
    }
}

#[test]
fn weighted_clusters() {
    let cw = |name: &str, w: Option<u32>| ClusterWeight {
        name: name.into(),
        weight: w.map(u32v),
        ..ClusterWeight::default()
    };
    #[allow(deprecated)]
    let f = forward(PbAction {
        cluster_specifier: Some(ClusterSpecifier::WeightedClusters(PbWeighted {
            clusters: vec![
                ClusterWeight {
                    request_headers_to_add: vec![hvo("x-v", "1", 0)],
                    ..cw("a", Some(90))
                },
                cw("b", Some(10)),
                cw("c", None),
            ],
            total_weight: Some(u32v(7)),
            ..PbWeighted::default()
        })),
        ..PbAction::default()
    });
    let got: Vec<(&str, u32)> = f
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight))
        .collect();
    assert_eq!(got, vec![("a", 90), ("b", 10), ("c", 0)]);
    assert_eq!(f.clusters[0].request_headers.add.len(), 1);

    let zero = PbAction {
        cluster_specifier: Some(ClusterSpecifier::WeightedClusters(PbWeighted {
            clusters: vec![cw("a", Some(0))],
            ..PbWeighted::default()
        })),
        ..PbAction::default()
    };
    let e = convert(route::Action::Route(zero)).unwrap_err();
    assert!(e.to_string().contains("sum to 0"), "{e}");

    let header = PbAction {
        cluster_specifier: Some(ClusterSpecifier::ClusterHeader("x-cluster".into())),
        ..PbAction::default()
    };
    assert!(
        convert(route::Action::Route(header))
            .unwrap_err()
            .is_unsupported()
    );
}

#[test]
fn rewrites() {
    let f = forward(PbAction {
        cluster_specifier: to("c"),
        prefix_rewrite: "/v2".into(),
        host_rewrite_specifier: Some(HostRewriteSpecifier::HostRewriteLiteral(
            "new.example".into(),
        )),
        ..PbAction::default()
    });
    assert_eq!(f.prefix_rewrite.as_deref(), Some("/v2"));
    assert_eq!(f.host_rewrite.as_deref(), Some("new.example"));

    let f = forward(PbAction {
        cluster_specifier: to("c"),
        regex_rewrite: Some(RegexMatchAndSubstitute {
            pattern: Some(re("^/svc/([^/]+)/(.*)$")),
            substitution: r"/\2/\1/$\\".into(),
        }),
        ..PbAction::default()
    });
    let rr = f.regex_rewrite.unwrap();
    assert_eq!(rr.substitution, r"/${2}/${1}/$$\");
    assert_eq!(
        rr.pattern
            .compiled
            .replace_all("/svc/a/b/c", rr.substitution.as_str()),
        r"/b/c/a/$\"
    );

    let bad = |substitution: &str| PbAction {
        cluster_specifier: to("c"),
        regex_rewrite: Some(RegexMatchAndSubstitute {
            pattern: Some(re("(a)")),
            substitution: substitution.into(),
        }),
        ..PbAction::default()
    };
    for s in [r"\2", r"\x", "\\"] {
        let e = convert(route::Action::Route(bad(s))).unwrap_err();
        assert!(
            e.to_string().contains("regex_rewrite.substitution"),
            "{s}: {e}"
        );
    }
    let both = PbAction {
        prefix_rewrite: "/x".into(),
        ..bad(r"\1")
    };
    assert!(convert(route::Action::Route(both)).is_err());
    let auto = PbAction {
        cluster_specifier: to("c"),
        host_rewrite_specifier: Some(HostRewriteSpecifier::AutoHostRewrite(pbuf::BoolValue {
            value: true,
        })),
        ..PbAction::default()
    };
    assert!(
        convert(route::Action::Route(auto))
            .unwrap_err()
            .is_unsupported()
    );
}

#[test]
fn empty_prefix_with_rewrite_keeps_its_prefix() {
    let mut r = one_route(path(PathSpecifier::Prefix(String::new())));
    r.action = Some(route::Action::Route(PbAction {
        cluster_specifier: to("c"),
        prefix_rewrite: "/v2/".into(),
        ..PbAction::default()
    }));
    let t = route_table(&table_of(vec![r])).unwrap();
    assert_eq!(
        t.virtual_hosts[0].routes[0].matcher.path,
        PathMatch::Prefix(String::new())
    );
}

#[test]
fn retry_policies() {
    let f = forward(PbAction {
        cluster_specifier: to("c"),
        retry_policy: Some(PbRetry {
            retry_on: "connect-failure, reset,retriable-status-codes,unknown-thing".into(),
            retriable_status_codes: vec![503, 409],
            ..PbRetry::default()
        }),
        ..PbAction::default()
    });
    let r = f.retry.unwrap();
    assert_eq!(
        r.on,
        RetryOn {
            connect_failure: true,
            reset: true,
            retriable_status_codes: true,
            ..RetryOn::default()
        }
    );
    assert_eq!(r.num_retries, 1);
    assert_eq!(r.per_try_timeout, None);
    assert_eq!(r.retriable_status_codes, vec![503, 409]);
    assert_eq!(
        (r.backoff_base, r.backoff_max),
        (Duration::from_millis(25), Duration::from_millis(250))
    );

    let f = forward(PbAction {
        cluster_specifier: to("c"),
        retry_policy: Some(PbRetry {
            retry_on: "5xx,gateway-error,refused-stream".into(),
            num_retries: Some(u32v(3)),
            per_try_timeout: Some(millis(300)),
            retry_back_off: Some(RetryBackOff {
                base_interval: Some(millis(100)),
                max_interval: None,
            }),
            ..PbRetry::default()
        }),
        ..PbAction::default()
    });
    let r = f.retry.unwrap();
    assert!(r.on.server_error && r.on.gateway_error && r.on.refused_stream);
    assert_eq!(r.num_retries, 3);
    assert_eq!(r.per_try_timeout, Some(Duration::from_millis(300)));
    assert_eq!(r.backoff_max, Duration::from_secs(1));

    let bad = |b: RetryBackOff| PbAction {
        cluster_specifier: to("c"),
        retry_policy: Some(PbRetry {
            retry_back_off: Some(b),
            ..PbRetry::default()
        }),
        ..PbAction::default()
    };
    for b in [
        RetryBackOff {
            base_interval: Some(millis(100)),
            max_interval: Some(millis(50)),
        },
        RetryBackOff {
            base_interval: Some(secs(0)),
            max_interval: None,
        },
    ] {
        assert!(convert(route::Action::Route(bad(b))).is_err());
    }
    let code = PbAction {
        cluster_specifier: to("c"),
        retry_policy: Some(PbRetry {
            retriable_status_codes: vec![70_000],
            ..PbRetry::default()
        }),
        ..PbAction::default()
    };
    assert!(convert(route::Action::Route(code)).is_err());
}

#[test]
fn hash_policies() {
    let h = |spec: PolicySpecifier, terminal: bool| PbHash {
        terminal,
        policy_specifier: Some(spec),
    };
    let f = forward(PbAction {
        cluster_specifier: to("c"),
        hash_policy: vec![
            h(
                PolicySpecifier::Header(Header {
                    header_name: "X-User".into(),
                    ..Header::default()
                }),
                false,
            ),
            h(
                PolicySpecifier::Cookie(Cookie {
                    name: "session".into(),
                    ttl: Some(secs(3600)),
                    path: "/".into(),
                    ..Cookie::default()
                }),
                true,
            ),
            h(
                PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true }),
                false,
            ),
            h(
                PolicySpecifier::QueryParameter(QueryParameter { name: "u".into() }),
                false,
            ),
        ],
        ..PbAction::default()
    });
    assert_eq!(
        f.hash_policy,
        vec![
            HashPolicy::Header {
                name: "x-user".into(),
                terminal: false
            },
            HashPolicy::Cookie {
                name: "session".into(),
                ttl: Some(Duration::from_secs(3600)),
                path: Some("/".into()),
                terminal: true
            },
            HashPolicy::SourceIp { terminal: false },
            HashPolicy::QueryParameter {
                name: "u".into(),
                terminal: false
            },
        ]
    );
    let fs = PbAction {
        cluster_specifier: to("c"),
        hash_policy: vec![h(PolicySpecifier::FilterState(Default::default()), false)],
        ..PbAction::default()
    };
    assert!(
        convert(route::Action::Route(fs))
            .unwrap_err()
            .is_unsupported()
    );
}

#[test]
fn mirrors() {
    let m = |cluster: &str, fraction: Option<(u32, i32)>| RequestMirrorPolicy {
        cluster: cluster.into(),
        runtime_fraction: fraction.map(|(numerator, denominator)| RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator,
                denominator,
            }),
            ..RuntimeFractionalPercent::default()
        }),
        ..RequestMirrorPolicy::default()
    };
    let f = forward(PbAction {
        cluster_specifier: to("c"),
        request_mirror_policies: vec![
            m("all", None),
            m("half", Some((50, 0))),
            m("tiny", Some((25, 1))),
            m("capped", Some((3_000_000, 2))),
        ],
        ..PbAction::default()
    });
    let got: Vec<(&str, u32)> = f
        .mirrors
        .iter()
        .map(|m| (m.cluster.as_str(), m.share.per_million))
        .collect();
    assert_eq!(
        got,
        vec![
            ("all", 1_000_000),
            ("half", 500_000),
            ("tiny", 2_500),
            ("capped", 1_000_000)
        ]
    );
}

fn redirect(r: RedirectAction) -> Redirect {
    match convert(route::Action::Redirect(r)).unwrap().action {
        RouteAction::Redirect(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn redirects() {
    let r = redirect(RedirectAction::default());
    assert_eq!(r.status, http::StatusCode::MOVED_PERMANENTLY);
    assert_eq!((r.scheme, r.host, r.port, r.path), (None, None, None, None));

    let r = redirect(RedirectAction {
        host_redirect: "b.example".into(),
        port_redirect: 8443,
        response_code: 3,
        strip_query: true,
        scheme_rewrite_specifier: Some(SchemeRewriteSpecifier::HttpsRedirect(true)),
        path_rewrite_specifier: Some(PathRewriteSpecifier::PrefixRewrite("/new".into())),
    });
    assert_eq!(r.scheme.as_deref(), Some("https"));
    assert_eq!(r.host.as_deref(), Some("b.example"));
    assert_eq!(r.port, Some(8443));
    assert_eq!(r.prefix_rewrite.as_deref(), Some("/new"));
    assert!(r.strip_query);
    assert_eq!(r.status, http::StatusCode::TEMPORARY_REDIRECT);

    let r = redirect(RedirectAction {
        response_code: 1,
        scheme_rewrite_specifier: Some(SchemeRewriteSpecifier::SchemeRedirect("HTTP".into())),
        path_rewrite_specifier: Some(PathRewriteSpecifier::PathRedirect("/x?y=1".into())),
        ..RedirectAction::default()
    });
    assert_eq!(r.scheme.as_deref(), Some("http"));
    assert_eq!(r.path.as_deref(), Some("/x?y=1"));
    assert_eq!(r.status, http::StatusCode::FOUND);

    for bad in [
        RedirectAction {
            response_code: 9,
            ..RedirectAction::default()
        },
        RedirectAction {
            port_redirect: 70_000,
            ..RedirectAction::default()
        },
    ] {
        assert!(convert(route::Action::Redirect(bad)).is_err());
    }
}

#[test]
fn direct_responses() {
    let d = |status: u32, body: Option<data_source::Specifier>| {
        convert(route::Action::DirectResponse(DirectResponseAction {
            status,
            body: body.map(|s| DataSource {
                specifier: Some(s),
                ..DataSource::default()
            }),
            ..DirectResponseAction::default()
        }))
        .map(|r| r.action)
    };
    assert_eq!(
        d(500, None).unwrap(),
        RouteAction::Direct {
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            body: bytes::Bytes::new()
        }
    );
    assert_eq!(
        d(200, Some(data_source::Specifier::InlineString("hi".into()))).unwrap(),
        RouteAction::Direct {
            status: http::StatusCode::OK,
            body: bytes::Bytes::from_static(b"hi")
        }
    );
    assert_eq!(
        d(404, Some(data_source::Specifier::InlineBytes(vec![0, 1]))).unwrap(),
        RouteAction::Direct {
            status: http::StatusCode::NOT_FOUND,
            body: bytes::Bytes::from_static(&[0, 1])
        }
    );
    assert!(d(100, None).is_err());
    assert!(d(600, None).is_err());
    assert!(
        d(
            200,
            Some(data_source::Specifier::Filename("/etc/passwd".into()))
        )
        .unwrap_err()
        .is_unsupported()
    );
}

fn headers(add: Vec<HeaderValueOption>, remove: Vec<&str>) -> Result<HeaderChanges, String> {
    let mut r = one_route(path(PathSpecifier::Prefix("/".into())));
    r.request_headers_to_add = add;
    r.request_headers_to_remove = remove.into_iter().map(String::from).collect();
    route_table(&table_of(vec![r]))
        .map(|t| t.virtual_hosts[0].routes[0].request_headers.clone())
        .map_err(|e| {
            let (field, kind) = where_(&e);
            format!("{kind} {field}")
        })
}

#[test]
fn header_options() {
    #[allow(deprecated)]
    let legacy = |append: bool| HeaderValueOption {
        append: Some(pbuf::BoolValue { value: append }),
        ..hvo("x-legacy", "v", 0)
    };
    let got = headers(
        vec![
            hvo("X-Append", "a", 0),
            hvo("x-set", "s", 2),
            legacy(false),
            legacy(true),
            hvo("x-empty", "", 0),
            HeaderValueOption {
                keep_empty_value: true,
                ..hvo("x-kept", "", 2)
            },
            hvo("x-pct", "100%%", 2),
        ],
        vec!["X-Gone"],
    )
    .unwrap();
    let adds: Vec<(&str, &str, bool)> = got
        .add
        .iter()
        .map(|(n, v, a)| (n.as_str(), v.to_str().unwrap(), *a))
        .collect();
    assert_eq!(
        adds,
        vec![
            ("x-append", "a", true),
            ("x-set", "s", false),
            ("x-legacy", "v", false),
            ("x-legacy", "v", true),
            ("x-kept", "", false),
            ("x-pct", "100%", false),
        ]
    );
    assert_eq!(got.remove, vec![http::HeaderName::from_static("x-gone")]);

    let cases = [
        (hvo("x", "v", 1), "unsupported", "append_action"),
        (hvo("x", "v", 3), "unsupported", "append_action"),
        (hvo("x", "v", 7), "invalid", "append_action"),
        (hvo(":path", "/", 0), "invalid", "header.key"),
        (hvo("host", "a", 0), "invalid", "header.key"),
        (hvo("bad name", "a", 0), "invalid", "header.key"),
        (
            hvo("x", "%DOWNSTREAM_REMOTE_ADDRESS%", 0),
            "unsupported",
            "header.value",
        ),
        (hvo("x", "a\nb", 0), "invalid", "header.value"),
    ];
    for (o, kind, field) in cases {
        let e = headers(vec![o.clone()], vec![]).unwrap_err();
        let want = format!("routes[\"r\"].request_headers_to_add[0].{field}");
        assert!(e.starts_with(kind) && e.ends_with(&want), "{o:?}: {e}");
    }
    assert!(headers(vec![], vec![":authority"]).is_err());
}
