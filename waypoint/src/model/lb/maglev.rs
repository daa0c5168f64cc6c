//! MAGLEV (Eisenbud et al., NSDI 2016, as weighted in Envoy): a lookup table of prime size `M`
//! filled by letting endpoints, in turn, claim the next free entry of their own permutation
//! `(offset + next · skip) mod M`, with `offset = xxh64(addr) mod M` and
//! `skip = xxh64(addr, seed 1) mod (M − 1) + 1`. An endpoint of weight `w` takes a turn in
//! `w / max weight` of the rounds. Endpoints take turns in address order, so the table does not
//! depend on endpoint order.

use crate::model::Endpoint;
use crate::model::hash::xxh64;

/// Alternative hashes tried for a skipped endpoint before scanning the table.
const RETRY_HASHES: u64 = 32;

pub(super) struct Table {
    /// Host slot per entry (empty when there are no hosts).
    entries: Vec<u32>,
}

struct Builder {
    slot: u32,
    offset: u64,
    skip: u64,
    next: u64,
    weight: u64,
    target: u64,
}

impl Table {
    pub(super) fn new(
        endpoints: &[Endpoint],
        hosts: &[usize],
        weights: &[u64],
        table_size: u64,
    ) -> Table {
        let m = table_size;
        let max_weight = weights.iter().copied().max().unwrap_or(0);
        if hosts.is_empty() || max_weight == 0 || m < 2 {
            return Table {
                entries: Vec::new(),
            };
        }
        let mut order: Vec<usize> = (0..hosts.len()).filter(|s| weights[*s] > 0).collect();
        order.sort_by_key(|s| endpoints[hosts[*s]].address);
        let mut builders: Vec<Builder> = order
            .into_iter()
            .filter_map(|s| {
                let key = endpoints[hosts[s]].address.to_string();
                Some(Builder {
                    slot: u32::try_from(s).ok()?,
                    offset: xxh64(key.as_bytes(), 0) % m,
                    skip: xxh64(key.as_bytes(), 1) % (m - 1) + 1,
                    next: 0,
                    weight: weights[s],
                    target: 0,
                })
            })
            .collect();
        let size = usize::try_from(m).unwrap_or(usize::MAX);
        let mut entries: Vec<Option<u32>> = vec![None; size];
        let mut filled = 0usize;
        let mut round = 1u64;
        while filled < size {
            for b in &mut builders {
                if filled == size {
                    break;
                }
                if round.saturating_mul(b.weight) < b.target {
                    continue;
                }
                b.target = b.target.saturating_add(max_weight);
                loop {
                    let c = ((u128::from(b.offset) + u128::from(b.skip) * u128::from(b.next))
                        % u128::from(m)) as usize;
                    b.next += 1;
                    if entries[c].is_none() {
                        entries[c] = Some(b.slot);
                        filled += 1;
                        break;
                    }
                }
            }
            round += 1;
        }
        Table {
            entries: entries.into_iter().map(|e| e.unwrap_or(0)).collect(),
        }
    }

    /// The slot for `hash`; a skipped slot is replaced by trying Envoy's alternative hashes
    /// (`hash ^ (!0 − k + 1)`), then the following entries.
    pub(super) fn lookup(&self, hash: u64, skip: &dyn Fn(usize) -> bool) -> usize {
        let m = self.entries.len() as u64;
        if m == 0 {
            return 0;
        }
        let at = |h: u64| self.entries[(h % m) as usize] as usize;
        let first = at(hash);
        if !skip(first) {
            return first;
        }
        (1..=RETRY_HASHES)
            .map(|k| at(hash ^ (u64::MAX - k + 1)))
            .chain((1..m).map(|k| at(hash % m + k)))
            .find(|s| !skip(*s))
            .unwrap_or(first)
    }

    #[cfg(test)]
    pub(super) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries.iter().copied()
    }
}
