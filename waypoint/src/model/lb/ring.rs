//! RING_HASH: each endpoint owns `weight × per_unit` points on a 64-bit ring, at
//! `xxh64("<ip:port>_<i>")` as in Envoy; a hash belongs to the first point at or after it.
//!
//! `per_unit` is `minimum_ring_size / total weight` rounded up to a power of two, so it stays
//! the same while the total weight changes by less than a factor of two: removing an endpoint
//! then moves only the keys it owned, adding one only the keys it takes. Points are sorted by
//! (hash, address), so the ring does not depend on endpoint order. The ring holds at most
//! `max(2 × minimum_ring_size, 2^20)` points (fewer per unit beyond that).

use crate::model::Endpoint;
use crate::model::hash::xxh64;

/// The most points a ring holds, whatever its minimum size (Envoy's `maximum_ring_size`).
const MAX_POINTS: u64 = 8 * 1024 * 1024;

pub(super) struct Ring {
    /// `(hash, host slot)`, sorted by hash.
    points: Vec<(u64, u32)>,
}

impl Ring {
    pub(super) fn new(
        endpoints: &[Endpoint],
        hosts: &[usize],
        weights: &[u64],
        minimum_ring_size: u64,
    ) -> Ring {
        let total: u64 = weights.iter().sum();
        if total == 0 {
            return Ring { points: Vec::new() };
        }
        let cap = minimum_ring_size
            .saturating_mul(2)
            .clamp(1 << 20, MAX_POINTS);
        let per_unit = minimum_ring_size.div_ceil(total).max(1).next_power_of_two();
        let count = |w: u64| -> u64 {
            if w == 0 {
                0
            } else if total.saturating_mul(per_unit) <= cap {
                w * per_unit
            } else {
                // Too many points: scale down proportionally (at least one each).
                (u128::from(w) * u128::from(cap) / u128::from(total)).max(1) as u64
            }
        };
        let mut points: Vec<(u64, u32)> = Vec::new();
        let mut key = String::new();
        for (slot, (&host, &w)) in hosts.iter().zip(weights).enumerate() {
            let Ok(slot) = u32::try_from(slot) else { break };
            let address = endpoints[host].address.to_string();
            for i in 0..count(w) {
                key.clear();
                key.push_str(&address);
                key.push('_');
                key.push_str(&i.to_string());
                points.push((xxh64(key.as_bytes(), 0), slot));
            }
        }
        let addr = |slot: u32| endpoints[hosts[slot as usize]].address;
        points.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| addr(a.1).cmp(&addr(b.1))));
        Ring { points }
    }

    /// The slot owning `hash`, walking on past skipped slots (the caller guarantees one is
    /// not skipped, or skips nothing).
    pub(super) fn lookup(&self, hash: u64, skip: &dyn Fn(usize) -> bool) -> usize {
        let n = self.points.len();
        if n == 0 {
            return 0;
        }
        let start = self.points.partition_point(|p| p.0 < hash) % n;
        (0..n)
            .map(|k| self.points[(start + k) % n].1 as usize)
            .find(|s| !skip(*s))
            .unwrap_or(self.points[start].1 as usize)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.points.len()
    }
}
