//! Envoy's per-cluster resilience stats, rendered at scrape time from the live counters (no cost
//! on the request path), with Envoy's Prometheus names and `cluster_name` label:
//! circuit-breaker overflows and active counts, and outlier ejections.

use std::fmt::Write;

use crate::runtime::Resource;
use crate::state::State;

/// How to read one stat of a cluster.
type Reader = fn(&crate::state::ClusterState) -> u64;

const STATS: [(&str, &str, Reader); 9] = [
    ("envoy_cluster_upstream_cx_overflow", "counter", |c| {
        c.runtime.overflows(Resource::Connections)
    }),
    // Envoy counts requests refused by max_requests here too.
    (
        "envoy_cluster_upstream_rq_pending_overflow",
        "counter",
        |c| c.runtime.overflows(Resource::Pending) + c.runtime.overflows(Resource::Requests),
    ),
    ("envoy_cluster_upstream_rq_retry_overflow", "counter", |c| {
        c.runtime.overflows(Resource::Retries)
    }),
    ("envoy_cluster_upstream_cx_active", "gauge", |c| {
        u64::from(c.runtime.held(Resource::Connections))
    }),
    ("envoy_cluster_upstream_rq_active", "gauge", |c| {
        u64::from(c.runtime.held(Resource::Requests))
    }),
    ("envoy_cluster_upstream_rq_pending_active", "gauge", |c| {
        u64::from(c.runtime.held(Resource::Pending))
    }),
    ("envoy_cluster_upstream_rq_retry_active", "gauge", |c| {
        u64::from(c.runtime.held(Resource::Retries))
    }),
    (
        "envoy_cluster_outlier_detection_ejections_active",
        "gauge",
        |c| u64::from(c.runtime.ejection_counts().0),
    ),
    (
        "envoy_cluster_outlier_detection_ejections_enforced_total",
        "counter",
        |c| c.runtime.ejection_counts().1,
    ),
];

/// The stats of every cluster, in the Prometheus text format.
pub fn render(state: &State) -> String {
    let mut names: Vec<&String> = state.clusters.keys().collect();
    names.sort();
    let mut out = String::new();
    for (name, kind, read) in STATS {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for cluster in &names {
            if let Some(cs) = state.clusters.get(*cluster) {
                let label = cluster.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(out, "{name}{{cluster_name=\"{label}\"}} {}", read(cs));
            }
        }
    }
    out
}
