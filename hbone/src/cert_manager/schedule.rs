//! Pure timing decisions of the certificate manager (spec §6): refresh at half-life, and on
//! failure exponential backoff (≈1 s, ×2, ±20 % jitter, max 150 s) capped by the current
//! certificate's expiry so that an expired certificate is dropped on time.

use std::time::{Duration, SystemTime};

/// Backoff policy.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Upper bound.
    pub max: Duration,
    /// Relative jitter, e.g. 0.2 for ±20 %.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(150),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// Delay after the `failures`-th consecutive failure (1-based); `unit` ∈ [0, 1) picks the jitter.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(factor).min(self.max)
    }
}

/// How long to wait after a successful fetch: until the half-life point.
pub(crate) fn after_success(now: SystemTime, refresh_at: SystemTime) -> Duration {
    refresh_at.duration_since(now).unwrap_or(Duration::ZERO)
}

/// How long to wait after a failed fetch: the backoff, but no later than the expiry of the
/// certificate still in use (if any).
pub(crate) fn after_failure(
    now: SystemTime,
    expiry: Option<SystemTime>,
    backoff: Duration,
) -> Duration {
    match expiry.map(|e| e.duration_since(now).unwrap_or(Duration::ZERO)) {
        Some(left) => backoff.min(left),
        None => backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 0.5), Duration::from_secs(1));
        assert_eq!(b.delay(2, 0.5), Duration::from_secs(2));
        assert_eq!(b.delay(5, 0.5), Duration::from_secs(16));
        assert_eq!(b.delay(40, 0.5), Duration::from_secs(150));
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(800));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(1200));
        assert!(b.delay(100, 1.0) <= Duration::from_secs(150));
    }

    #[test]
    fn schedule_table() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let s = Duration::from_secs;
        assert_eq!(after_success(t0, t0 + s(30)), s(30));
        assert_eq!(after_success(t0, t0 - s(5)), Duration::ZERO);
        assert_eq!(after_failure(t0, None, s(4)), s(4));
        assert_eq!(after_failure(t0, Some(t0 + s(60)), s(4)), s(4));
        assert_eq!(after_failure(t0, Some(t0 + s(2)), s(4)), s(2));
        assert_eq!(after_failure(t0, Some(t0 - s(2)), s(4)), Duration::ZERO);
    }
}
