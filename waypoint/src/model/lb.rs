//! Load balancing over a cluster's endpoints, precomputed per endpoint set ([`Balancer::new`])
//! and picked per request ([`Balancer::pick`]) without locks.
//!
//! * Which endpoints: the best (lowest) priority level that has a healthy endpoint; within it
//!   the healthy ones, or all of them when fewer than the cluster's panic threshold (Envoy's
//!   default 50 %) are healthy (Envoy's panic mode; with a threshold of 0 never). Lower levels take no spill-over traffic.
//! * ROUND_ROBIN: plain rotation when weights are equal; otherwise each cycle of `W` (the
//!   weight total) picks visits the weight ranges in the order `k · stride mod W` (a stride
//!   coprime to `W`), so every endpoint gets exactly its weight per cycle, interleaved.
//! * RANDOM: weighted. LEAST_REQUEST: `choice_count` weighted draws, the one with fewest active
//!   requests wins (a full scan when `choice_count` covers every endpoint); Envoy's
//!   weight-by-active-requests formula for unequal weights is not used.
//! * RING_HASH (`ring`) and MAGLEV (`maglev`) place endpoints by address, so they do not
//!   depend on endpoint order; without a hash they pick like RANDOM.
//!
//! `exclude` (hosts already tried) is honoured whenever a non-excluded endpoint exists.

mod maglev;
mod ring;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Endpoint, LbPolicy};

enum Kind {
    RoundRobin,
    LeastRequest { choice_count: u32 },
    Random,
    Ring(ring::Ring),
    Maglev(maglev::Table),
}

/// The load balancer of one endpoint set. `Send + Sync`; picks take `&self`.
pub struct Balancer {
    policy: LbPolicy,
    kind: Kind,
    /// Indices (into the endpoints given to `new`) that take traffic.
    hosts: Vec<usize>,
    /// Running sums of the hosts' weights (`cumulative[i]` = weights of `hosts[..=i]`).
    cumulative: Vec<u64>,
    uniform: bool,
    /// For weighted round robin: coprime to the weight total.
    stride: u64,
    cursor: AtomicUsize,
    panic: bool,
}

impl fmt::Debug for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field("policy", &self.policy)
            .field("hosts", &self.hosts)
            .field("panic", &self.panic)
            .finish_non_exhaustive()
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A stride near `total / φ` that is coprime to `total`.
fn stride(total: u64) -> u64 {
    if total <= 1 {
        return 1;
    }
    let mut s = ((total as f64) * 0.618_033_988_75) as u64;
    s = s.max(1);
    while gcd(s, total) != 1 {
        s += 1;
    }
    s
}

/// The endpoints that take traffic, and whether that is the panic set (fewer than
/// `panic_threshold` percent of the level healthy).
fn select_hosts(endpoints: &[Endpoint], panic_threshold: u32) -> (Vec<usize>, bool) {
    let level = endpoints
        .iter()
        .filter(|e| e.healthy)
        .map(|e| e.priority)
        .min()
        .or_else(|| endpoints.iter().map(|e| e.priority).min());
    let Some(level) = level else {
        return (Vec::new(), false);
    };
    let in_level: Vec<usize> = (0..endpoints.len())
        .filter(|i| endpoints[*i].priority == level)
        .collect();
    let healthy: Vec<usize> = in_level
        .iter()
        .copied()
        .filter(|i| endpoints[*i].healthy)
        .collect();
    if panics(healthy.len(), in_level.len(), panic_threshold) {
        (in_level, true)
    } else {
        (healthy, false)
    }
}

/// Whether `healthy` of `total` hosts is below `threshold` percent (Envoy's panic mode).
pub fn panics(healthy: usize, total: usize, threshold: u32) -> bool {
    healthy * 100 < total * usize::try_from(threshold.min(100)).unwrap_or(100)
}

impl Balancer {
    /// A balancer with Envoy's default panic threshold (50 %).
    pub fn new(policy: LbPolicy, endpoints: &[Endpoint]) -> Balancer {
        Self::with_panic_threshold(policy, endpoints, 50)
    }

    pub fn with_panic_threshold(
        policy: LbPolicy,
        endpoints: &[Endpoint],
        panic_threshold: u32,
    ) -> Balancer {
        let (hosts, panic) = select_hosts(endpoints, panic_threshold);
        // Weight 0 cannot come from xDS; were it given, such an endpoint gets no traffic
        // (unless all are 0, then all count as 1).
        // Weights are divided by their greatest common divisor (90/10 → 9/1), which keeps
        // round-robin cycles short.
        let all_zero = hosts.iter().all(|i| endpoints[*i].weight == 0);
        let divisor = hosts
            .iter()
            .fold(0, |g, i| gcd(g, u64::from(endpoints[*i].weight)))
            .max(1);
        let weight = |i: usize| {
            if all_zero {
                1
            } else {
                u64::from(endpoints[i].weight) / divisor
            }
        };
        let mut cumulative = Vec::with_capacity(hosts.len());
        let mut sum = 0u64;
        for &i in &hosts {
            sum += weight(i);
            cumulative.push(sum);
        }
        let uniform = hosts.windows(2).all(|w| weight(w[0]) == weight(w[1]));
        let weights: Vec<u64> = hosts.iter().map(|&i| weight(i)).collect();
        let kind = match policy {
            LbPolicy::RoundRobin => Kind::RoundRobin,
            LbPolicy::Random => Kind::Random,
            LbPolicy::LeastRequest { choice_count } => Kind::LeastRequest { choice_count },
            LbPolicy::RingHash { minimum_ring_size } => Kind::Ring(ring::Ring::new(
                endpoints,
                &hosts,
                &weights,
                minimum_ring_size,
            )),
            LbPolicy::Maglev { table_size } => {
                Kind::Maglev(maglev::Table::new(endpoints, &hosts, &weights, table_size))
            }
        };
        Balancer {
            policy,
            kind,
            stride: stride(sum),
            hosts,
            cumulative,
            uniform,
            cursor: AtomicUsize::new(0),
            panic,
        }
    }

    /// The policy this balancer was built for.
    pub fn policy(&self) -> LbPolicy {
        self.policy
    }

    /// No endpoint to pick.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Fewer than half of the chosen priority level's endpoints are healthy, so all of them
    /// take traffic.
    pub fn in_panic(&self) -> bool {
        self.panic
    }

    /// An index into the endpoints given to [`Balancer::new`]; `None` only when there are none.
    /// `hash` is the request's hash (consistent-hash policies; `None` picks randomly),
    /// `active(i)` the requests in flight to endpoint `i`, `exclude(i)` true for endpoints to
    /// avoid (already tried), `rand` a uniform random source.
    pub fn pick(
        &self,
        hash: Option<u64>,
        active: &dyn Fn(usize) -> u32,
        exclude: &dyn Fn(usize) -> bool,
        rand: &mut dyn FnMut() -> u64,
    ) -> Option<usize> {
        if self.hosts.is_empty() {
            return None;
        }
        // Computed only when a pick lands on an excluded endpoint.
        let all_excluded = std::cell::OnceCell::new();
        let skip = |slot: usize| {
            exclude(self.hosts[slot])
                && !*all_excluded.get_or_init(|| self.hosts.iter().all(|&i| exclude(i)))
        };
        let slot = match (&self.kind, hash) {
            (Kind::RoundRobin, _) => self.round_robin(&skip),
            (Kind::LeastRequest { choice_count }, _) => {
                self.least_request(*choice_count, active, &skip, rand)
            }
            (Kind::Ring(r), Some(h)) => r.lookup(h, &skip),
            (Kind::Maglev(t), Some(h)) => t.lookup(h, &skip),
            (Kind::Random | Kind::Ring(_) | Kind::Maglev(_), _) => self.random(&skip, rand),
        };
        self.hosts.get(slot).copied()
    }

    fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The host slot whose weight range holds `point` (`< total`).
    fn slot_at(&self, point: u64) -> usize {
        self.cumulative
            .partition_point(|&end| end <= point)
            .min(self.hosts.len() - 1)
    }

    /// The next slot after `slot` (cyclically) that is not skipped, or `slot` itself.
    fn next_allowed(&self, slot: usize, skip: &dyn Fn(usize) -> bool) -> usize {
        let n = self.hosts.len();
        (0..n)
            .map(|k| (slot + k) % n)
            .find(|s| !skip(*s))
            .unwrap_or(slot)
    }

    fn round_robin(&self, skip: &dyn Fn(usize) -> bool) -> usize {
        let c = self.cursor.fetch_add(1, Ordering::Relaxed) as u64;
        let slot = if self.uniform {
            (c % self.hosts.len() as u64) as usize
        } else {
            let total = self.total();
            let point =
                (u128::from(c % total) * u128::from(self.stride) % u128::from(total)) as u64;
            self.slot_at(point)
        };
        self.next_allowed(slot, skip)
    }

    /// A weighted random slot, not skipped when possible.
    fn random(&self, skip: &dyn Fn(usize) -> bool, rand: &mut dyn FnMut() -> u64) -> usize {
        let slot = self.slot_at(rand() % self.total());
        if !skip(slot) {
            return slot;
        }
        // Weighted among the allowed ones.
        let allowed: Vec<(usize, u64)> = (0..self.hosts.len())
            .filter(|s| !skip(*s))
            .map(|s| (s, self.weight(s)))
            .collect();
        let total: u64 = allowed.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return self.next_allowed(slot, skip);
        }
        let mut point = rand() % total;
        for (s, w) in &allowed {
            if point < *w {
                return *s;
            }
            point -= w;
        }
        slot
    }

    fn weight(&self, slot: usize) -> u64 {
        let before = if slot == 0 {
            0
        } else {
            self.cumulative[slot - 1]
        };
        self.cumulative[slot] - before
    }

    fn least_request(
        &self,
        choice_count: u32,
        active: &dyn Fn(usize) -> u32,
        skip: &dyn Fn(usize) -> bool,
        rand: &mut dyn FnMut() -> u64,
    ) -> usize {
        let n = self.hosts.len();
        let load = |slot: usize| active(self.hosts[slot]);
        if choice_count as usize >= n {
            // Every endpoint is a candidate: the least loaded, ties broken at random.
            let allowed: Vec<usize> = (0..n).filter(|s| !skip(*s)).collect();
            let min = allowed.iter().map(|&s| load(s)).min().unwrap_or(0);
            let ties: Vec<usize> = allowed.into_iter().filter(|&s| load(s) == min).collect();
            return ties
                .get((rand() % ties.len().max(1) as u64) as usize)
                .copied()
                .unwrap_or(0);
        }
        let mut best: Option<usize> = None;
        for _ in 0..choice_count {
            let s = self.random(skip, rand);
            if best.is_none_or(|b| load(s) < load(b)) {
                best = Some(s);
            }
        }
        best.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
