//! `/config_dump`: what the waypoint holds and does — node, identity and certificates, the xDS
//! stream's state, listeners, routes, clusters with their endpoints and in-flight requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use hbone::cert_manager::CertManager;
use serde_json::{Value, json};
use xds::client::ClientStatus;

use crate::config::Config;
use crate::model::{AbortStatus, FilterOverride, HttpFilter, ListenerKind, RouteAction};
use crate::runtime::Resource;
use crate::state::Store;
use crate::upstream::Upstream;

/// Where the dump reads from.
pub struct Sources {
    pub config: Arc<Config>,
    pub store: Store,
    pub certs: CertManager,
    pub xds: Option<tokio::sync::watch::Receiver<ClientStatus>>,
    pub upstream: Upstream,
}

pub fn dump(s: &Sources) -> Value {
    let state = s.store.current();
    let listeners: Vec<Value> = state
        .config
        .listeners
        .values()
        .map(|l| match &l.kind {
            ListenerKind::Http {
                stat_prefix,
                route_config,
                filters,
            } => json!({
                "name": l.name, "address": l.address.to_string(), "stat_prefix": stat_prefix,
                "route_config": route_config,
                "http_filters": filters.iter().map(HttpFilter::name).collect::<Vec<_>>(),
            }),
            ListenerKind::Tcp {
                stat_prefix,
                cluster,
            } => json!({
                "name": l.name, "address": l.address.to_string(), "stat_prefix": stat_prefix,
                "tcp_proxy": cluster,
            }),
        })
        .collect();
    let routes: Vec<Value> = state
        .config
        .routes
        .values()
        .map(|t| {
            json!({
                "name": t.name,
                "virtual_hosts": t.virtual_hosts.iter().map(|vh| json!({
                    "name": vh.name,
                    "domains": vh.domains,
                    "per_filter_config": overrides(&vh.overrides),
                    "routes": vh.routes.iter().map(|r| json!({
                        "name": r.name,
                        "per_filter_config": overrides(&r.overrides),
                        "match": format!("{:?}", r.matcher),
                        "action": match &r.action {
                            RouteAction::Forward(f) => json!({
                                "clusters": f.clusters.iter().map(|c| json!({"name": c.name, "weight": c.weight})).collect::<Vec<_>>(),
                                "timeout_ms": f.timeout.map(|t| t.as_millis() as u64),
                                "retry": f.retry.as_ref().map(|r| format!("{r:?}")),
                                "hash_policy": f.hash_policy.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>(),
                            }),
                            RouteAction::Redirect(r) => json!({"redirect": format!("{r:?}")}),
                            RouteAction::Direct { status, .. } => json!({"direct_response": status.as_u16()}),
                        },
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let now = Instant::now();
    let mut clusters: Vec<Value> = state
        .clusters
        .iter()
        .map(|(name, cs)| {
            let rt = &cs.runtime;
            let cb = cs.cluster.circuit_breakers;
            let (ejected_now, ejections_total) = rt.ejection_counts();
            json!({
                "name": name,
                "lb_policy": format!("{:?}", cs.cluster.lb),
                "connect_timeout_ms": cs.cluster.connect_timeout.as_millis() as u64,
                "http2": cs.cluster.http2,
                "circuit_breakers": {
                    "max_connections": cb.max_connections,
                    "max_pending_requests": cb.max_pending_requests,
                    "max_requests": cb.max_requests,
                    "max_retries": cb.max_retries,
                    "active": {
                        "connections": rt.held(Resource::Connections),
                        "pending_requests": rt.held(Resource::Pending),
                        "requests": rt.held(Resource::Requests),
                        "retries": rt.held(Resource::Retries),
                    },
                    "overflows": {
                        "connections": rt.overflows(Resource::Connections),
                        "pending_requests": rt.overflows(Resource::Pending),
                        "requests": rt.overflows(Resource::Requests),
                        "retries": rt.overflows(Resource::Retries),
                    },
                },
                "outlier_detection": cs.cluster.outlier.map(|o| json!({
                    "consecutive_5xx": o.consecutive_5xx,
                    "consecutive_gateway_failure": o.consecutive_gateway_failure,
                    "interval_ms": o.interval.as_millis() as u64,
                    "base_ejection_time_ms": o.base_ejection_time.as_millis() as u64,
                    "max_ejection_time_ms": o.max_ejection_time.as_millis() as u64,
                    "max_ejection_percent": o.max_ejection_percent,
                    "ejections_active": ejected_now,
                    "ejections_total": ejections_total,
                })),
                "endpoints": cs.endpoints.iter().enumerate().map(|(i, e)| {
                    let host = rt.host(e.address);
                    let until = host.as_ref().and_then(|h| h.ejected_until).filter(|t| *t > now);
                    json!({
                        "address": e.address.to_string(),
                        "healthy": e.healthy,
                        "health_status": if until.is_some() { "FAILED_OUTLIER_CHECK" } else if e.healthy { "HEALTHY" } else { "UNHEALTHY" },
                        "weight": e.weight,
                        "hbone": e.hbone,
                        "identity": e.identity.as_ref().map(ToString::to_string),
                        "workload": e.workload,
                        "active_requests": cs.active(i),
                        "outlier": host.map(|h| json!({
                            "ejected": until.is_some(),
                            "ejected_for_ms": until.map(|t| t.saturating_duration_since(now).as_millis() as u64),
                            "ejections": h.ejections,
                            "consecutive_5xx": h.consecutive_5xx,
                            "consecutive_gateway_failures": h.consecutive_gateway,
                        })),
                    })
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    clusters.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let certificates: Vec<Value> = s
        .certs
        .dump()
        .into_iter()
        .map(|(id, state, _)| json!({"identity": id.to_string(), "state": state}))
        .collect();
    let xds = s.xds.as_ref().map(|rx| {
        let st = rx.borrow();
        json!({
            "address": s.config.xds_address,
            "connected": st.connected,
            "acked": st.acked,
            "held": st.held,
            "last_nack": st.last_nack,
            "last_error": st.last_error,
        })
    });
    let (idle_h1, h2) = s.upstream.counts();
    json!({
        "node": {"id": s.config.node_id(), "gateway": s.config.gateway_name, "namespace": s.config.pod_namespace},
        "identity": s.config.identity().ok().map(|i| i.to_string()),
        "certificates": certificates,
        "xds": xds,
        "listeners": listeners,
        "routes": routes,
        "clusters": clusters,
        "upstream_pools": {"idle_http1": idle_h1, "http2": h2},
    })
}

/// A virtual host's or route's per-filter configs, by filter name.
fn overrides(map: &BTreeMap<String, FilterOverride>) -> Value {
    map.iter()
        .map(|(name, o)| {
            let v = match o {
                FilterOverride::Rbac(_) => json!({"rbac": true}),
                FilterOverride::Disabled => json!({"disabled": true}),
                FilterOverride::Fault(f) => json!({"fault": {
                    "delay": f.delay.map(|d| json!({"fixed_delay_ms": d.fixed.as_millis() as u64, "per_million": d.share.per_million})),
                    "abort": f.abort.map(|a| json!({
                        "status": match a.status {
                            AbortStatus::Http(s) => json!({"http": s.as_u16()}),
                            AbortStatus::Grpc(c) => json!({"grpc": c}),
                        },
                        "per_million": a.share.per_million,
                    })),
                }}),
                FilterOverride::RateLimit(l) => json!({"local_rate_limit": {
                    "stat_prefix": l.stat_prefix,
                    "status": l.status.as_u16(),
                    "token_bucket": l.bucket.as_ref().map(|b| json!({
                        "max_tokens": b.max_tokens,
                        "tokens_per_fill": b.tokens_per_fill,
                        "fill_interval_ms": b.fill_interval.as_millis() as u64,
                    })),
                    "enabled_per_million": l.enabled.per_million,
                    "enforced_per_million": l.enforced.per_million,
                }}),
            };
            (name.clone(), v)
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
