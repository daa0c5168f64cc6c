//! The backend's counters, served as one line on `GET /backend-stats`
//! (`accepted=… requests=… reads=… head_bytes=…`) and read back by the bench around
//! each run: how many connections a proxy opened, how its requests arrived (socket
//! reads per request), and how large their heads were (what a proxy adds to each request).

use std::sync::atomic::{AtomicU64, Ordering};

pub(super) static ACCEPTED: AtomicU64 = AtomicU64::new(0);
pub(super) static REQUESTS: AtomicU64 = AtomicU64::new(0);
pub(super) static READS: AtomicU64 = AtomicU64::new(0);
pub(super) static HEAD_BYTES: AtomicU64 = AtomicU64::new(0);

pub(super) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A snapshot of the counters, or (after [`Stats::since`]) what changed between two.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Stats {
    pub(crate) accepted: u64,
    pub(crate) requests: u64,
    pub(crate) reads: u64,
    pub(crate) head_bytes: u64,
}

impl Stats {
    pub(super) fn now() -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            accepted: get(&ACCEPTED),
            requests: get(&REQUESTS),
            reads: get(&READS),
            head_bytes: get(&HEAD_BYTES),
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Stats> {
        let mut s = Stats::default();
        for field in text.split_whitespace() {
            let (k, v) = field.split_once('=')?;
            let v = v.parse().ok()?;
            match k {
                "accepted" => s.accepted = v,
                "requests" => s.requests = v,
                "reads" => s.reads = v,
                "head_bytes" => s.head_bytes = v,
                _ => return None,
            }
        }
        Some(s)
    }

    /// What happened between `before` and `self`.
    pub(crate) fn since(self, before: Stats) -> Stats {
        Stats {
            accepted: self.accepted.saturating_sub(before.accepted),
            requests: self.requests.saturating_sub(before.requests),
            reads: self.reads.saturating_sub(before.reads),
            head_bytes: self.head_bytes.saturating_sub(before.head_bytes),
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "accepted={} requests={} reads={} head_bytes={}",
            self.accepted, self.requests, self.reads, self.head_bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_difference() {
        let s = Stats {
            accepted: 3,
            requests: 10,
            reads: 12,
            head_bytes: 900,
        };
        assert_eq!(Stats::parse(&s.to_string()), Some(s));
        assert_eq!(Stats::parse("accepted=x"), None);
        let later = Stats { requests: 30, ..s };
        assert_eq!(later.since(s).requests, 20);
    }
}
