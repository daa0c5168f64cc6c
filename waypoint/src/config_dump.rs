//! `/config_dump`: what the waypoint holds and does — node, identity and certificates, the xDS
//! stream's state, listeners, routes, clusters with their endpoints and in-flight requests.

use std::sync::Arc;

use hbone::cert_manager::CertManager;
use serde_json::{Value, json};
use xds::client::ClientStatus;

use crate::config::Config;
use crate::model::{HttpFilter, ListenerKind, RouteAction};
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
                "http_filters": filters.iter().map(|HttpFilter::Rbac { name, .. }| name).collect::<Vec<_>>(),
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
                    "routes": vh.routes.iter().map(|r| json!({
                        "name": r.name,
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
    let mut clusters: Vec<Value> = state
        .clusters
        .iter()
        .map(|(name, cs)| {
            json!({
                "name": name,
                "lb_policy": format!("{:?}", cs.cluster.lb),
                "connect_timeout_ms": cs.cluster.connect_timeout.as_millis() as u64,
                "http2": cs.cluster.http2,
                "endpoints": cs.endpoints.iter().enumerate().map(|(i, e)| json!({
                    "address": e.address.to_string(),
                    "healthy": e.healthy,
                    "weight": e.weight,
                    "hbone": e.hbone,
                    "identity": e.identity.as_ref().map(ToString::to_string),
                    "workload": e.workload,
                    "active_requests": cs.active(i),
                })).collect::<Vec<_>>(),
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
