//! Envoy's per-cluster resilience stats, rendered at scrape time from the live counters (no cost
//! on the request path), with Envoy's Prometheus names and `cluster_name` label:
//! circuit-breaker overflows and active counts, and outlier ejections.

use std::fmt::Write;

use crate::runtime::Resource;
use crate::state::State;

/// How to read one stat of a cluster.
type Reader = fn(&crate::state::ClusterState) -> u64;

/// `(name, type, help, reader)`: Envoy's names and descriptions.
const STATS: [(&str, &str, &str, Reader); 9] = [
    (
        "envoy_cluster_upstream_cx_overflow",
        "counter",
        "Total times that the cluster's connection circuit breaker overflowed",
        |c| c.runtime.overflows(Resource::Connections),
    ),
    // Envoy counts requests refused by max_requests here too.
    (
        "envoy_cluster_upstream_rq_pending_overflow",
        "counter",
        "Total requests that overflowed the pending or request circuit breakers and were failed",
        |c| c.runtime.overflows(Resource::Pending) + c.runtime.overflows(Resource::Requests),
    ),
    (
        "envoy_cluster_upstream_rq_retry_overflow",
        "counter",
        "Total requests not retried because of circuit breaking",
        |c| c.runtime.overflows(Resource::Retries),
    ),
    (
        "envoy_cluster_upstream_cx_active",
        "gauge",
        "Total active connections",
        |c| u64::from(c.runtime.held(Resource::Connections)),
    ),
    (
        "envoy_cluster_upstream_rq_active",
        "gauge",
        "Total active requests",
        |c| u64::from(c.runtime.held(Resource::Requests)),
    ),
    (
        "envoy_cluster_upstream_rq_pending_active",
        "gauge",
        "Total active requests pending a connection pool connection",
        |c| u64::from(c.runtime.held(Resource::Pending)),
    ),
    (
        "envoy_cluster_upstream_rq_retry_active",
        "gauge",
        "Total active retries",
        |c| u64::from(c.runtime.held(Resource::Retries)),
    ),
    (
        "envoy_cluster_outlier_detection_ejections_active",
        "gauge",
        "Number of currently ejected hosts",
        |c| u64::from(c.runtime.ejection_counts().0),
    ),
    (
        "envoy_cluster_outlier_detection_ejections_enforced_total",
        "counter",
        "Number of enforced ejections due to any outlier type",
        |c| c.runtime.ejection_counts().1,
    ),
];

/// The stats of every cluster, in the Prometheus text format.
pub fn render(state: &State) -> String {
    let mut names: Vec<&String> = state.clusters.keys().collect();
    names.sort();
    let mut out = String::new();
    for (name, kind, help, read) in STATS {
        let _ = writeln!(out, "# HELP {name} {help}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_then_type() {
        let text = render(&State::default());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 * STATS.len(), "{text}");
        for (pair, (name, kind, help, _)) in lines.chunks(2).zip(STATS) {
            assert_eq!(pair[0], format!("# HELP {name} {help}"));
            assert_eq!(pair[1], format!("# TYPE {name} {kind}"));
        }
    }
}
