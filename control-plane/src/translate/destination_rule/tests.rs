#![allow(clippy::unwrap_used)]

use prost::Message;
use xds::pb::envoy::config::cluster::v3::Cluster;
use xds::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use xds::type_url;

use crate::translate::testing::{decode, run};

/// Services `api` and `other` (port 80) behind waypoint `wp` in namespace `app`.
const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: app}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: app}
spec: {selector: {app: api}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: app}
spec: {selector: {app: other}, ports: [{name: http, port: 80}]}
---"#;

#[test]
fn destination_rule_gateway_errors_pool_and_panic_threshold() {
    let yaml = format!(
        "{}{}",
        APP,
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: app}
spec:
  host: api
  trafficPolicy:
    connectionPool: {http: {maxRequestsPerConnection: 10}}
    outlierDetection: {consecutiveGatewayErrors: 3, interval: 1s, baseEjectionTime: 5s, maxEjectionPercent: 100}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: other, namespace: app}
spec:
  host: other
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 2, minHealthPercent: 30, maxEjectionPercent: 0}
"#
    );
    let snap = run(&yaml).waypoints[&("app".to_owned(), "wp".to_owned())].clone();
    let c: Cluster = decode(
        &snap,
        type_url::CLUSTER,
        "outbound|80||api.app.svc.cluster.local",
    );
    let o = c.outlier_detection.unwrap();
    assert_eq!(o.consecutive_gateway_failure.unwrap().value, 3);
    assert_eq!(o.enforcing_consecutive_gateway_failure.unwrap().value, 100);
    assert!(
        o.consecutive_5xx.is_none() && o.enforcing_consecutive_5xx.is_none(),
        "unset: Envoy's default (5, enforced), as Istio leaves it"
    );
    assert_eq!(o.enforcing_success_rate.unwrap().value, 0);
    assert_eq!(o.max_ejection_percent.unwrap().value, 100);
    let panic = c.common_lb_config.unwrap().healthy_panic_threshold.unwrap();
    assert_eq!(panic.value, 0.0, "all ejected: no healthy upstream");
    let options = HttpProtocolOptions::decode(
        c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
            .value
            .as_slice(),
    )
    .unwrap();
    let common = options.common_http_protocol_options.unwrap();
    assert_eq!(common.max_requests_per_connection.unwrap().value, 10);
    assert!(
        options.upstream_protocol_options.is_some(),
        "Envoy requires one"
    );

    let other: Cluster = decode(
        &snap,
        type_url::CLUSTER,
        "outbound|80||other.app.svc.cluster.local",
    );
    let o = other.outlier_detection.unwrap();
    assert_eq!(
        (
            o.consecutive_5xx.unwrap().value,
            o.enforcing_consecutive_5xx.unwrap().value
        ),
        (0, 0),
        "0 turns 5xx ejection off"
    );
    assert_eq!(o.consecutive_gateway_failure.unwrap().value, 2);
    assert!(o.max_ejection_percent.is_none(), "0: Envoy's default");
    let panic = other
        .common_lb_config
        .unwrap()
        .healthy_panic_threshold
        .unwrap();
    assert_eq!(panic.value, 30.0);
    assert!(other.typed_extension_protocol_options.is_empty());
}
