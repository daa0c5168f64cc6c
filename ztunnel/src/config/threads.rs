//! How many runtime worker threads to start: `ZTUNNEL_WORKER_THREADS` when set, else what Istio's ztunnel chart
//! tells us about the container's CPU (`ZTUNNEL_RESOURCE_CPU_LIMIT` / `ZTUNNEL_CPU_LIMIT` and
//! `ZTUNNEL_RESOURCE_CPU_REQUEST`, filled from the pod's resources by the kubelet), else the machine's CPUs.

use super::vars::{
    EnvVar, ZTUNNEL_CPU_LIMIT, ZTUNNEL_RESOURCE_CPU_LIMIT, ZTUNNEL_RESOURCE_CPU_REQUEST,
    ZTUNNEL_WORKER_THREADS,
};
use super::{ConfigError, Env, get};

/// Threads when nothing asks for more: upstream ztunnel's default.
const DEFAULT_THREADS: usize = 2;

/// A whole number of CPUs (the chart's resourceFieldRef uses divisor 1, which rounds up); 0 means unset.
fn cpus_from(env: &Env, var: EnvVar) -> Result<Option<usize>, ConfigError> {
    let Some(v) = get(env, var) else {
        return Ok(None);
    };
    let n: usize = v.trim().parse().map_err(|_| ConfigError::Invalid {
        var: var.name,
        value: v.to_owned(),
        reason: "expected a whole number of CPUs".into(),
    })?;
    Ok((n > 0).then_some(n))
}

/// The CPUs this container may use: its limit when the chart passed one, else the machine's.
fn usable_cpus(env: &Env, machine: usize) -> Result<usize, ConfigError> {
    Ok(match cpus_from(env, ZTUNNEL_RESOURCE_CPU_LIMIT)? {
        Some(n) => n,
        None => cpus_from(env, ZTUNNEL_CPU_LIMIT)?.unwrap_or(machine),
    })
}

pub(super) fn worker_threads(env: &Env) -> Result<usize, ConfigError> {
    let machine = std::thread::available_parallelism().map_or(DEFAULT_THREADS, |n| n.get());
    worker_threads_on(env, machine)
}

/// [`worker_threads`] on a machine with `machine` CPUs: `N`, `N%` of the usable CPUs, or by default
/// `max(2, CPU request)` capped at the usable CPUs.
pub(super) fn worker_threads_on(env: &Env, machine: usize) -> Result<usize, ConfigError> {
    let cpus = usable_cpus(env, machine)?;
    let Some(v) = get(env, ZTUNNEL_WORKER_THREADS) else {
        let request = cpus_from(env, ZTUNNEL_RESOURCE_CPU_REQUEST)?.unwrap_or(0);
        return Ok(DEFAULT_THREADS.max(request).min(cpus));
    };
    let invalid = |reason: &str| ConfigError::Invalid {
        var: ZTUNNEL_WORKER_THREADS.name,
        value: v.to_owned(),
        reason: reason.into(),
    };
    let n = match v.strip_suffix('%') {
        Some(pct) => {
            let pct: usize = pct.parse().map_err(|_| invalid("expected N or N%"))?;
            (cpus * pct).div_ceil(100)
        }
        None => v.parse().map_err(|_| invalid("expected N or N%"))?,
    };
    if n == 0 {
        return Err(invalid("must be at least 1"));
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn on(pairs: &[(&str, &str)], machine: usize) -> Result<usize, ConfigError> {
        let env = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        worker_threads_on(&env, machine)
    }

    #[test]
    fn default_is_two_capped_by_the_usable_cpus() {
        assert_eq!(on(&[], 16).unwrap(), 2);
        assert_eq!(on(&[], 1).unwrap(), 1);
        // Istio's chart: no limit set gives the node's allocatable CPUs; the request (200m) rounds up to 1.
        let chart = [
            ("ZTUNNEL_CPU_LIMIT", "16"),
            ("ZTUNNEL_RESOURCE_CPU_REQUEST", "1"),
        ];
        assert_eq!(on(&chart, 16).unwrap(), 2);
        assert_eq!(on(&[("ZTUNNEL_CPU_LIMIT", "1")], 16).unwrap(), 1);
        assert_eq!(on(&[("ZTUNNEL_RESOURCE_CPU_LIMIT", "1")], 16).unwrap(), 1);
    }

    #[test]
    fn a_larger_request_raises_the_default_up_to_the_limit() {
        assert_eq!(on(&[("ZTUNNEL_RESOURCE_CPU_REQUEST", "4")], 16).unwrap(), 4);
        let capped = [
            ("ZTUNNEL_RESOURCE_CPU_REQUEST", "4"),
            ("ZTUNNEL_RESOURCE_CPU_LIMIT", "3"),
        ];
        assert_eq!(on(&capped, 16).unwrap(), 3);
    }

    #[test]
    fn explicit_counts_and_percentages_of_the_limit() {
        assert_eq!(on(&[("ZTUNNEL_WORKER_THREADS", "5")], 2).unwrap(), 5);
        let pct = [
            ("ZTUNNEL_WORKER_THREADS", "50%"),
            ("ZTUNNEL_CPU_LIMIT", "8"),
        ];
        assert_eq!(on(&pct, 64).unwrap(), 4);
        assert!(on(&[("ZTUNNEL_WORKER_THREADS", "0")], 2).is_err());
        let err = on(&[("ZTUNNEL_CPU_LIMIT", "1.5")], 2).unwrap_err();
        assert!(err.to_string().contains("ZTUNNEL_CPU_LIMIT"), "{err}");
    }
}
