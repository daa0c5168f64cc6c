#![allow(clippy::unwrap_used)]

use prost::Message;
use xds::pb::envoy::config::listener::v3::{Listener, filter};
use xds::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost, route};
use xds::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use xds::pb::envoy::extensions::filters::http::fault::v3::{HttpFault, fault_abort::ErrorType};
use xds::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_filter,
};
use xds::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use xds::pb::google::protobuf::Any;
use xds::{Snapshot, type_url};

use super::{FAULT_FILTER, RATE_LIMIT_FILTER, RATE_LIMIT_STAT_PREFIX};
use crate::translate::testing::{app_with_waypoint, decode, run};

/// Namespace `app`: Services `api` and `other` (port 80) behind waypoint `wp`, a Gateway-level
/// DENY policy, then `rest`.
fn app(rest: &str) -> String {
    app_with_waypoint(&format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-admin, namespace: app}}
spec:
  targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: wp}}]
  action: DENY
  rules: [{{to: [{{operation: {{paths: ["/admin*"]}}}}]}}]
---
{rest}"#
    ))
}

const EXTENSIONS: &str = r#"
apiVersion: meshctl.dev/v1alpha1
kind: FaultInjection
metadata: {name: slow-and-flaky, namespace: app}
spec:
  delay: {fixedDelay: 200ms}
  abort: {httpStatus: 503, percentage: {value: 20}}
---
apiVersion: meshctl.dev/v1alpha1
kind: FaultInjection
metadata: {name: grpc-unavailable, namespace: app}
spec:
  abort: {grpcStatus: UNAVAILABLE, percentage: {value: 0.1}}
---
apiVersion: meshctl.dev/v1alpha1
kind: LocalRateLimit
metadata: {name: strict, namespace: app}
spec:
  tokenBucket: {maxTokens: 100, tokensPerFill: 10, fillInterval: 100ms}
  status: 503
---
apiVersion: meshctl.dev/v1alpha1
kind: LocalRateLimit
metadata: {name: per-service, namespace: app}
spec:
  targetRefs: [{kind: Service, name: api}]
  tokenBucket: {maxTokens: 5, fillInterval: 1s}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{kind: Service, name: api}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /a}}, {path: {type: PathPrefix, value: /b}}]
    filters:
    - {type: ExtensionRef, extensionRef: {group: meshctl.dev, kind: LocalRateLimit, name: strict}}
    - {type: ExtensionRef, extensionRef: {group: meshctl.dev, kind: FaultInjection, name: slow-and-flaky}}
    backendRefs: [{name: api, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /grpc}}]
    filters: [{type: ExtensionRef, extensionRef: {group: meshctl.dev, kind: FaultInjection, name: grpc-unavailable}}]
    backendRefs: [{name: api, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /gone}}]
    filters: [{type: ExtensionRef, extensionRef: {group: meshctl.dev, kind: FaultInjection, name: nowhere}}]
    backendRefs: [{name: api, port: 80}]
"#;

fn waypoint(yaml: &str) -> Snapshot {
    run(yaml).waypoints[&("app".to_owned(), "wp".to_owned())].clone()
}

fn hcm(snap: &Snapshot) -> HttpConnectionManager {
    let l: Listener = decode(snap, type_url::LISTENER, "0.0.0.0_80");
    let Some(filter::ConfigType::TypedConfig(a)) = &l.filter_chains[0].filters[0].config_type
    else {
        panic!("no HCM")
    };
    HttpConnectionManager::decode(a.value.as_slice()).unwrap()
}

fn virtual_host(snap: &Snapshot, service: &str) -> VirtualHost {
    let rc: RouteConfiguration = decode(snap, type_url::ROUTE, "80");
    rc.virtual_hosts
        .into_iter()
        .find(|v| v.name == format!("{service}.app.svc.cluster.local:80"))
        .unwrap()
}

fn route<'v>(vh: &'v VirtualHost, name: &str) -> &'v Route {
    vh.routes.iter().find(|r| r.name == name).unwrap()
}

fn fault(a: &Any) -> HttpFault {
    assert_eq!(
        a.type_url,
        "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
    );
    HttpFault::decode(a.value.as_slice()).unwrap()
}

fn rate_limit(a: &Any) -> LocalRateLimit {
    assert_eq!(
        a.type_url,
        "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
    );
    LocalRateLimit::decode(a.value.as_slice()).unwrap()
}

fn millionths(n: u32) -> Option<FractionalPercent> {
    Some(FractionalPercent {
        numerator: n,
        denominator: DenominatorType::Million as i32,
    })
}

#[test]
fn listener_filters_are_rbac_then_rate_limit_then_fault_then_router() {
    let hcm = hcm(&waypoint(&app(EXTENSIONS)));
    let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "istio.rbac.deny",
            RATE_LIMIT_FILTER,
            FAULT_FILTER,
            "envoy.filters.http.router"
        ]
    );
    let config = |i: usize| match &hcm.http_filters[i].config_type {
        Some(http_filter::ConfigType::TypedConfig(a)) => a.clone(),
        other => panic!("{other:?}"),
    };
    // At listener level: a rate limit without bucket and a fault without faults (pass-through).
    assert_eq!(
        rate_limit(&config(1)),
        LocalRateLimit {
            stat_prefix: RATE_LIMIT_STAT_PREFIX.into(),
            ..LocalRateLimit::default()
        }
    );
    assert_eq!(fault(&config(2)), HttpFault::default());
}

#[test]
fn listeners_without_extensions_keep_only_rbac_and_router() {
    let hcm = hcm(&waypoint(&app("")));
    let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["istio.rbac.deny", "envoy.filters.http.router"]);
    // Only a Service-level rate limit: the rate limit filter, not the fault filter.
    let per_service = app(EXTENSIONS.split("---\napiVersion: gateway").next().unwrap());
    let hcm = self::hcm(&waypoint(&per_service));
    let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "istio.rbac.deny",
            RATE_LIMIT_FILTER,
            "envoy.filters.http.router"
        ]
    );
}

#[test]
fn every_route_of_a_rule_gets_its_fault_and_rate_limit() {
    let vh = virtual_host(&waypoint(&app(EXTENSIONS)), "api");
    for name in ["app.r.0.0", "app.r.0.1"] {
        let r = route(&vh, name);
        let f = fault(&r.typed_per_filter_config[FAULT_FILTER]);
        let delay = f.delay.unwrap();
        assert_eq!(delay.percentage, millionths(1_000_000), "default: 100 %");
        let Some(FaultDelaySecifier::FixedDelay(d)) = delay.fault_delay_secifier else {
            panic!("{delay:?}")
        };
        assert_eq!((d.seconds, d.nanos), (0, 200_000_000));
        let abort = f.abort.unwrap();
        assert_eq!(abort.error_type, Some(ErrorType::HttpStatus(503)));
        assert_eq!(abort.percentage, millionths(200_000));

        let l = rate_limit(&r.typed_per_filter_config[RATE_LIMIT_FILTER]);
        assert_eq!(l.stat_prefix, RATE_LIMIT_STAT_PREFIX);
        let b = l.token_bucket.unwrap();
        assert_eq!(
            (
                b.max_tokens,
                b.tokens_per_fill.unwrap().value,
                b.fill_interval.unwrap().nanos
            ),
            (100, 10, 100_000_000)
        );
        for (p, key) in [
            (l.filter_enabled, "local_rate_limit_enabled"),
            (l.filter_enforced, "local_rate_limit_enforced"),
        ] {
            let p = p.unwrap();
            assert_eq!(p.runtime_key, key);
            assert_eq!(
                p.default_value,
                Some(FractionalPercent {
                    numerator: 100,
                    denominator: DenominatorType::Hundred as i32
                })
            );
        }
        assert_eq!(l.enable_x_ratelimit_headers, 1, "DRAFT_VERSION_03");
        assert_eq!(l.status.unwrap().code, 503);
    }
    let grpc = fault(&route(&vh, "app.r.1.0").typed_per_filter_config[FAULT_FILTER]);
    assert!(grpc.delay.is_none());
    let abort = grpc.abort.unwrap();
    assert_eq!(abort.error_type, Some(ErrorType::GrpcStatus(14)));
    assert_eq!(abort.percentage, millionths(1_000));
    assert!(
        route(&vh, "default").typed_per_filter_config.is_empty(),
        "the default route has no rule"
    );
}

#[test]
fn a_service_rate_limit_goes_on_its_virtual_host_only() {
    let snap = waypoint(&app(EXTENSIONS));
    let api = virtual_host(&snap, "api");
    let l = rate_limit(&api.typed_per_filter_config[RATE_LIMIT_FILTER]);
    let b = l.token_bucket.unwrap();
    assert_eq!(
        (
            b.max_tokens,
            b.tokens_per_fill.unwrap().value,
            b.fill_interval.unwrap().seconds
        ),
        (5, 1, 1),
        "tokensPerFill defaults to 1"
    );
    assert!(l.status.is_none(), "429 is Envoy's default");
    assert!(
        virtual_host(&snap, "other")
            .typed_per_filter_config
            .is_empty()
    );
}

#[test]
fn a_missing_extension_makes_the_rule_answer_500() {
    let t = run(&app(EXTENSIONS));
    let vh = virtual_host(&t.waypoints[&("app".to_owned(), "wp".to_owned())], "api");
    let direct = |r: &Route| match &r.action {
        Some(route::Action::DirectResponse(d)) => d.status,
        other => panic!("{other:?}"),
    };
    assert_eq!(direct(route(&vh, "app.r.2.0")), 500);
    let rc: RouteConfiguration = decode(
        &t.proxyless,
        type_url::ROUTE,
        "api.app.svc.cluster.local:80",
    );
    let routes = &rc.virtual_hosts[0].routes;
    assert_eq!(
        direct(routes.iter().find(|r| r.name == "app.r.2.0").unwrap()),
        500
    );
    assert!(
        routes.iter().all(|r| r.typed_per_filter_config.is_empty()),
        "proxyless clients get no per-filter configs"
    );
}

#[test]
fn per_filter_configs_encode_the_same_every_time() {
    let yaml = app(EXTENSIONS);
    let first = run(&yaml).waypoints[&("app".to_owned(), "wp".to_owned())].clone();
    for _ in 0..5 {
        let again = &run(&yaml).waypoints[&("app".to_owned(), "wp".to_owned())];
        assert_eq!(
            again.get(type_url::ROUTE, "80").unwrap().body,
            first.get(type_url::ROUTE, "80").unwrap().body
        );
    }
}
