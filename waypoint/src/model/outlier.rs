//! Outlier detection (Envoy's consecutive-errors detectors) for one host: count consecutive
//! 5xx and gateway failures from the host's responses, eject the host when a count reaches its
//! threshold (if the cluster's ejection cap allows), and bring it back once its ejection time has
//! passed.
//!
//! As in Envoy: a local failure (connect failure, reset, timeout) counts as a 5xx and as a
//! gateway failure; 502/503/504 are gateway failures; any non-5xx response resets both counts;
//! the n-th ejection lasts `base_ejection_time × n`, capped by `max_ejection_time`, and a host
//! that stays healthy for an `interval` after coming back has its multiplier reduced by one.
//! Restoration happens when a pick or sweep finds the time has passed (no timer per host).

use std::time::{Duration, Instant};

use super::OutlierDetection;
use super::action::AttemptOutcome;

/// One host's detector state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOutlier {
    pub consecutive_5xx: u32,
    pub consecutive_gateway: u32,
    /// Ejections so far (the multiplier of the next ejection time).
    pub ejections: u32,
    /// Set while ejected.
    pub ejected_until: Option<Instant>,
    /// When the multiplier was last lowered, or the host last restored.
    pub calm_since: Option<Instant>,
}

/// Why a host was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Consecutive5xx,
    ConsecutiveGatewayFailure,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Consecutive5xx => "consecutive_5xx",
            Cause::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
        }
    }
}

fn is_5xx(o: &AttemptOutcome) -> bool {
    match o {
        AttemptOutcome::Status(s) => (500..600).contains(s),
        AttemptOutcome::ConnectFailure
        | AttemptOutcome::Reset
        | AttemptOutcome::RefusedStream
        | AttemptOutcome::Timeout => true,
    }
}

fn is_gateway(o: &AttemptOutcome) -> bool {
    match o {
        AttemptOutcome::Status(s) => matches!(s, 502..=504),
        AttemptOutcome::ConnectFailure
        | AttemptOutcome::Reset
        | AttemptOutcome::RefusedStream
        | AttemptOutcome::Timeout => true,
    }
}

impl HostOutlier {
    /// Whether the host is out of rotation at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|t| now < t)
    }

    /// Records one response (or failure). `Some(cause)` when a threshold was reached and the
    /// host is not already ejected: the caller ejects it if the cluster's cap allows.
    pub fn record(
        &mut self,
        cfg: &OutlierDetection,
        outcome: &AttemptOutcome,
        now: Instant,
    ) -> Option<Cause> {
        self.calm(cfg, now);
        if !is_5xx(outcome) {
            self.consecutive_5xx = 0;
            self.consecutive_gateway = 0;
            return None;
        }
        self.consecutive_5xx = self.consecutive_5xx.saturating_add(1);
        if is_gateway(outcome) {
            self.consecutive_gateway = self.consecutive_gateway.saturating_add(1);
        } else {
            self.consecutive_gateway = 0;
        }
        if self.is_ejected(now) {
            return None;
        }
        if let Some(n) = cfg.consecutive_gateway_failure
            && n > 0
            && self.consecutive_gateway >= n
        {
            return Some(Cause::ConsecutiveGatewayFailure);
        }
        (cfg.consecutive_5xx > 0 && self.consecutive_5xx >= cfg.consecutive_5xx)
            .then_some(Cause::Consecutive5xx)
    }

    /// Ejects the host; returns until when.
    pub fn eject(&mut self, cfg: &OutlierDetection, now: Instant) -> Instant {
        self.ejections = self.ejections.saturating_add(1);
        self.consecutive_5xx = 0;
        self.consecutive_gateway = 0;
        let until = now + ejection_time(cfg, self.ejections);
        self.ejected_until = Some(until);
        self.calm_since = None;
        until
    }

    /// Brings the host back if its time is up; true when it was restored just now.
    pub fn restore_if_due(&mut self, now: Instant) -> bool {
        match self.ejected_until {
            Some(t) if now >= t => {
                self.ejected_until = None;
                self.calm_since = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Lowers the multiplier by one per whole `interval` the host has been back and healthy.
    fn calm(&mut self, cfg: &OutlierDetection, now: Instant) {
        let (Some(since), None) = (self.calm_since, self.ejected_until) else {
            return;
        };
        let interval = cfg.interval.max(Duration::from_millis(1));
        let n = now.saturating_duration_since(since).as_nanos() / interval.as_nanos();
        if n == 0 {
            return;
        }
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.ejections = self.ejections.saturating_sub(n);
        self.calm_since = Some(since + interval.saturating_mul(n));
    }
}

/// The n-th ejection's length.
pub fn ejection_time(cfg: &OutlierDetection, n: u32) -> Duration {
    let cap = cfg.max_ejection_time.max(cfg.base_ejection_time);
    cfg.base_ejection_time.saturating_mul(n.max(1)).min(cap)
}

/// Whether one more host may be ejected when `ejected` of `total` already are: the share stays
/// within `max_ejection_percent`, but one host may always be ejected (as Envoy).
pub fn may_eject(ejected: usize, total: usize, max_ejection_percent: u32) -> bool {
    ejected == 0 && total > 0
        || (ejected + 1) * 100
            <= total * usize::try_from(max_ejection_percent.min(100)).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: 3,
            consecutive_gateway_failure: None,
            interval: Duration::from_secs(1),
            base_ejection_time: Duration::from_secs(5),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 100,
        }
    }

    #[test]
    fn third_consecutive_5xx_ejects_and_a_success_resets_the_count() {
        let (c, t) = (cfg(), Instant::now());
        let mut h = HostOutlier::default();
        assert_eq!(h.record(&c, &AttemptOutcome::Status(500), t), None);
        assert_eq!(h.record(&c, &AttemptOutcome::Status(503), t), None);
        assert_eq!(h.record(&c, &AttemptOutcome::Status(200), t), None);
        assert_eq!(h.record(&c, &AttemptOutcome::Status(500), t), None);
        assert_eq!(h.record(&c, &AttemptOutcome::Reset, t), None);
        assert_eq!(
            h.record(&c, &AttemptOutcome::Status(501), t),
            Some(Cause::Consecutive5xx)
        );
        let until = h.eject(&c, t);
        assert_eq!(until, t + Duration::from_secs(5));
        assert!(h.is_ejected(t + Duration::from_secs(4)));
        assert!(!h.restore_if_due(t + Duration::from_secs(4)));
        assert!(h.restore_if_due(t + Duration::from_secs(5)));
        assert!(!h.is_ejected(t + Duration::from_secs(5)));
    }

    #[test]
    fn gateway_failures_eject_only_when_configured() {
        let t = Instant::now();
        let mut c = cfg();
        c.consecutive_5xx = 0;
        let mut h = HostOutlier::default();
        for _ in 0..10 {
            assert_eq!(h.record(&c, &AttemptOutcome::Status(502), t), None);
        }
        c.consecutive_gateway_failure = Some(2);
        let mut h = HostOutlier::default();
        assert_eq!(h.record(&c, &AttemptOutcome::Status(504), t), None);
        // A plain 500 is not a gateway failure and breaks the run.
        assert_eq!(h.record(&c, &AttemptOutcome::Status(500), t), None);
        assert_eq!(h.record(&c, &AttemptOutcome::ConnectFailure, t), None);
        assert_eq!(
            h.record(&c, &AttemptOutcome::Timeout, t),
            Some(Cause::ConsecutiveGatewayFailure)
        );
    }

    #[test]
    fn repeated_ejections_last_longer_up_to_the_cap_and_calm_down() {
        let t = Instant::now();
        let mut c = cfg();
        c.max_ejection_time = Duration::from_secs(12);
        let mut h = HostOutlier::default();
        assert_eq!(h.eject(&c, t), t + Duration::from_secs(5));
        assert!(h.restore_if_due(t + Duration::from_secs(5)));
        assert_eq!(
            h.eject(&c, t + Duration::from_secs(5)),
            t + Duration::from_secs(15)
        );
        assert!(h.restore_if_due(t + Duration::from_secs(15)));
        assert_eq!(
            h.eject(&c, t + Duration::from_secs(15)),
            t + Duration::from_secs(27)
        );
        assert!(h.restore_if_due(t + Duration::from_secs(27)));
        assert_eq!(h.ejections, 3);
        // Two healthy intervals later the multiplier is down by two.
        h.record(
            &c,
            &AttemptOutcome::Status(200),
            t + Duration::from_millis(29_500),
        );
        assert_eq!(h.ejections, 1);
    }

    #[test]
    fn the_cap_allows_one_host_then_the_share() {
        assert!(may_eject(0, 2, 10));
        assert!(!may_eject(1, 2, 10));
        assert!(may_eject(1, 2, 100));
        assert!(!may_eject(2, 2, 100));
        assert!(may_eject(1, 10, 20));
        assert!(!may_eject(2, 10, 20));
        assert!(!may_eject(0, 0, 100));
    }
}
