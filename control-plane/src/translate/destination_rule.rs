//! DestinationRules → Envoy cluster settings and route hash policies.
//!
//! Which rule applies to a Service: a host naming it exactly (short names are relative to the
//! rule's namespace: `reviews`, `reviews.shop`, `reviews.shop.svc` all work) beats a wildcard
//! (`*.shop.svc.cluster.local`, longest suffix first); then a rule in the Service's namespace,
//! then in the root namespace, then any other; then `namespace/name` order.
//!
//! Mapping: `simple` → `lb_policy` (LEAST_CONN = LEAST_REQUEST; PASSTHROUGH and UNSPECIFIED keep
//! the default ROUND_ROBIN); `consistentHash` → RING_HASH plus a route `hash_policy` (header,
//! cookie with ttl/path, or source IP); `connectionPool` → `circuit_breakers` (maxConnections,
//! http1MaxPendingRequests, http2MaxRequests, maxRetries), `connect_timeout` and
//! (maxRequestsPerConnection) `typed_extension_protocol_options` HTTP/1.1 with
//! `max_requests_per_connection`; `outlierDetection` → `outlier_detection` as Istio builds it:
//! consecutive 5xx and consecutive gateway errors each enforced 100 % when above 0 (0 %: off) and
//! left to Envoy's defaults when unset (5xx: 5, enforced; gateway errors: off), success-rate
//! ejection off, interval, base ejection time, max ejection percent when above 0; and
//! `common_lb_config.healthy_panic_threshold` = minHealthPercent (default 0: when every host is
//! ejected, requests fail with no healthy upstream rather than going to ejected hosts).

use xds::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection,
    circuit_breakers::Thresholds,
    cluster::{CommonLbConfig, LbPolicy},
};
use xds::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, HttpProtocolOptions as CommonHttpProtocolOptions,
};
use xds::pb::envoy::config::route::v3::route_action::{
    HashPolicy,
    hash_policy::{ConnectionProperties, Cookie, Header, PolicySpecifier},
};
use xds::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
    },
};
use xds::pb::envoy::r#type::v3::Percent;
use xds::pb::google::protobuf as pbuf;

use super::envoy::{any, parsed, u32v};
use super::mesh::{DNS_SUFFIX, Mesh, ServiceView};
use crate::manifest::MetaExt;
use crate::manifest::networking::{
    ConnectionPool, DestinationRule, OutlierDetection as Outlier, SimpleLb, TrafficPolicy,
};

/// The key of a cluster's upstream HTTP options in `typed_extension_protocol_options`.
const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// How well a rule's host names a Service: `None` = not at all; higher is more specific.
fn specificity(rule_ns: &str, host: &str, svc: &ServiceView<'_>) -> Option<usize> {
    let host = host.to_ascii_lowercase();
    if let Some(suffix) = host.strip_prefix('*') {
        return svc.hostname.ends_with(suffix).then_some(suffix.len());
    }
    let fqdn = match host.split('.').count() {
        1 => format!("{host}.{rule_ns}.{DNS_SUFFIX}"),
        2 => format!("{host}.{DNS_SUFFIX}"),
        3 if host.ends_with(".svc") => format!("{host}.cluster.local"),
        _ => host,
    };
    (fqdn == svc.hostname).then_some(usize::MAX)
}

/// The DestinationRule that configures `svc`'s clusters, if any.
pub(super) fn for_service<'a>(
    mesh: &Mesh<'a>,
    svc: &ServiceView<'_>,
) -> Option<&'a DestinationRule> {
    let root = &mesh.options.root_namespace;
    mesh.destination_rules
        .iter()
        .filter_map(|(obj, dr)| {
            let ns = obj.object.namespace().unwrap_or_default();
            let score = specificity(ns, &dr.spec.host, svc)?;
            let place = if ns == svc.namespace {
                0
            } else if ns == root {
                1
            } else {
                2
            };
            Some((
                (std::cmp::Reverse(score), place, ns, dr.metadata.name()),
                *dr,
            ))
        })
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, dr)| dr)
}

fn policy(dr: &DestinationRule) -> Option<&TrafficPolicy> {
    dr.spec.traffic_policy.as_ref()
}

/// Applies a rule's traffic policy to a cluster.
pub(super) fn apply(cluster: &mut Cluster, dr: &DestinationRule) {
    let Some(p) = policy(dr) else { return };
    if let Some(lb) = &p.load_balancer {
        cluster.lb_policy = match (lb.simple, &lb.consistent_hash) {
            (_, Some(_)) => LbPolicy::RingHash,
            (Some(SimpleLb::LeastConn | SimpleLb::LeastRequest), _) => LbPolicy::LeastRequest,
            (Some(SimpleLb::Random), _) => LbPolicy::Random,
            _ => LbPolicy::RoundRobin,
        } as i32;
    }
    if let Some(pool) = &p.connection_pool {
        connection_pool(cluster, pool);
    }
    if let Some(o) = &p.outlier_detection {
        outlier_detection(cluster, o);
    }
}

fn connection_pool(cluster: &mut Cluster, pool: &ConnectionPool) {
    let tcp = pool.tcp.clone().unwrap_or_default();
    let http = pool.http.clone().unwrap_or_default();
    if let Some(t) = tcp.connect_timeout.as_deref().and_then(parsed) {
        cluster.connect_timeout = Some(t);
    }
    let t = Thresholds {
        max_connections: tcp.max_connections.map(u32v),
        max_pending_requests: http.http1_max_pending_requests.map(u32v),
        max_requests: http.http2_max_requests.map(u32v),
        max_retries: http.max_retries.map(u32v),
        ..Thresholds::default()
    };
    if t != Thresholds::default() {
        cluster.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![t],
            ..CircuitBreakers::default()
        });
    }
    if let Some(n) = http.max_requests_per_connection.filter(|n| *n > 0) {
        // HTTP/1.1 upstream, as Envoy speaks without these options.
        let options = HttpProtocolOptions {
            common_http_protocol_options: Some(CommonHttpProtocolOptions {
                max_requests_per_connection: Some(u32v(n)),
                ..CommonHttpProtocolOptions::default()
            }),
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::HttpProtocolOptions(
                        Http1ProtocolOptions::default(),
                    )),
                },
            )),
            ..HttpProtocolOptions::default()
        };
        cluster
            .typed_extension_protocol_options
            .insert(HTTP_OPTIONS.to_owned(), any(&options));
    }
}

/// `Some(n)` → `(n, enforced 100 % if n > 0 else 0 %)`, as Istio maps its counters.
fn counter(n: Option<u32>) -> (Option<pbuf::UInt32Value>, Option<pbuf::UInt32Value>) {
    (n.map(u32v), n.map(|n| u32v(if n > 0 { 100 } else { 0 })))
}

fn outlier_detection(cluster: &mut Cluster, o: &Outlier) {
    let (consecutive_5xx, enforcing_consecutive_5xx) = counter(o.consecutive_5xx_errors);
    let (consecutive_gateway_failure, enforcing_consecutive_gateway_failure) =
        counter(o.consecutive_gateway_errors);
    cluster.outlier_detection = Some(OutlierDetection {
        consecutive_5xx,
        enforcing_consecutive_5xx,
        consecutive_gateway_failure,
        enforcing_consecutive_gateway_failure,
        enforcing_success_rate: Some(u32v(0)),
        interval: o.interval.as_deref().and_then(parsed),
        base_ejection_time: o.base_ejection_time.as_deref().and_then(parsed),
        max_ejection_percent: o.max_ejection_percent.filter(|p| *p > 0).map(u32v),
        ..OutlierDetection::default()
    });
    cluster
        .common_lb_config
        .get_or_insert_with(CommonLbConfig::default)
        .healthy_panic_threshold = Some(Percent {
        value: f64::from(o.min_health_percent.unwrap_or(0)),
    });
}

/// The route hash policy of a `consistentHash` rule.
pub(super) fn hash_policy(dr: &DestinationRule) -> Option<HashPolicy> {
    let h = policy(dr)?
        .load_balancer
        .as_ref()?
        .consistent_hash
        .as_ref()?;
    let spec = if let Some(name) = &h.http_header_name {
        PolicySpecifier::Header(Header {
            header_name: name.to_ascii_lowercase(),
            ..Header::default()
        })
    } else if let Some(c) = &h.http_cookie {
        PolicySpecifier::Cookie(Cookie {
            name: c.name.clone(),
            ttl: c.ttl.as_deref().and_then(parsed),
            path: c.path.clone().unwrap_or_default(),
            ..Cookie::default()
        })
    } else if h.use_source_ip == Some(true) {
        PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
    } else {
        return None;
    };
    Some(HashPolicy {
        terminal: false,
        policy_specifier: Some(spec),
    })
}

#[cfg(test)]
mod tests;
