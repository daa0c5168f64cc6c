//! FaultInjection, LocalRateLimit, ExtensionRef filters and the DestinationRule resilience fields.

use super::super::extensions::{GrpcStatus, percent_or_all};
use super::super::*;
use super::parse;

const FI: &str = "apiVersion: meshctl.dev/v1alpha1\nkind: FaultInjection\nmetadata: {name: f, namespace: shop}\n";
const RL: &str = "apiVersion: meshctl.dev/v1alpha1\nkind: LocalRateLimit\nmetadata: {name: l, namespace: shop}\n";
const ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\n";
const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: shop}\n";

fn rule(r: &str) -> String {
    format!("{ROUTE}spec:\n  parentRefs: [{{kind: Service, name: s}}]\n  rules:\n  - {r}\n")
}

fn ext(kind: &str, name: &str) -> String {
    format!(
        "{{type: ExtensionRef, extensionRef: {{group: meshctl.dev, kind: {kind}, name: {name}}}}}"
    )
}

#[test]
fn extension_kinds_parse_and_round_trip() {
    let text = format!(
        "{FI}spec:\n  delay: {{fixedDelay: 200ms, percentage: {{value: 100}}}}\n  abort: {{httpStatus: 503, percentage: {{value: 20}}}}\n---\n\
         {FI}spec: {{abort: {{grpcStatus: UNAVAILABLE}}}}\n---\n\
         {FI}spec: {{abort: {{grpcStatus: 8}}}}\n---\n\
         {FI}spec: {{abort: {{grpcStatus: '4'}}}}\n---\n\
         {RL}spec:\n  targetRefs: [{{kind: Service, name: reviews}}, {{group: '', kind: Service, name: ratings}}]\n  tokenBucket: {{maxTokens: 100, tokensPerFill: 10, fillInterval: 100ms}}\n  status: 503\n---\n\
         {}",
        rule(&format!(
            "filters: [{}, {}]\n    backendRefs: [{{name: s, port: 80}}]",
            ext("FaultInjection", "f"),
            ext("LocalRateLimit", "l")
        ))
    );
    let objs = parse(&text).unwrap();
    let Object::FaultInjection(f) = &objs[0].object else {
        panic!("{:?}", objs[0])
    };
    assert_eq!(objs[0].object.display(), "FaultInjection shop/f");
    let delay = f.spec.delay.as_ref().unwrap();
    assert_eq!(delay.fixed_delay, "200ms");
    let abort = f.spec.abort.as_ref().unwrap();
    assert_eq!(
        (abort.http_status, percent_or_all(abort.percentage)),
        (Some(503), 20.0)
    );
    let codes: Vec<Option<u32>> = objs[1..4]
        .iter()
        .map(|o| match &o.object {
            Object::FaultInjection(f) => {
                f.spec.abort.as_ref().unwrap().grpc_status.as_ref()?.code()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(codes, [Some(14), Some(8), Some(4)]);
    assert_eq!(
        percent_or_all(None),
        100.0,
        "absent percentage: every request"
    );
    let Object::LocalRateLimit(l) = &objs[4].object else {
        panic!("{:?}", objs[4])
    };
    assert_eq!(l.spec.target_refs.len(), 2);
    assert!(l.spec.target_refs.iter().all(|r| r.is_service()));
    assert_eq!(
        (
            l.spec.token_bucket.max_tokens,
            l.spec.token_bucket.tokens_per_fill,
            l.spec.status
        ),
        (100, Some(10), Some(503))
    );
    let Object::HttpRoute(r) = &objs[5].object else {
        panic!()
    };
    let refs: Vec<&str> = r.spec.rules[0]
        .filters
        .iter()
        .map(|f| f.extension_ref.as_ref().unwrap().kind.as_str())
        .collect();
    assert_eq!(refs, ["FaultInjection", "LocalRateLimit"]);
    // Through the document form the CLI sends to the mesh daemon, with the apiVersion.
    for o in &objs {
        let doc = to_document(&o.object);
        let yaml = serde_yaml_ng::to_string(&doc).unwrap();
        let again = parse(&yaml).unwrap();
        assert_eq!(again[0].object, o.object, "{yaml}");
    }
    assert!(matches!(
        serde_json::from_str::<GrpcStatus>("\"UNAVAILABLE\"").unwrap(),
        GrpcStatus::Name(_)
    ));
}

#[test]
fn grpc_routes_take_extension_refs_too() {
    let text = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: g, namespace: shop}}\nspec: {{rules: [{{filters: [{}]}}]}}\n",
        ext("FaultInjection", "f")
    );
    parse(&text).unwrap();
}

#[test]
fn extension_errors_name_the_field() {
    let cases: Vec<(String, &str, &str)> = vec![
        (format!("{FI}spec: {{}}\n"), "spec", "delay, abort or both"),
        (FI.to_owned(), "(object)", "missing field `spec`"),
        (
            format!("{FI}spec: {{delay: {{fixedDelay: 0s}}}}\n"),
            "spec.delay.fixedDelay",
            "at least 1ms",
        ),
        (
            format!("{FI}spec: {{delay: {{fixedDelay: 5x}}}}\n"),
            "spec.delay.fixedDelay",
            "not a duration",
        ),
        (
            format!("{FI}spec: {{delay: {{fixedDelay: 1s, percentage: {{value: 100.5}}}}}}\n"),
            "spec.delay.percentage.value",
            "0-100",
        ),
        (
            format!("{FI}spec: {{delay: {{fixedDelay: 1s, percent: 50}}}}\n"),
            "spec.delay.percent",
            "unknown field `percent`",
        ),
        (
            format!("{FI}spec: {{delay: {{exponentialDelay: 1s}}}}\n"),
            "spec.delay.exponentialDelay",
            "unknown field `exponentialDelay`",
        ),
        (
            format!("{FI}spec: {{abort: {{percentage: {{value: 5}}}}}}\n"),
            "spec.abort",
            "exactly one",
        ),
        (
            format!("{FI}spec: {{abort: {{httpStatus: 503, grpcStatus: INTERNAL}}}}\n"),
            "spec.abort",
            "exactly one",
        ),
        (
            format!("{FI}spec: {{abort: {{httpStatus: 600}}}}\n"),
            "spec.abort.httpStatus",
            "200-599",
        ),
        (
            format!("{FI}spec: {{abort: {{httpStatus: 199}}}}\n"),
            "spec.abort.httpStatus",
            "200-599",
        ),
        (
            format!("{FI}spec: {{abort: {{grpcStatus: Unavailable}}}}\n"),
            "spec.abort.grpcStatus",
            "UNAVAILABLE",
        ),
        (
            format!("{FI}spec: {{abort: {{grpcStatus: OK}}}}\n"),
            "spec.abort.grpcStatus",
            "not a gRPC error status",
        ),
        (
            format!("{FI}spec: {{abort: {{grpcStatus: 17}}}}\n"),
            "spec.abort.grpcStatus",
            "1-16",
        ),
        (
            format!("{FI}spec: {{abort: {{httpStatus: 503, percentage: {{value: -1}}}}}}\n"),
            "spec.abort.percentage.value",
            "0-100",
        ),
        (
            format!("{FI}spec: {{abort: {{http2Error: REFUSED_STREAM}}}}\n"),
            "spec.abort.http2Error",
            "unknown field `http2Error`",
        ),
        (
            format!("{RL}spec: {{}}\n"),
            "spec",
            "missing field `tokenBucket`",
        ),
        (
            format!("{RL}spec: {{tokenBucket: {{maxTokens: 0, fillInterval: 1s}}}}\n"),
            "spec.tokenBucket.maxTokens",
            "at least 1",
        ),
        (
            format!(
                "{RL}spec: {{tokenBucket: {{maxTokens: 1, tokensPerFill: 0, fillInterval: 1s}}}}\n"
            ),
            "spec.tokenBucket.tokensPerFill",
            "at least 1",
        ),
        (
            format!("{RL}spec: {{tokenBucket: {{maxTokens: 1, fillInterval: 49ms}}}}\n"),
            "spec.tokenBucket.fillInterval",
            "50ms",
        ),
        (
            format!("{RL}spec: {{tokenBucket: {{maxTokens: 1}}}}\n"),
            "spec.tokenBucket",
            "missing field `fillInterval`",
        ),
        (
            format!("{RL}spec: {{tokenBucket: {{maxTokens: 1, fillInterval: 1s}}, status: 200}}\n"),
            "spec.status",
            "4xx or 5xx",
        ),
        (
            format!("{RL}spec: {{tokenBucket: {{maxTokens: 1, fillInterval: 1s}}, status: 419}}\n"),
            "spec.status",
            "Envoy knows",
        ),
        (
            format!(
                "{RL}spec: {{targetRefs: [{{kind: Gateway, name: wp}}], tokenBucket: {{maxTokens: 1, fillInterval: 1s}}}}\n"
            ),
            "spec.targetRefs[0].kind",
            "use Service",
        ),
        (
            format!(
                "{RL}spec: {{targetRefs: [{{kind: Service, name: s, namespace: other}}], tokenBucket: {{maxTokens: 1, fillInterval: 1s}}}}\n"
            ),
            "spec.targetRefs[0].namespace",
            "unknown field `namespace`",
        ),
        (
            format!(
                "{RL}spec: {{tokenBucket: {{maxTokens: 1, fillInterval: 1s}}, descriptors: []}}\n"
            ),
            "spec.descriptors",
            "unknown field `descriptors`",
        ),
        (
            rule("filters: [{type: ExtensionRef}]"),
            "spec.rules[0].filters[0].extensionRef",
            "required",
        ),
        (
            rule(
                "filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: FaultInjection, name: f}}]",
            ),
            "spec.rules[0].filters[0].extensionRef.group",
            "use meshctl.dev",
        ),
        (
            rule(
                "filters: [{type: ExtensionRef, extensionRef: {group: meshctl.dev, kind: Cluster, name: f}}]",
            ),
            "spec.rules[0].filters[0].extensionRef.kind",
            "FaultInjection or LocalRateLimit",
        ),
        (
            rule("filters: [{type: ExtensionRef, extensionRef: {kind: FaultInjection, name: f}}]"),
            "spec.rules[0].filters[0].extensionRef",
            "missing field `group`",
        ),
        (
            rule(&format!(
                "filters: [{}, {}]",
                ext("FaultInjection", "a"),
                ext("FaultInjection", "b")
            )),
            "spec.rules[0].filters",
            "more than one FaultInjection",
        ),
        (
            format!(
                "{DR}spec: {{host: s, trafficPolicy: {{outlierDetection: {{consecutiveErrors: 5}}}}}}\n"
            ),
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            "consecutiveGatewayErrors",
        ),
        (
            format!(
                "{DR}spec: {{host: s, trafficPolicy: {{outlierDetection: {{minHealthPercent: 101}}}}}}\n"
            ),
            "spec.trafficPolicy.outlierDetection.minHealthPercent",
            "0-100",
        ),
        (
            format!(
                "{DR}spec: {{host: s, trafficPolicy: {{connectionPool: {{http: {{maxRequestsPerConnection: -1}}}}}}}}\n"
            ),
            "spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection",
            "invalid value",
        ),
    ];
    for (text, field, msg) in &cases {
        let err = parse(text).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(*field), "{text}: {err}");
        assert!(err.to_string().contains(msg), "{text}: {err}");
        assert!(err.object.is_some(), "{err}");
    }
}

#[test]
fn destination_rule_resilience_fields_parse() {
    let text = format!(
        "{DR}spec:\n  host: s\n  trafficPolicy:\n    connectionPool: {{http: {{maxRequestsPerConnection: 1}}}}\n    outlierDetection: {{consecutiveGatewayErrors: 3, consecutive5xxErrors: 0, minHealthPercent: 0}}\n"
    );
    let objs = parse(&text).unwrap();
    let Object::DestinationRule(d) = &objs[0].object else {
        panic!()
    };
    let p = d.spec.traffic_policy.as_ref().unwrap();
    let o = p.outlier_detection.as_ref().unwrap();
    assert_eq!(
        (
            o.consecutive_gateway_errors,
            o.consecutive_5xx_errors,
            o.min_health_percent
        ),
        (Some(3), Some(0), Some(0))
    );
    let http = p.connection_pool.as_ref().unwrap().http.as_ref().unwrap();
    assert_eq!(http.max_requests_per_connection, Some(1));
}
