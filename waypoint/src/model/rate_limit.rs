//! Local rate limiting (Envoy's `envoy.filters.http.local_ratelimit`): a token bucket per
//! filter config — the listener's, a virtual host's or a route's — shared by every request that
//! config applies to on this waypoint.
//!
//! The bucket starts full (`max_tokens`) and gains `tokens_per_fill` every `fill_interval`, up to
//! `max_tokens`; each request takes one token or is limited. Fills are computed from elapsed
//! time when a request arrives (no timer), in whole intervals, as Envoy's timer-driven bucket
//! fills. A bucket belongs to the config that created it: a new route configuration starts new
//! buckets, as in Envoy.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::StatusCode;

use super::{HeaderChanges, Share};

/// One local rate limit config.
#[derive(Debug)]
pub struct RateLimit {
    pub stat_prefix: String,
    /// The limited response's status (Envoy's default 429).
    pub status: StatusCode,
    /// `None`: no token bucket, so nothing is limited.
    pub bucket: Option<TokenBucket>,
    /// `filter_enabled`: share of requests checked against the bucket (Envoy's default 0 %).
    pub enabled: Share,
    /// `filter_enforced`: share of checked-and-limited requests actually refused (default 0 %:
    /// counted only).
    pub enforced: Share,
    /// `response_headers_to_add`, on limited responses.
    pub response_headers: HeaderChanges,
    /// `enable_x_ratelimit_headers: DRAFT_VERSION_03`: `x-ratelimit-limit`, `-remaining` and
    /// `-reset` on every response the bucket was checked for.
    pub x_ratelimit_headers: bool,
    /// `rate_limited_as_resource_exhausted`: gRPC `RESOURCE_EXHAUSTED` (8) instead of
    /// `UNAVAILABLE` (14).
    pub grpc_resource_exhausted: bool,
}

impl PartialEq for RateLimit {
    /// Configs compare by what they say, not by their buckets' levels.
    fn eq(&self, o: &Self) -> bool {
        self.stat_prefix == o.stat_prefix
            && self.status == o.status
            && self.bucket.as_ref().map(TokenBucket::shape)
                == o.bucket.as_ref().map(TokenBucket::shape)
            && self.enabled == o.enabled
            && self.enforced == o.enforced
            && self.response_headers == o.response_headers
            && self.x_ratelimit_headers == o.x_ratelimit_headers
            && self.grpc_resource_exhausted == o.grpc_resource_exhausted
    }
}

/// What the bucket said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// A token was taken (or the bucket was not checked).
    pub allowed: bool,
    /// For the `x-ratelimit-*` headers: the bucket size, tokens left, and whole seconds until the
    /// next fill (at least 1 when tokens are short, as clients use it to wait).
    pub limit: u32,
    pub remaining: u32,
    pub reset_secs: u64,
}

/// A token bucket; its level is the only mutable state of the waypoint's model.
#[derive(Debug)]
pub struct TokenBucket {
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    pub fill_interval: Duration,
    level: Mutex<Level>,
}

#[derive(Debug, Clone, Copy)]
struct Level {
    tokens: u32,
    /// Start of the current fill interval.
    since: Instant,
}

impl TokenBucket {
    /// A full bucket. `fill_interval` must be positive (the xDS boundary checks it).
    pub fn new(
        max_tokens: u32,
        tokens_per_fill: u32,
        fill_interval: Duration,
        now: Instant,
    ) -> Self {
        Self {
            max_tokens,
            tokens_per_fill,
            fill_interval: fill_interval.max(Duration::from_millis(1)),
            level: Mutex::new(Level {
                tokens: max_tokens,
                since: now,
            }),
        }
    }

    fn shape(&self) -> (u32, u32, Duration) {
        (self.max_tokens, self.tokens_per_fill, self.fill_interval)
    }

    /// Takes one token if there is one, after adding the fills due by `now`.
    pub fn take(&self, now: Instant) -> Verdict {
        let mut l = self.level.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(l.since);
        let fills = elapsed.as_nanos() / self.fill_interval.as_nanos().max(1);
        if fills > 0 {
            let added = u128::from(self.tokens_per_fill).saturating_mul(fills);
            let tokens = (u128::from(l.tokens) + added).min(u128::from(self.max_tokens));
            l.tokens = u32::try_from(tokens).unwrap_or(self.max_tokens);
            // Whole intervals only: the partial one keeps counting.
            let step = self
                .fill_interval
                .saturating_mul(u32::try_from(fills).unwrap_or(u32::MAX));
            l.since = l.since.checked_add(step).unwrap_or(now);
        }
        let allowed = l.tokens > 0;
        if allowed {
            l.tokens -= 1;
        }
        let next_fill = (l.since + self.fill_interval).saturating_duration_since(now);
        let mut reset_secs = next_fill.as_secs();
        if next_fill.subsec_nanos() > 0 || reset_secs == 0 {
            reset_secs += 1;
        }
        Verdict {
            allowed,
            limit: self.max_tokens,
            remaining: l.tokens,
            reset_secs,
        }
    }
}

/// The decision for one request under `limit`, with uniform draws in `0..1_000_000` for the
/// enabled and enforced shares.
pub fn decide(limit: &RateLimit, now: Instant, enabled_draw: u32, enforced_draw: u32) -> Decision {
    let Some(bucket) = &limit.bucket else {
        return Decision::Pass;
    };
    if !limit.enabled.hit(enabled_draw) {
        return Decision::Pass;
    }
    let v = bucket.take(now);
    if v.allowed {
        Decision::Allowed(v)
    } else if limit.enforced.hit(enforced_draw) {
        Decision::Limited(v)
    } else {
        Decision::LimitedNotEnforced(v)
    }
}

/// What the rate-limit filter does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not checked (no bucket, or outside the enabled share).
    Pass,
    /// A token was taken.
    Allowed(Verdict),
    /// Out of tokens: refuse with the config's status.
    Limited(Verdict),
    /// Out of tokens but outside the enforced share: let through (counted).
    LimitedNotEnforced(Verdict),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(bucket: Option<TokenBucket>, enabled: Share, enforced: Share) -> RateLimit {
        RateLimit {
            stat_prefix: "test".into(),
            status: StatusCode::TOO_MANY_REQUESTS,
            bucket,
            enabled,
            enforced,
            response_headers: HeaderChanges::default(),
            x_ratelimit_headers: true,
            grpc_resource_exhausted: false,
        }
    }

    #[test]
    fn a_full_bucket_allows_max_tokens_then_limits() {
        let t0 = Instant::now();
        let b = TokenBucket::new(3, 3, Duration::from_secs(1), t0);
        let got: Vec<bool> = (0..5).map(|_| b.take(t0).allowed).collect();
        assert_eq!(got, [true, true, true, false, false]);
        let v = b.take(t0 + Duration::from_millis(300));
        assert_eq!(
            (v.allowed, v.remaining, v.limit, v.reset_secs),
            (false, 0, 3, 1)
        );
    }

    #[test]
    fn fills_come_in_whole_intervals_and_cap_at_max() {
        let t0 = Instant::now();
        let b = TokenBucket::new(10, 2, Duration::from_millis(100), t0);
        for _ in 0..10 {
            assert!(b.take(t0).allowed);
        }
        assert!(!b.take(t0 + Duration::from_millis(99)).allowed);
        // One interval: two tokens.
        assert!(b.take(t0 + Duration::from_millis(100)).allowed);
        assert!(b.take(t0 + Duration::from_millis(150)).allowed);
        assert!(!b.take(t0 + Duration::from_millis(199)).allowed);
        // The partial interval still counts toward the next fill.
        assert!(b.take(t0 + Duration::from_millis(200)).allowed);
        // A long pause refills to the cap, not beyond.
        let v = b.take(t0 + Duration::from_secs(60));
        assert_eq!((v.allowed, v.remaining), (true, 9));
    }

    #[test]
    fn requests_per_second_over_a_burst() {
        // 100/s as 10 tokens every 100 ms: a 2.5 s burst allows the initial 100 plus 24 fills.
        let t0 = Instant::now();
        let b = TokenBucket::new(100, 10, Duration::from_millis(100), t0);
        let allowed = (0..5000)
            .filter(|i| b.take(t0 + Duration::from_micros(i * 500)).allowed)
            .count();
        assert_eq!(allowed, 100 + 24 * 10);
    }

    #[test]
    fn shares_decide_what_is_checked_and_refused() {
        let t0 = Instant::now();
        let none = limit(None, Share::ALL, Share::ALL);
        assert_eq!(decide(&none, t0, 0, 0), Decision::Pass);
        let off = limit(
            Some(TokenBucket::new(1, 1, Duration::from_secs(1), t0)),
            Share::NONE,
            Share::ALL,
        );
        assert_eq!(decide(&off, t0, 0, 0), Decision::Pass);
        let shadow = limit(
            Some(TokenBucket::new(1, 1, Duration::from_secs(1), t0)),
            Share::ALL,
            Share::NONE,
        );
        assert!(matches!(decide(&shadow, t0, 0, 0), Decision::Allowed(_)));
        assert!(matches!(
            decide(&shadow, t0, 0, 0),
            Decision::LimitedNotEnforced(_)
        ));
        let on = limit(
            Some(TokenBucket::new(1, 1, Duration::from_secs(1), t0)),
            Share::ALL,
            Share::ALL,
        );
        assert!(matches!(decide(&on, t0, 999_999, 0), Decision::Allowed(_)));
        assert!(matches!(decide(&on, t0, 0, 999_999), Decision::Limited(_)));
    }

    #[test]
    fn configs_compare_by_shape_not_level() {
        let t0 = Instant::now();
        let a = limit(
            Some(TokenBucket::new(2, 1, Duration::from_secs(1), t0)),
            Share::ALL,
            Share::ALL,
        );
        let b = limit(
            Some(TokenBucket::new(2, 1, Duration::from_secs(1), t0)),
            Share::ALL,
            Share::ALL,
        );
        a.bucket.as_ref().map(|b| b.take(t0));
        assert_eq!(a, b);
        let c = limit(
            Some(TokenBucket::new(3, 1, Duration::from_secs(1), t0)),
            Share::ALL,
            Share::ALL,
        );
        assert_ne!(a, c);
    }
}
