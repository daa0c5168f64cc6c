//! Listeners: the control plane's HCM listener, tcp_proxy, and what is rejected.

use xds::pb::envoy::config::core::v3::{AggregatedConfigSource, ConfigSource, config_source};
use xds::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener as PbListener, filter,
};
use xds::pb::envoy::config::route::v3::RouteConfiguration;
use xds::pb::envoy::extensions::filters::http::fault::v3::{HttpFault, fault_abort::ErrorType};
use xds::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use xds::pb::envoy::extensions::filters::http::rbac::v3::Rbac;
use xds::pb::envoy::extensions::filters::http::router::v3::Router;
use xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier, http_filter,
};
use xds::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use xds::pb::google::protobuf as pbuf;

use super::fault::{abort, delay, pct};
use super::rate_limit::istio_style;
use super::{any, secs, socket, where_};
use crate::model::from_proto::listener;
use crate::model::{AbortStatus, HttpFilter as Filt, ListenerKind, Share};

fn http_filter(name: &str, config: pbuf::Any) -> HttpFilter {
    HttpFilter {
        name: name.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..HttpFilter::default()
    }
}

fn router() -> HttpFilter {
    http_filter("envoy.filters.http.router", any(&Router::default()))
}

fn hcm(filters: Vec<HttpFilter>) -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: "waypoint_8080".into(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ConfigSource {
                resource_api_version: 2,
                config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                ..ConfigSource::default()
            }),
            route_config_name: "8080".into(),
        })),
        http_filters: filters,
        ..HttpConnectionManager::default()
    }
}

fn with_network_filter(config: pbuf::Any) -> PbListener {
    PbListener {
        name: "0.0.0.0_8080".into(),
        address: Some(socket("0.0.0.0", 8080)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(config)),
            }],
            ..FilterChain::default()
        }],
        ..PbListener::default()
    }
}

fn rbac_filter() -> Rbac {
    Rbac {
        rules: Some(Default::default()),
        shadow_rules_stat_prefix: "istio_dry_run_deny_".into(),
        ..Rbac::default()
    }
}

#[test]
fn control_plane_listener_converts() {
    let l = with_network_filter(any(&hcm(vec![
        http_filter("istio.rbac.deny", any(&rbac_filter())),
        http_filter("istio.rbac.allow", any(&Rbac::default())),
        router(),
    ])));
    let got = listener(&l).unwrap();
    assert_eq!(got.name, "0.0.0.0_8080");
    assert_eq!(got.address, "0.0.0.0:8080".parse().unwrap());
    let ListenerKind::Http {
        stat_prefix,
        route_config,
        filters,
    } = &got.kind
    else {
        panic!("{got:?}")
    };
    assert_eq!(stat_prefix, "waypoint_8080");
    assert_eq!(route_config, "8080");
    let names: Vec<&str> = filters.iter().map(Filt::name).collect();
    assert_eq!(names, ["istio.rbac.deny", "istio.rbac.allow"]);
    let Filt::Rbac { rbac, .. } = &filters[0] else {
        panic!("{filters:?}")
    };
    assert!(rbac.rules.is_some());
    assert_eq!(rbac.shadow_rules_stat_prefix, "istio_dry_run_deny_");
}

#[test]
fn http_filters() {
    let unknown = http_filter("istio.stats", any(&pbuf::Struct::default()));
    let optional = HttpFilter {
        is_optional: true,
        ..unknown.clone()
    };
    let disabled_rbac = HttpFilter {
        disabled: true,
        ..http_filter("rbac", any(&rbac_filter()))
    };
    let bare_router = HttpFilter {
        name: "envoy.filters.http.router".into(),
        ..HttpFilter::default()
    };
    type Case<'a> = (Vec<HttpFilter>, Result<usize, (&'a str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        (vec![router()], Ok(0)),
        (vec![bare_router], Ok(0)),
        (vec![optional, disabled_rbac, router()], Ok(1)),
        (
            vec![unknown, router()],
            Err(("http_filters[\"istio.stats\"].typed_config", "unsupported")),
        ),
        (vec![], Err(("http_filters", "invalid"))),
        (
            vec![router(), http_filter("rbac", any(&Rbac::default()))],
            Err(("http_filters[\"envoy.filters.http.router\"]", "invalid")),
        ),
        (
            vec![
                http_filter(
                    "rbac",
                    any(&Rbac {
                        matcher: Some(Default::default()),
                        ..Rbac::default()
                    }),
                ),
                router(),
            ],
            Err(("http_filters[\"rbac\"].typed_config.matcher", "unsupported")),
        ),
    ];
    let prefix =
        "filter_chains[0].filters[\"envoy.filters.network.http_connection_manager\"].typed_config.";
    for (filters, want) in cases {
        let got = listener(&with_network_filter(any(&hcm(filters.clone()))));
        match (got, want) {
            (Ok(l), Ok(n)) => {
                let ListenerKind::Http { filters: f, .. } = &l.kind else {
                    panic!()
                };
                assert_eq!(f.len(), n, "{filters:?}");
                if n == 1 {
                    let Filt::Rbac { rbac, .. } = &f[0] else {
                        panic!("{f:?}")
                    };
                    assert!(rbac.is_disabled());
                }
            }
            (Err(e), Err((field, kind))) => {
                assert_eq!(where_(&e), (format!("{prefix}{field}"), kind), "{e}");
            }
            (got, want) => panic!("{filters:?}: got {got:?}, want {want:?}"),
        }
    }
}

fn filters_of(filters: Vec<HttpFilter>) -> Vec<Filt> {
    let l = listener(&with_network_filter(any(&hcm(filters)))).unwrap();
    let ListenerKind::Http { filters, .. } = l.kind else {
        panic!("{l:?}")
    };
    filters
}

#[test]
fn fault_and_rate_limit_filters_keep_their_order() {
    use xds::pb::envoy::r#type::v3::fractional_percent::DenominatorType as D;
    let injecting = HttpFault {
        delay: Some(delay(secs(1), Some(pct(5, D::Hundred)))),
        abort: Some(abort(ErrorType::HttpStatus(418), None)),
        ..HttpFault::default()
    };
    let filters = filters_of(vec![
        http_filter("envoy.filters.http.fault", any(&HttpFault::default())),
        http_filter("istio.rbac.deny", any(&rbac_filter())),
        http_filter("local_ratelimit", any(&istio_style(10))),
        http_filter("fault2", any(&injecting)),
        router(),
    ]);
    let names: Vec<&str> = filters.iter().map(Filt::name).collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.fault",
            "istio.rbac.deny",
            "local_ratelimit",
            "fault2"
        ]
    );
    // An empty HTTPFault (Istio's form: routes carry the faults) injects nothing.
    assert!(matches!(&filters[0], Filt::Fault { fault: None, .. }));
    assert!(matches!(&filters[1], Filt::Rbac { .. }));
    let Filt::LocalRateLimit { limit, .. } = &filters[2] else {
        panic!("{filters:?}")
    };
    assert_eq!(limit.bucket.as_ref().unwrap().max_tokens, 10);
    assert_eq!(limit.enabled, Share::ALL);
    let Filt::Fault { fault: Some(f), .. } = &filters[3] else {
        panic!("{filters:?}")
    };
    assert_eq!(f.delay.unwrap().share.per_million, 50_000);
    let a = f.abort.unwrap();
    assert_eq!(a.status, AbortStatus::Http(http::StatusCode::IM_A_TEAPOT));
    assert_eq!(a.share, Share::NONE);
}

#[test]
fn disabled_fault_and_rate_limit_filters_do_nothing() {
    let disabled = |name: &str, config: pbuf::Any| HttpFilter {
        disabled: true,
        ..http_filter(name, config)
    };
    let injecting = HttpFault {
        delay: Some(delay(secs(1), None)),
        ..HttpFault::default()
    };
    // Even a config the waypoint would refuse: a disabled filter only names the filter.
    let unsupported = LocalRateLimit {
        stage: 3,
        ..istio_style(1)
    };
    let filters = filters_of(vec![
        disabled("fault", any(&injecting)),
        disabled("rl", any(&unsupported)),
        router(),
    ]);
    assert!(matches!(&filters[0], Filt::Fault { fault: None, .. }));
    let Filt::LocalRateLimit { limit, .. } = &filters[1] else {
        panic!("{filters:?}")
    };
    assert!(limit.bucket.is_none());
    assert_eq!(limit.stat_prefix, "http_local_rate_limiter");
    assert_eq!((limit.enabled, limit.enforced), (Share::NONE, Share::NONE));
}

#[test]
fn fault_and_rate_limit_errors_name_the_filter() {
    let prefix = "filter_chains[0].filters[\"envoy.filters.network.http_connection_manager\"].typed_config.http_filters";
    let bad_fault = HttpFault {
        abort: Some(abort(ErrorType::HttpStatus(600), None)),
        ..HttpFault::default()
    };
    let bad_limit = LocalRateLimit {
        stat_prefix: String::new(),
        ..istio_style(1)
    };
    let cases = [
        (
            http_filter("fault", any(&bad_fault)),
            "[\"fault\"].typed_config.abort.http_status",
            "invalid",
        ),
        (
            http_filter("rl", any(&bad_limit)),
            "[\"rl\"].typed_config.stat_prefix",
            "missing",
        ),
    ];
    for (f, field, kind) in cases {
        let e = listener(&with_network_filter(any(&hcm(vec![f, router()])))).unwrap_err();
        assert_eq!(where_(&e), (format!("{prefix}{field}"), kind), "{e}");
    }
}

#[test]
fn tcp_proxy_listener() {
    let tcp = TcpProxy {
        stat_prefix: "tcp".into(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(
            "outbound|9000||db".into(),
        )),
        ..TcpProxy::default()
    };
    let got = listener(&with_network_filter(any(&tcp))).unwrap();
    assert_eq!(
        got.kind,
        ListenerKind::Tcp {
            stat_prefix: "tcp".into(),
            cluster: "outbound|9000||db".into()
        }
    );
}

#[test]
fn rejected_listeners() {
    let inline = HttpConnectionManager {
        route_specifier: Some(RouteSpecifier::RouteConfig(RouteConfiguration::default())),
        ..hcm(vec![router()])
    };
    let mut two_chains = with_network_filter(any(&hcm(vec![router()])));
    two_chains
        .filter_chains
        .push(two_chains.filter_chains[0].clone());
    let mut matched = with_network_filter(any(&hcm(vec![router()])));
    matched.filter_chains[0].filter_chain_match = Some(FilterChainMatch {
        server_names: vec!["a".into()],
        ..FilterChainMatch::default()
    });
    let mut no_address = with_network_filter(any(&hcm(vec![router()])));
    no_address.address = None;
    let mut hostname = with_network_filter(any(&hcm(vec![router()])));
    hostname.address = Some(socket("localhost", 80));
    let mut two_filters = with_network_filter(any(&hcm(vec![router()])));
    let f = two_filters.filter_chains[0].filters[0].clone();
    two_filters.filter_chains[0].filters.insert(0, f);
    let cases: Vec<(PbListener, &str, &str)> = vec![
        (
            with_network_filter(any(&inline)),
            "filter_chains[0].filters[\"envoy.filters.network.http_connection_manager\"].typed_config.route_config",
            "unsupported",
        ),
        (two_chains, "filter_chains", "unsupported"),
        (
            matched,
            "filter_chains[0].filter_chain_match",
            "unsupported",
        ),
        (no_address, "address", "missing"),
        (hostname, "address.address", "invalid"),
        (two_filters, "filter_chains[0].filters", "unsupported"),
        (
            with_network_filter(any(&pbuf::Struct::default())),
            "filter_chains[0].filters[\"envoy.filters.network.http_connection_manager\"].typed_config",
            "unsupported",
        ),
    ];
    for (l, field, kind) in cases {
        let e = listener(&l).unwrap_err();
        assert_eq!(where_(&e), (field.to_owned(), kind), "{e}");
        assert!(
            e.to_string().starts_with("Listener \"0.0.0.0_8080\": "),
            "{e}"
        );
    }
}

#[test]
fn default_filter_chain_alone_is_accepted() {
    let mut l = with_network_filter(any(&hcm(vec![router()])));
    l.default_filter_chain = l.filter_chains.pop();
    assert!(listener(&l).is_ok());
}

#[test]
fn garbage_typed_config_is_a_decode_error() {
    let l = with_network_filter(pbuf::Any {
        type_url: "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager".into(),
        value: vec![0xff, 0xff, 0xff],
    });
    let e = listener(&l).unwrap_err();
    assert!(e.to_string().contains("HttpConnectionManager"), "{e}");
}
