//! Local rate limiting (Envoy's `envoy.filters.http.local_ratelimit`): a token bucket per
//! filter config — the listener's, a virtual host's or a route's — shared by every request that
//! config applies to on this waypoint.
//!
//! The bucket starts full (`max_tokens`) and refills continuously at
//! `tokens_per_fill / fill_interval` tokens per second (fractions of a token included), up to
//! `max_tokens`; each request takes one whole token or is limited. This is Envoy's
//! `AtomicTokenBucket`, used by the local rate limit since envoyproxy/envoy#35207 instead of a
//! timer adding `tokens_per_fill` every `fill_interval`. The level is brought up to date when a
//! request arrives (no timer). A bucket belongs to the config that created it: a new route
//! configuration starts new buckets, as in Envoy.

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
    /// For the `x-ratelimit-*` headers, with Envoy's values (`RateLimitTokenBucket` in
    /// `local_ratelimit_impl.h`): `limit` is `max_tokens`; `remaining` the whole tokens left
    /// after this request; `reset_secs` the time until the next whole token, 0 while one is
    /// left, in whole seconds rounded down (Envoy divides its milliseconds by 1000 as integers).
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
    /// Tokens at `at`, fractions included; never above `max_tokens`.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// Envoy's slowest refill (`kMinFillRate`): one token a year.
const MIN_FILL_RATE: f64 = 1.0 / (365.0 * 24.0 * 60.0 * 60.0);

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
                tokens: f64::from(max_tokens),
                at: now,
            }),
        }
    }

    fn shape(&self) -> (u32, u32, Duration) {
        (self.max_tokens, self.tokens_per_fill, self.fill_interval)
    }

    /// Tokens per second (at least Envoy's minimum, so the next token is always finitely far).
    fn fill_rate(&self) -> f64 {
        (f64::from(self.tokens_per_fill) / self.fill_interval.as_secs_f64()).max(MIN_FILL_RATE)
    }

    /// Takes one token if there is a whole one, after adding what accrued by `now` (an earlier
    /// `now` than the last request's adds nothing).
    pub fn take(&self, now: Instant) -> Verdict {
        let rate = self.fill_rate();
        let max = f64::from(self.max_tokens);
        let mut l = self.level.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(l.at).as_secs_f64();
        l.tokens = (l.tokens + elapsed * rate).min(max);
        l.at = l.at.max(now);
        let allowed = l.tokens >= 1.0;
        if allowed {
            l.tokens -= 1.0;
        }
        let tokens = l.tokens.max(0.0);
        drop(l);
        // Saturating float-to-int casts: whole tokens, rounded down.
        let remaining = tokens.floor() as u32;
        let reset_secs = if tokens >= 1.0 {
            0
        } else {
            let next_token_ms = ((1.0 - tokens) / rate * 1000.0).ceil() as u64;
            next_token_ms / 1000
        };
        Verdict {
            allowed,
            limit: self.max_tokens,
            remaining,
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
        // 3 tokens/s: 250 ms in, three quarters of a token; the next whole one is 84 ms away,
        // which Envoy's header rounds down to 0 s.
        let v = b.take(t0 + Duration::from_millis(250));
        assert_eq!(
            (v.allowed, v.remaining, v.limit, v.reset_secs),
            (false, 0, 3, 0)
        );
        // A second in: three tokens again.
        let v = b.take(t0 + Duration::from_secs(1));
        assert_eq!((v.allowed, v.remaining, v.reset_secs), (true, 2, 0));
    }

    #[test]
    fn refill_is_continuous_and_capped_at_max() {
        let t0 = Instant::now();
        // 2 tokens every 100 ms: one token every 50 ms.
        let b = TokenBucket::new(10, 2, Duration::from_millis(100), t0);
        for _ in 0..10 {
            assert!(b.take(t0).allowed);
        }
        // Half an interval already brings a whole token (a timer-driven bucket waits 100 ms).
        assert!(!b.take(t0 + Duration::from_millis(40)).allowed);
        assert!(b.take(t0 + Duration::from_millis(50)).allowed);
        assert!(!b.take(t0 + Duration::from_millis(60)).allowed);
        // The fraction accrued before a refusal is kept: 60 → 100 ms completes the next token.
        assert!(b.take(t0 + Duration::from_millis(100)).allowed);
        // A long pause refills to the cap, not beyond.
        let v = b.take(t0 + Duration::from_secs(60));
        assert_eq!((v.allowed, v.remaining), (true, 9));
        // A request timed before the last one adds nothing and takes nothing back.
        let v = b.take(t0);
        assert_eq!((v.allowed, v.remaining), (true, 8));
    }

    #[test]
    fn requests_per_second_over_a_burst() {
        // 100/s as 10 tokens every 100 ms: a 2.5 s burst (one request every 0.5 ms) allows the
        // initial 100 plus about 250 refilled.
        let t0 = Instant::now();
        let b = TokenBucket::new(100, 10, Duration::from_millis(100), t0);
        let allowed = (0..5000)
            .filter(|i| b.take(t0 + Duration::from_micros(i * 500)).allowed)
            .count();
        assert!((349..=350).contains(&allowed), "{allowed}");
    }

    #[test]
    fn headers_follow_envoy() {
        let t0 = Instant::now();
        // One token every 4 s: after the only token, the next is 4 s away.
        let b = TokenBucket::new(1, 1, Duration::from_secs(4), t0);
        let v = b.take(t0);
        assert_eq!(
            (v.allowed, v.limit, v.remaining, v.reset_secs),
            (true, 1, 0, 4)
        );
        // 1.5 s later: 2.5 s to go, rounded down.
        let v = b.take(t0 + Duration::from_millis(1500));
        assert_eq!((v.allowed, v.remaining, v.reset_secs), (false, 0, 2));
        // Tokens left: reset 0, remaining in whole tokens.
        let b = TokenBucket::new(5, 1, Duration::from_secs(1), t0);
        let v = b.take(t0);
        assert_eq!((v.remaining, v.reset_secs), (4, 0));
        let v = b.take(t0 + Duration::from_millis(500));
        assert_eq!((v.remaining, v.reset_secs), (3, 0));
        // No tokens at all: nothing ever passes, and the header still has a finite reset.
        let b = TokenBucket::new(0, 1, Duration::from_secs(1), t0);
        let v = b.take(t0 + Duration::from_secs(100));
        assert_eq!(
            (v.allowed, v.limit, v.remaining, v.reset_secs),
            (false, 0, 0, 1)
        );
    }

    #[test]
    fn huge_intervals_and_times_do_not_panic() {
        let t0 = Instant::now();
        // About 10 000 years per token: the rate is held at Envoy's minimum of one a year.
        let b = TokenBucket::new(1, 1, Duration::from_secs(315_576_000_000), t0);
        assert!(b.take(t0).allowed);
        let v = b.take(t0 + Duration::from_secs(1));
        assert!(!v.allowed);
        assert_eq!(v.reset_secs, 365 * 24 * 60 * 60 - 1);
        let b = TokenBucket::new(u32::MAX, u32::MAX, Duration::MAX, t0);
        assert!(b.take(t0).allowed);
        let far = t0 + Duration::from_secs(1_000_000_000);
        let v = b.take(far);
        assert_eq!((v.allowed, v.remaining), (true, u32::MAX - 1));
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
