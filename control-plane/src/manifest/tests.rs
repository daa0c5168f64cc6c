#![allow(clippy::unwrap_used)]

use super::*;

fn parse(text: &str) -> Result<Vec<ManifestObject>, ManifestError> {
    parse_files(&[ManifestFile {
        name: "m.yaml".into(),
        text: text.into(),
    }])
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec:\n  containers: [{name: c, command: [sleep, '1']}]\n";

#[test]
fn parses_every_document_and_skips_empty_ones() {
    let text = format!(
        "---\n{POD}---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: shop, namespace: x}}\n"
    );
    let objs = parse(&text).unwrap();
    assert_eq!(objs.len(), 2);
    assert_eq!(objs[0].object.display(), "Pod shop/p");
    assert_eq!(objs[0].source.document, 1);
    assert_eq!(objs[1].source.document, 3);
    // A cluster-scoped object has no namespace even if one was written.
    assert_eq!(objs[1].object.key().namespace, "");
    let Object::Pod(p) = &objs[0].object else {
        panic!("not a pod")
    };
    assert_eq!(p.pod_spec().restart(), RestartPolicy::Always);
    assert_eq!(p.pod_spec().service_account(), "default");
}

#[test]
fn errors_name_the_object_and_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n",
            "kind",
            "unknown kind",
        ),
        (
            "apiVersion: v2\nkind: Pod\nmetadata: {name: p}\n",
            "apiVersion",
            "is not \"v1\"",
        ),
        ("kind: Pod\nmetadata: {name: p}\n", "apiVersion", "missing"),
        ("apiVersion: v1\nmetadata: {name: p}\n", "kind", "missing"),
        ("- 1\n- 2\n", "(document)", "mapping"),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, command: yes}]}\n",
            "spec.containers[0].command",
            "invalid type",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n",
            "spec.containers",
            "at least one",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: P_1}\nspec: {containers: [{name: c, command: [x]}]}\n",
            "metadata.name",
            "not a valid name",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, command: [x], ports: [{containerPort: 70000}]}]}\n",
            "spec.containers[0].ports[0].containerPort",
            "must be 1-65535, not 70000",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, command: [x]}, {name: c, command: [y]}]}\n",
            "spec.containers[1].name",
            "duplicate",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}, {port: 81}]}\n",
            "spec.ports[0].name",
            "required",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: []}\n",
            "spec.ports",
            "at least one",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: '80'}]}\n",
            "spec.ports[0].port",
            "invalid type",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {selector: {matchLabels: {app: a}}, template: {metadata: {labels: {app: b}}, spec: {containers: [{name: c, command: [x]}]}}}\n",
            "spec.template.metadata.labels",
            "does not match",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: -1, selector: {matchLabels: {app: a}}, template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, command: [x]}]}}}\n",
            "spec.replicas",
            "-1 is not 0-256",
        ),
        (
            "apiVersion: meshctl.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec: {nodez: 2}\n",
            "spec.nodez",
            "unknown field `nodez`",
        ),
        (
            "apiVersion: meshctl.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec: {nodes: 0}\n",
            "spec.nodes",
            "must be",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {namespace: a}\nspec: {containers: [{name: c}]}\n",
            "metadata.name",
            "required",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
            "spec",
            "required",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\nstatus: {podIP: fd00::1}\n",
            "status.podIP",
            "not an IPv4 address",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {restartPolicy: Sometimes, containers: [{name: c}]}\n",
            "spec.restartPolicy",
            "not one of Always",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, protocol: SCTP}]}\n",
            "spec.ports[0].protocol",
            "use TCP or UDP",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, targetPort: 0}]}\n",
            "spec.ports[0].targetPort",
            "must be 1-65535",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{from: [{source: {trustDomains: [td]}}]}]}\n",
            "spec.rules[0].from[0].source.trustDomains",
            "not supported",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{from: [{source: {principal: [x]}}]}]}\n",
            "spec.rules[0].from[0].source.principal",
            "unknown field `principal`",
        ),
    ];
    for (text, field, msg) in cases {
        let err = parse(text).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(*field), "{text}: {err}");
        assert!(err.to_string().contains(msg), "{text}: {err}");
        assert!(
            err.to_string().starts_with("m.yaml (document 1): "),
            "{err}"
        );
    }
}

#[test]
fn invalid_yaml_is_an_error_not_a_panic() {
    for text in [
        "a: [1, 2",
        "\t- x: y",
        "apiVersion: v1\nkind: [Pod\n",
        "{{{{",
        "- - - - [",
    ] {
        assert!(parse(text).is_err(), "{text}");
    }
}

const GW: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: wp, namespace: shop}\n";
const ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\n";
const GRPC: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g, namespace: shop}\n";
const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: shop}\n";
const AP: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: shop}\n";

#[test]
fn mesh_kinds_parse_with_unknown_fields_ignored() {
    let text = format!(
        "{GW}spec: {{gatewayClassName: istio-waypoint, infrastructure: {{x: 1}}, listeners: [{{name: mesh, port: 15008, protocol: HBONE, allowedRoutes: {{}}}}], addresses: [{{value: 10.0.0.9}}]}}\n---\n\
         {ROUTE}spec:\n  parentRefs: [{{kind: Service, name: s, sectionName: x}}]\n  hostnames: [a]\n  rules:\n  - name: first\n    matches: [{{path: {{value: /a}}}}, {{}}]\n    backendRefs: [{{name: s, port: 80}}]\n    timeouts: {{request: 1m30s}}\n---\n\
         {GRPC}spec: {{parentRefs: [{{kind: Service, name: s}}], rules: [{{matches: [{{method: {{service: a.B}}}}]}}]}}\n---\n\
         {DR}spec: {{host: s, exportTo: ['.'], trafficPolicy: {{loadBalancer: {{simple: LEAST_REQUEST}}, tls: {{mode: ISTIO_MUTUAL}}}}}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: shop, ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: web-abc, uid: u1, controller: true}}]}}\n\
         spec: {{containers: [{{name: c, command: [x]}}]}}\nstatus: {{podIP: 10.244.0.9, phase: Running, conditions: [{{type: Ready, status: 'False', lastProbeTime: null}}]}}\n"
    );
    let objs = parse(&text).unwrap();
    let kinds: Vec<&str> = objs.iter().map(|o| o.object.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            "Gateway",
            "HTTPRoute",
            "GRPCRoute",
            "DestinationRule",
            "Pod"
        ]
    );
    let Object::HttpRoute(r) = &objs[1].object else {
        panic!()
    };
    let path = r.spec.rules[0].matches[0].path.as_ref().unwrap();
    assert_eq!(
        path.kind,
        gateway::PathMatchType::PathPrefix,
        "the default match type"
    );
    let Object::Pod(p) = &objs[4].object else {
        panic!()
    };
    assert!(!p.is_ready());
    assert_eq!(p.metadata.owner_references()[0].name, "web-abc");
    // Kind and apiVersion round-trip through the serialized form (the CLI sends objects to the daemon).
    let json = serde_json::to_string(&objs[1].object).unwrap();
    assert!(json.contains("\"kind\":\"HTTPRoute\""), "{json}");
    assert_eq!(
        serde_json::from_str::<Object>(&json).unwrap(),
        objs[1].object
    );
}

#[test]
fn mesh_kind_errors_name_the_field() {
    let wp = "spec: {gatewayClassName: istio-waypoint, listeners: [{name: http, port: 80, protocol: HTTP}]}\n";
    let rule = |r: &str| {
        format!("{ROUTE}spec:\n  parentRefs: [{{kind: Service, name: s}}]\n  rules:\n  - {r}\n")
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (format!("{GW}{wp}"), "spec.listeners", "15008"),
        (
            format!(
                "{GW}spec: {{gatewayClassName: x, listeners: [{{name: a, port: 0, protocol: HTTP}}]}}\n"
            ),
            "spec.listeners[0].port",
            "1-65535",
        ),
        (
            format!("{GW}spec: {{gatewayClassName: x, addresses: [{{value: nope}}]}}\n"),
            "spec.addresses[0].value",
            "not an IP",
        ),
        (
            rule("matches: [{path: {type: RegularExpression, value: '(['}}]"),
            "spec.rules[0].matches[0].path.value",
            "regular expression",
        ),
        (
            rule("matches: [{headers: [{type: RegularExpression, name: x, value: '*'}]}]"),
            "spec.rules[0].matches[0].headers[0].value",
            "regular expression",
        ),
        (
            rule("matches: [{path: {type: Exact, value: relative}}]"),
            "spec.rules[0].matches[0].path.value",
            "start with",
        ),
        (
            rule("matches: [{method: FETCH}]"),
            "spec.rules[0].matches[0].method",
            "not one of",
        ),
        (
            rule("backendRefs: [{name: a, port: 80}, {name: b, port: 80, weight: 1000001}]"),
            "spec.rules[0].backendRefs[1].weight",
            "out of range",
        ),
        (
            rule("backendRefs: [{name: a}]"),
            "spec.rules[0].backendRefs[0].port",
            "required",
        ),
        (
            rule("backendRefs: [{name: a, port: 0}]"),
            "spec.rules[0].backendRefs[0].port",
            "1-65535",
        ),
        (
            rule("filters: [{type: CORS}]"),
            "spec.rules[0].filters[0].type",
            "unknown variant",
        ),
        (
            rule("filters: [{type: RequestHeaderModifier}]"),
            "spec.rules[0].filters[0].requestHeaderModifier",
            "required",
        ),
        (
            rule("filters: [{type: RequestRedirect, requestRedirect: {statusCode: 304}}]"),
            "spec.rules[0].filters[0].requestRedirect.statusCode",
            "301",
        ),
        (
            rule(
                "matches: [{path: {type: Exact, value: /a}}]\n    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]",
            ),
            "spec.rules[0].filters[0].urlRewrite.path.type",
            "PathPrefix",
        ),
        (
            rule("timeouts: {request: 5}"),
            "spec.rules[0].timeouts.request",
            "invalid type",
        ),
        (
            rule("timeouts: {request: 5x}"),
            "spec.rules[0].timeouts.request",
            "not a duration",
        ),
        (
            rule("timeouts: {request: 1s, backendRequest: 2s}"),
            "spec.rules[0].timeouts.backendRequest",
            "longer",
        ),
        (
            rule("retry: {codes: [200]}"),
            "spec.rules[0].retry.codes[0]",
            "400-599",
        ),
        (
            format!("{ROUTE}spec: {{parentRefs: [{{name: s, port: 0}}]}}\n"),
            "spec.parentRefs[0].port",
            "1-65535",
        ),
        (
            format!("{GRPC}spec: {{rules: [{{matches: [{{method: {{service: 'a b'}}}}]}}]}}\n"),
            "spec.rules[0].matches[0].method.service",
            "gRPC service",
        ),
        (
            format!("{GRPC}spec: {{rules: [{{matches: [{{method: {{}}}}]}}]}}\n"),
            "spec.rules[0].matches[0].method",
            "service, a method",
        ),
        (
            format!(
                "{GRPC}spec: {{rules: [{{filters: [{{type: URLRewrite, urlRewrite: {{}}}}]}}]}}\n"
            ),
            "spec.rules[0].filters[0].type",
            "GRPCRoute",
        ),
        (format!("{DR}spec: {{host: ''}}\n"), "spec.host", "empty"),
        (
            format!(
                "{DR}spec: {{host: s, trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN, consistentHash: {{useSourceIp: true}}}}}}}}\n"
            ),
            "spec.trafficPolicy.loadBalancer",
            "not both",
        ),
        (
            format!(
                "{DR}spec: {{host: s, trafficPolicy: {{loadBalancer: {{consistentHash: {{}}}}}}}}\n"
            ),
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "exactly one",
        ),
        (
            format!(
                "{DR}spec: {{host: s, trafficPolicy: {{outlierDetection: {{interval: 1d}}}}}}\n"
            ),
            "spec.trafficPolicy.outlierDetection.interval",
            "unknown unit",
        ),
        (
            format!(
                "{DR}spec: {{host: s, trafficPolicy: {{outlierDetection: {{maxEjectionPercent: 101}}}}}}\n"
            ),
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "0-100",
        ),
        (
            format!(
                "{DR}spec: {{host: s, trafficPolicy: {{connectionPool: {{tcp: {{connectTimeout: 0s}}}}}}}}\n"
            ),
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            "longer than",
        ),
        (
            format!("{AP}spec: {{targetRefs: [{{kind: Namespace, name: x}}]}}\n"),
            "spec.targetRefs[0].kind",
            "Gateway or Service",
        ),
        (
            format!(
                "{AP}spec: {{selector: {{matchLabels: {{a: b}}}}, targetRefs: [{{kind: Service, name: x}}]}}\n"
            ),
            "spec.selector",
            "targetRefs",
        ),
    ];
    for (text, field, msg) in &cases {
        let err = parse(text).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(*field), "{text}: {err}");
        assert!(err.to_string().contains(msg), "{text}: {err}");
        assert!(err.object.is_some(), "{err}");
    }
}

mod api_server;
mod extensions;
