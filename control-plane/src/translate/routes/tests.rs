#![allow(clippy::unwrap_used)]

use xds::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration,
    header_matcher::HeaderMatchSpecifier,
    route,
    route_action::{ClusterSpecifier, HostRewriteSpecifier, hash_policy::PolicySpecifier},
    route_match::PathSpecifier,
};
use xds::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use xds::type_url;

use crate::translate::testing::{SHOP, app_with_waypoint, decode, run};

const API: &str = "outbound|80||api.app.svc.cluster.local";
const OTHER: &str = "outbound|80||other.app.svc.cluster.local";

/// Namespace `app` with Services `api` and `other` (port 80) behind waypoint `wp`, plus `routes`.
fn app(routes: &str) -> String {
    app_with_waypoint(routes)
}

fn http_route(rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: app}}\nspec:\n  parentRefs: [{{kind: Service, name: api}}]\n  rules:\n{rules}"
    )
}

/// The waypoint's routes for `api:80` and the proxyless ones.
fn routes(yaml: &str) -> (Vec<Route>, Vec<Route>) {
    let t = run(yaml);
    let wp = &t.waypoints[&("app".to_owned(), "wp".to_owned())];
    let rc: RouteConfiguration = decode(wp, type_url::ROUTE, "80");
    let vh = rc
        .virtual_hosts
        .into_iter()
        .find(|v| v.name == "api.app.svc.cluster.local:80")
        .unwrap();
    let grpc: RouteConfiguration = decode(
        &t.proxyless,
        type_url::ROUTE,
        "api.app.svc.cluster.local:80",
    );
    (vh.routes, grpc.virtual_hosts[0].routes.clone())
}

fn action(r: &Route) -> &RouteAction {
    match &r.action {
        Some(route::Action::Route(a)) => a,
        other => panic!("{}: not a route action: {other:?}", r.name),
    }
}

fn path(r: &Route) -> &PathSpecifier {
    r.r#match.as_ref().unwrap().path_specifier.as_ref().unwrap()
}

fn cluster(r: &Route) -> &str {
    match action(r).cluster_specifier.as_ref().unwrap() {
        ClusterSpecifier::Cluster(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn matches_are_ordered_by_gateway_api_precedence() {
    let yaml = app(&http_route(
        r#"  - matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs: [{name: api, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /a/b}, headers: [{name: x, value: "1"}]}]
    backendRefs: [{name: api, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /a/b}, method: GET}]
    backendRefs: [{name: api, port: 80}]
  - matches: [{path: {type: RegularExpression, value: "/a/.*"}}, {path: {type: Exact, value: /a/b/c}}]
    backendRefs: [{name: api, port: 80}]
  - backendRefs: [{name: other, port: 80}]
"#,
    ));
    let (envoy, grpc) = routes(&yaml);
    let names: Vec<&str> = envoy.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "app.r.3.1",
            "app.r.3.0",
            "app.r.2.0",
            "app.r.1.0",
            "app.r.0.0",
            "app.r.4.0",
            "default"
        ]
    );
    assert_eq!(path(&envoy[0]), &PathSpecifier::Path("/a/b/c".into()));
    assert!(matches!(path(&envoy[1]), PathSpecifier::SafeRegex(r) if r.regex == "/a/.*"));
    assert_eq!(
        path(&envoy[2]),
        &PathSpecifier::PathSeparatedPrefix("/a/b".into())
    );
    assert_eq!(
        path(&grpc[2]),
        &PathSpecifier::Prefix("/a/b/".into()),
        "gRPC has no path_separated_prefix"
    );
    assert_eq!(path(&envoy[5]), &PathSpecifier::Prefix("/".into()));
    assert_eq!(cluster(&envoy[5]), OTHER);
    let headers = &envoy[2].r#match.as_ref().unwrap().headers;
    assert_eq!(headers[0].name, ":method");
    assert_eq!(cluster(envoy.last().unwrap()), API);
}

#[test]
fn shop_split_timeouts_retries_and_hash_policy() {
    let t = run(SHOP);
    let wp = &t.waypoints[&("shop".to_owned(), "waypoint".to_owned())];
    let rc: RouteConfiguration = decode(wp, type_url::ROUTE, "9080");
    let vh = &rc
        .virtual_hosts
        .iter()
        .find(|v| v.name.starts_with("reviews."))
        .unwrap();
    for d in [
        "reviews.shop.svc.cluster.local",
        "reviews.shop.svc.cluster.local:9080",
        "reviews.shop",
        "reviews.shop.svc:9080",
        "reviews",
        "10.96.0.10:9080",
    ] {
        assert!(
            vh.domains.contains(&d.to_owned()),
            "{d} in {:?}",
            vh.domains
        );
    }
    let [canary, split, default] = vh.routes.as_slice() else {
        panic!("{:?}", vh.routes)
    };
    let h = &canary.r#match.as_ref().unwrap().headers[0];
    assert_eq!(h.name, "x-canary");
    assert!(
        matches!(&h.header_match_specifier, Some(HeaderMatchSpecifier::StringMatch(m)) if m.match_pattern == Some(MatchPattern::Exact("true".into())))
    );
    assert_eq!(
        cluster(canary),
        "outbound|9080||reviews-v2.shop.svc.cluster.local"
    );
    let a = action(split);
    let Some(ClusterSpecifier::WeightedClusters(w)) = &a.cluster_specifier else {
        panic!("{a:?}")
    };
    let weights: Vec<(&str, u32)> = w
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.as_ref().unwrap().value))
        .collect();
    assert_eq!(
        weights,
        vec![
            ("outbound|9080||reviews-v1.shop.svc.cluster.local", 90),
            ("outbound|9080||reviews-v2.shop.svc.cluster.local", 10)
        ]
    );
    assert_eq!(a.timeout.as_ref().unwrap().seconds, 3);
    let retry = a.retry_policy.as_ref().unwrap();
    assert_eq!(
        retry.retry_on,
        "connect-failure,reset,retriable-status-codes"
    );
    assert_eq!(retry.retriable_status_codes, vec![503]);
    assert_eq!(retry.num_retries.as_ref().unwrap().value, 3);
    assert_eq!(
        retry
            .retry_back_off
            .as_ref()
            .unwrap()
            .base_interval
            .as_ref()
            .unwrap()
            .nanos,
        100_000_000
    );
    assert!(
        a.hash_policy.is_empty(),
        "reviews-v1 has no consistent hash"
    );
    assert_eq!(
        cluster(default),
        "outbound|9080||reviews.shop.svc.cluster.local"
    );
    assert!(matches!(
        &action(default).hash_policy[0].policy_specifier,
        Some(PolicySpecifier::Header(h)) if h.header_name == "x-user"
    ));
    assert_eq!(
        action(default).timeout.as_ref().unwrap().seconds,
        0,
        "no timeout by default"
    );
}

#[test]
fn filters_become_route_settings() {
    let yaml = app(&http_route(
        r#"  - matches: [{path: {type: PathPrefix, value: /v1}}]
    filters:
    - {type: URLRewrite, urlRewrite: {hostname: internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-A, value: a}], add: [{name: x-b, value: b}], remove: [x-c]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {remove: [server]}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: other, port: 80}, percent: 10}}
    backendRefs: [{name: api, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /strip}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: api, port: 80}]
  - matches: [{path: {type: Exact, value: /full}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /elsewhere}}}]
    backendRefs: [{name: api, port: 80}]
  - matches: [{path: {type: Exact, value: /moved}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: x.example, port: 8443, scheme: https, statusCode: 308}}]
  - matches: [{path: {type: Exact, value: /broken}}]
    backendRefs: [{name: missing, port: 80}, {name: api, port: 81}, {name: api, port: 80, weight: 0}]
"#,
    ));
    let (envoy, _) = routes(&yaml);
    let by_name = |n: &str| envoy.iter().find(|r| r.name == n).unwrap();
    let r = by_name("app.r.0.0");
    let a = action(r);
    assert_eq!(a.prefix_rewrite, "/v2");
    assert_eq!(
        a.host_rewrite_specifier,
        Some(HostRewriteSpecifier::HostRewriteLiteral("internal".into()))
    );
    let set = r.request_headers_to_add[0].header.as_ref().unwrap();
    assert_eq!((set.key.as_str(), set.value.as_str()), ("x-a", "a"));
    assert_eq!(r.request_headers_to_add.len(), 2);
    assert_eq!(r.request_headers_to_remove, vec!["x-c"]);
    assert_eq!(r.response_headers_to_remove, vec!["server"]);
    assert_eq!(a.request_mirror_policies[0].cluster, OTHER);
    assert_eq!(
        a.request_mirror_policies[0]
            .runtime_fraction
            .as_ref()
            .unwrap()
            .default_value
            .as_ref()
            .unwrap()
            .numerator,
        10
    );
    let strip = action(by_name("app.r.1.0")).regex_rewrite.as_ref().unwrap();
    assert_eq!(
        (
            strip.pattern.as_ref().unwrap().regex.as_str(),
            strip.substitution.as_str()
        ),
        ("^/strip/*", "/")
    );
    let full = action(by_name("app.r.2.0")).regex_rewrite.as_ref().unwrap();
    assert_eq!(full.substitution, "/elsewhere");
    match &by_name("app.r.3.0").action {
        Some(route::Action::Redirect(rd)) => {
            assert_eq!(
                (rd.host_redirect.as_str(), rd.port_redirect),
                ("x.example", 8443)
            );
            assert_eq!(rd.response_code, 4, "308 = PERMANENT_REDIRECT");
        }
        other => panic!("{other:?}"),
    }
    match &by_name("app.r.4.0").action {
        Some(route::Action::DirectResponse(d)) => assert_eq!(d.status, 500),
        other => panic!("no backend resolves: {other:?}"),
    }
}

#[test]
fn grpc_method_matches_become_paths() {
    let yaml = app(r#"apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: app}
spec:
  parentRefs: [{kind: Service, name: api, port: 80}]
  rules:
  - matches: [{method: {service: pkg.Svc}}, {method: {service: pkg.Svc, method: Get}}, {method: {method: List}}, {method: {type: RegularExpression, service: "pkg\\..*"}}]
    backendRefs: [{name: other, port: 80}]
"#);
    let (envoy, grpc) = routes(&yaml);
    for rs in [&envoy, &grpc] {
        let paths: Vec<&PathSpecifier> = rs.iter().take(4).map(path).collect();
        assert_eq!(paths[0], &PathSpecifier::Path("/pkg.Svc/Get".into()));
        assert!(matches!(paths[1], PathSpecifier::SafeRegex(r) if r.regex == "/pkg\\..*/[^/]+"));
        assert!(matches!(paths[2], PathSpecifier::SafeRegex(r) if r.regex == "/[^/]+/List"));
        assert_eq!(paths[3], &PathSpecifier::Prefix("/pkg.Svc/".into()));
        assert_eq!(cluster(&rs[0]), OTHER);
    }
}

#[test]
fn routes_attach_by_service_port_and_namespace() {
    let other_port = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: p, namespace: app}\nspec: {parentRefs: [{kind: Service, name: api, port: 8080}], rules: [{backendRefs: [{name: other, port: 80}]}]}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: gw, namespace: app}\nspec: {parentRefs: [{name: wp}], rules: [{backendRefs: [{name: other, port: 80}]}]}\n";
    let (envoy, grpc) = routes(&app(other_port));
    assert_eq!(envoy.len(), 1, "{envoy:?}");
    assert_eq!(grpc.len(), 1);
    assert_eq!(envoy[0].name, "default");
}
