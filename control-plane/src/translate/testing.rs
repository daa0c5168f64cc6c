//! Test helpers: parse YAML, translate, decode resources back; and a realistic manifest set.
#![allow(clippy::unwrap_used)]

use prost::Message;

use super::{Options, Translation, translate};
use crate::manifest::{ManifestError, ManifestFile, ManifestObject, parse_files};

pub(super) fn parse(yaml: &str) -> Result<Vec<ManifestObject>, ManifestError> {
    parse_files(&[ManifestFile {
        name: "test.yaml".into(),
        text: yaml.into(),
    }])
}

/// Parses and translates with default options; panics on errors.
pub(super) fn run(yaml: &str) -> Translation {
    try_run(yaml).unwrap()
}

pub(super) fn try_run(yaml: &str) -> Result<Translation, ManifestError> {
    translate(&parse(yaml)?, &Options::default())
}

/// Decodes the resource `type_url`/`name`, panicking with the names present when it is missing.
pub(super) fn decode<M: Message + Default>(snap: &xds::Snapshot, type_url: &str, name: &str) -> M {
    let Some(r) = snap.get(type_url, name) else {
        panic!(
            "no {type_url} named {name:?}; have {:?}",
            names(snap, type_url)
        );
    };
    assert_eq!(r.body.type_url, type_url);
    M::decode(r.body.value.as_slice()).unwrap()
}

/// Decodes every resource of a type, in name order.
pub(super) fn decode_all<M: Message + Default>(snap: &xds::Snapshot, type_url: &str) -> Vec<M> {
    names(snap, type_url)
        .iter()
        .map(|n| decode(snap, type_url, n))
        .collect()
}

pub(super) fn names(snap: &xds::Snapshot, type_url: &str) -> Vec<String> {
    snap.resources(type_url)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// A small application: namespace `shop` (ambient, every Service behind waypoint `waypoint`),
/// `reviews` in two versions (2 + 1 replicas), Services `reviews`, `reviews-v1`, `reviews-v2`, a
/// 90/10 split with a header match for canaries, a consistent-hash DestinationRule with outlier
/// detection and a connection pool, an L7 DENY policy on the Service, a Gateway-level ALLOW and an
/// L4 policy.
/// Namespace `app` with Services `api` and `other` (port 80) behind waypoint `wp`, then `rest`.
pub(super) fn app_with_waypoint(rest: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: app, labels: {{istio.io/use-waypoint: wp}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: wp, namespace: app}}
spec: {{gatewayClassName: istio-waypoint, listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: app}}
spec: {{selector: {{app: api}}, ports: [{{name: http, port: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: other, namespace: app}}
spec: {{selector: {{app: other}}, ports: [{{name: http, port: 80}}]}}
---
{rest}"#
    )
}

pub(super) const SHOP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: reviews, version: v1}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec:
      serviceAccountName: reviews
      containers: [{name: app, command: [reviews], ports: [{name: http, containerPort: 9080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v2, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: reviews, version: v2}}
  template:
    metadata: {labels: {app: reviews, version: v2}}
    spec:
      serviceAccountName: reviews
      containers: [{name: app, command: [reviews], ports: [{name: http, containerPort: 9080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v1, namespace: shop}
spec:
  selector: {app: reviews, version: v1}
  ports: [{name: http, port: 9080, targetPort: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v2, namespace: shop}
spec:
  selector: {app: reviews, version: v2}
  ports: [{name: http, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{headers: [{name: X-Canary, value: "true"}]}]
    backendRefs: [{name: reviews-v2, port: 9080}]
  - backendRefs:
    - {name: reviews-v1, port: 9080, weight: 90}
    - {name: reviews-v2, port: 9080, weight: 10}
    timeouts: {request: 3s}
    retry: {codes: [503], attempts: 3, backoff: 100ms}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 2s}
      http: {http1MaxPendingRequests: 10, http2MaxRequests: 100, maxRetries: 3}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin-delete, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: reviews}]
  action: DENY
  rules:
  - to: [{operation: {methods: [DELETE], paths: ["/admin/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: shop-only, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  action: ALLOW
  rules:
  - from: [{source: {namespaces: [shop], principals: ["cluster.local/ns/front/sa/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: l4-reviews, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/waypoint"]}}]
"#;
