//! Picking one endpoint of a Service (spec §3.1 step 5): health, target port, routing
//! preferences, then a random pick weighted by `capacity`.
//!
//! A `capacity` of 0 means "drained": the endpoint is never picked, and is dropped before the
//! routing preferences rank endpoints, so FAILOVER moves on to the next rank when every
//! endpoint of the best one is drained.

use std::sync::Arc;

use rand::Rng;
use rand::seq::IndexedRandom;

use crate::model::{
    HealthStatus, LoadBalancer, LoadBalancerHealthPolicy, LoadBalancerMode, LoadBalancerScope,
    Service, Workload,
};
use crate::state::Snapshot;

/// An endpoint of `svc` for `service_port` and its target port: the endpoint's own port map
/// first, then the Service's non-zero `target_port`; endpoints with neither are skipped.
pub(super) fn service_endpoint(
    snap: &Snapshot,
    source: &Workload,
    svc: &Service,
    service_port: u16,
    rng: &mut impl Rng,
) -> Option<(Arc<Workload>, u16)> {
    let key = svc.key();
    let lb = svc.load_balancer.as_ref();
    let svc_target = svc.ports.get(&service_port).copied().filter(|p| *p != 0);
    let candidates = snap
        .endpoints(&key)
        .iter()
        .filter(|w| usable(lb, w))
        .filter_map(|w| {
            let port = w.target_port(&key, service_port).or(svc_target)?;
            Some((w, port))
        })
        .collect();
    pick(source, lb, candidates, rng).map(|(w, port)| (w.clone(), port))
}

/// One workload of a resolved waypoint. Behind a Service: that Service's endpoints, with its
/// health policy and routing preferences, weighted by capacity. Named directly (workload IP
/// or workload hostname): any of them, uniformly, whatever its health, as a workload-IP
/// destination would be.
pub(super) fn waypoint_workload(
    source: &Workload,
    service: Option<&Service>,
    workloads: &[Arc<Workload>],
    rng: &mut impl Rng,
) -> Option<Arc<Workload>> {
    let Some(svc) = service else {
        return workloads.choose(rng).cloned();
    };
    let lb = svc.load_balancer.as_ref();
    let candidates = workloads
        .iter()
        .filter(|w| usable(lb, w))
        .map(|w| (w, ()))
        .collect();
    pick(source, lb, candidates, rng).map(|(w, ())| w.clone())
}

/// Healthy, or any status under `health_policy=AllowAll`.
fn usable(lb: Option<&LoadBalancer>, w: &Workload) -> bool {
    w.status == HealthStatus::Healthy
        || lb.is_some_and(|lb| lb.health_policy == LoadBalancerHealthPolicy::AllowAll)
}

/// Drops drained endpoints, applies STRICT / FAILOVER, then picks weighted by capacity.
fn pick<'a, T>(
    source: &Workload,
    lb: Option<&LoadBalancer>,
    mut candidates: Vec<(&'a Arc<Workload>, T)>,
    rng: &mut impl Rng,
) -> Option<(&'a Arc<Workload>, T)> {
    candidates.retain(|(w, _)| w.capacity > 0);
    if let Some(lb) = lb {
        let prefs = &lb.routing_preferences;
        match lb.mode {
            LoadBalancerMode::Strict => {
                candidates.retain(|(w, _)| rank(source, prefs, w) == prefs.len())
            }
            LoadBalancerMode::Failover => {
                let best = candidates.iter().map(|(w, _)| rank(source, prefs, w)).max();
                candidates.retain(|(w, _)| Some(rank(source, prefs, w)) == best);
            }
            LoadBalancerMode::Standard | LoadBalancerMode::Passthrough => {}
        }
    }
    weighted(candidates, rng)
}

/// How many leading routing preferences `w` shares with `source`.
fn rank(source: &Workload, prefs: &[LoadBalancerScope], w: &Workload) -> usize {
    prefs
        .iter()
        .take_while(|scope| match scope {
            LoadBalancerScope::Region => source.locality.region == w.locality.region,
            LoadBalancerScope::Zone => source.locality.zone == w.locality.zone,
            LoadBalancerScope::Subzone => source.locality.subzone == w.locality.subzone,
            LoadBalancerScope::Node => source.node == w.node,
            LoadBalancerScope::Cluster => source.cluster_id == w.cluster_id,
            LoadBalancerScope::Network => source.network == w.network,
        })
        .count()
}

/// A random candidate, each with probability `capacity / total capacity`.
fn weighted<'a, T>(
    mut candidates: Vec<(&'a Arc<Workload>, T)>,
    rng: &mut impl Rng,
) -> Option<(&'a Arc<Workload>, T)> {
    let total: u64 = candidates.iter().map(|(w, _)| u64::from(w.capacity)).sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.random_range(0..total);
    let index = candidates.iter().position(|(w, _)| {
        let capacity = u64::from(w.capacity);
        if r < capacity {
            return true;
        }
        r -= capacity;
        false
    })?;
    Some(candidates.swap_remove(index))
}
