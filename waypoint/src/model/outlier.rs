//! Outlier detection (Envoy's consecutive-errors detectors) for one host: count consecutive
//! 5xx and gateway failures from the host's responses, eject the host when a count reaches its
//! threshold (if the cluster's ejection cap allows), and bring it back once its ejection time has
//! passed.
//!
//! As in Envoy (`source/common/upstream/outlier_detection_impl.cc`): a local failure (connect
//! failure, reset, timeout) counts as a 5xx and as a gateway failure; 502/503/504 are gateway
//! failures; any non-5xx response resets both counts. A count that reaches its threshold is reset
//! whether the host is then ejected or the ejection cap refuses it, and both counts are reset when
//! the host comes back. The n-th ejection lasts `base_ejection_time × n`, capped by
//! `max_ejection_time`; the multiplier stops growing once `base × n ≥ max + base`, and drops by one
//! per `interval` the host stays back. Restoration happens when a pick, a sweep or the host's next
//! outcome finds the time has passed (no timer per host).

use std::time::{Duration, Instant};

use super::OutlierDetection;
use super::action::AttemptOutcome;

/// One host's detector state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOutlier {
    pub consecutive_5xx: u32,
    pub consecutive_gateway: u32,
    /// The ejection-time multiplier (Envoy's `ejectTimeBackoff`): raised by each ejection up to
    /// the cap, lowered while the host stays back.
    pub ejections: u32,
    /// Set from an ejection until the host is restored (even once the time is up: the host is
    /// still counted as ejected by the caller until [`HostOutlier::restore_if_due`] or
    /// [`HostOutlier::record`] restores it).
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

/// What [`HostOutlier::record`] did with one outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The host's ejection time was up, so it was restored before the outcome was counted: a
    /// caller keeping a count of ejected hosts lowers it by one (as for
    /// [`HostOutlier::restore_if_due`] returning true).
    pub restored: bool,
    /// A threshold was reached and the host is not ejected: the caller ejects it with
    /// [`HostOutlier::eject`] if the cluster's cap allows, else calls [`HostOutlier::refused`].
    pub cause: Option<Cause>,
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

/// `now + d`, or the latest instant on the way there that the platform can represent (a huge
/// duration then means "as good as forever" instead of a panic).
fn instant_after(now: Instant, mut d: Duration) -> Instant {
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        d /= 2;
    }
}

impl HostOutlier {
    /// Whether the host is out of rotation at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|t| now < t)
    }

    /// Records one response (or failure): first restores the host if its ejection time is up
    /// (so a host is never ejected twice without being restored in between), then counts the
    /// outcome. See [`Recorded`].
    pub fn record(
        &mut self,
        cfg: &OutlierDetection,
        outcome: &AttemptOutcome,
        now: Instant,
    ) -> Recorded {
        let restored = self.restore_if_due(now);
        self.calm(cfg, now);
        let mut out = Recorded {
            restored,
            cause: None,
        };
        if !is_5xx(outcome) {
            self.consecutive_5xx = 0;
            self.consecutive_gateway = 0;
            return out;
        }
        self.consecutive_5xx = self.consecutive_5xx.saturating_add(1);
        if is_gateway(outcome) {
            self.consecutive_gateway = self.consecutive_gateway.saturating_add(1);
        } else {
            self.consecutive_gateway = 0;
        }
        if self.is_ejected(now) {
            return out;
        }
        out.cause = if gateway_reached(self, cfg) {
            Some(Cause::ConsecutiveGatewayFailure)
        } else if five_xx_reached(self, cfg) {
            Some(Cause::Consecutive5xx)
        } else {
            None
        };
        out
    }

    /// The cluster's cap refused the ejection [`HostOutlier::record`] asked for: as Envoy, the
    /// counts that reached their thresholds start over (so the host is not re-proposed on every
    /// following failure, and a new run of failures is needed).
    pub fn refused(&mut self, cfg: &OutlierDetection) {
        if gateway_reached(self, cfg) {
            self.consecutive_gateway = 0;
        }
        if five_xx_reached(self, cfg) {
            self.consecutive_5xx = 0;
        }
    }

    /// Ejects the host; returns until when. The multiplier grows by one unless
    /// `base_ejection_time × multiplier` already reaches `max_ejection_time + base_ejection_time`
    /// (Envoy's cap, which bounds how long the multiplier takes to decay).
    pub fn eject(&mut self, cfg: &OutlierDetection, now: Instant) -> Instant {
        let grown = cfg.base_ejection_time.checked_mul(self.ejections);
        let limit = cfg.max_ejection_time.saturating_add(cfg.base_ejection_time);
        if grown.is_some_and(|g| g < limit) {
            self.ejections = self.ejections.saturating_add(1);
        }
        self.consecutive_5xx = 0;
        self.consecutive_gateway = 0;
        let until = instant_after(now, ejection_time(cfg, self.ejections));
        self.ejected_until = Some(until);
        self.calm_since = None;
        until
    }

    /// Brings the host back if its time is up, with its counts reset (as Envoy's `unejectHost`);
    /// true when it was restored just now.
    pub fn restore_if_due(&mut self, now: Instant) -> bool {
        match self.ejected_until {
            Some(t) if now >= t => {
                self.ejected_until = None;
                self.calm_since = Some(now);
                self.consecutive_5xx = 0;
                self.consecutive_gateway = 0;
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
        // The n intervals lie between `since` and `now`, so this cannot pass `now`.
        self.calm_since = Some(since.checked_add(interval.saturating_mul(n)).unwrap_or(now));
    }
}

fn gateway_reached(h: &HostOutlier, cfg: &OutlierDetection) -> bool {
    cfg.consecutive_gateway_failure
        .is_some_and(|n| n > 0 && h.consecutive_gateway >= n)
}

fn five_xx_reached(h: &HostOutlier, cfg: &OutlierDetection) -> bool {
    cfg.consecutive_5xx > 0 && h.consecutive_5xx >= cfg.consecutive_5xx
}

/// The length of an ejection with multiplier `n`: `base × n`, at most `max_ejection_time` (and
/// never below one `base`).
pub fn ejection_time(cfg: &OutlierDetection, n: u32) -> Duration {
    let cap = cfg.max_ejection_time.max(cfg.base_ejection_time);
    cfg.base_ejection_time.saturating_mul(n.max(1)).min(cap)
}

/// Whether one more host may be ejected when `ejected` of `total` already are. As Envoy ≥ 1.27
/// (`DetectorImpl::ejectHost`): the share of ejected hosts counting this one,
/// `100 × (ejected + 1) / total`, must not exceed `max_ejection_percent` (at most 100); with
/// `always_eject_one_host` a host may also be ejected whenever none is.
pub fn may_eject(
    ejected: usize,
    total: usize,
    max_ejection_percent: u32,
    always_eject_one_host: bool,
) -> bool {
    if total == 0 {
        return false;
    }
    let percent = u128::from(max_ejection_percent.min(100));
    let within = (ejected as u128 + 1) * 100 <= total as u128 * percent;
    within || (always_eject_one_host && ejected == 0)
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
            always_eject_one_host: false,
        }
    }

    fn cause(r: Recorded) -> Option<Cause> {
        assert!(!r.restored, "{r:?}");
        r.cause
    }

    #[test]
    fn third_consecutive_5xx_ejects_and_a_success_resets_the_count() {
        let (c, t) = (cfg(), Instant::now());
        let mut h = HostOutlier::default();
        assert_eq!(cause(h.record(&c, &AttemptOutcome::Status(500), t)), None);
        assert_eq!(cause(h.record(&c, &AttemptOutcome::Status(503), t)), None);
        assert_eq!(cause(h.record(&c, &AttemptOutcome::Status(200), t)), None);
        assert_eq!(cause(h.record(&c, &AttemptOutcome::Status(500), t)), None);
        assert_eq!(cause(h.record(&c, &AttemptOutcome::Reset, t)), None);
        assert_eq!(
            cause(h.record(&c, &AttemptOutcome::Status(501), t)),
            Some(Cause::Consecutive5xx)
        );
        let until = h.eject(&c, t);
        assert_eq!(until, t + Duration::from_secs(5));
        assert!(h.is_ejected(t + Duration::from_secs(4)));
        // Failures while ejected propose nothing.
        for _ in 0..5 {
            assert_eq!(cause(h.record(&c, &AttemptOutcome::Status(500), t)), None);
        }
        assert!(!h.restore_if_due(t + Duration::from_secs(4)));
        assert!(h.restore_if_due(t + Duration::from_secs(5)));
        assert!(!h.is_ejected(t + Duration::from_secs(5)));
        // Restoring resets the counts: the failures seen while ejected do not carry over.
        assert_eq!((h.consecutive_5xx, h.consecutive_gateway), (0, 0));
        assert!(!h.restore_if_due(t + Duration::from_secs(6)));
    }

    #[test]
    fn gateway_failures_eject_only_when_configured() {
        let t = Instant::now();
        let mut c = cfg();
        c.consecutive_5xx = 0;
        let mut h = HostOutlier::default();
        for _ in 0..10 {
            assert_eq!(cause(h.record(&c, &AttemptOutcome::Status(502), t)), None);
        }
        c.consecutive_gateway_failure = Some(2);
        let mut h = HostOutlier::default();
        assert_eq!(cause(h.record(&c, &AttemptOutcome::Status(504), t)), None);
        // A plain 500 is not a gateway failure and breaks the run.
        assert_eq!(cause(h.record(&c, &AttemptOutcome::Status(500), t)), None);
        assert_eq!(
            cause(h.record(&c, &AttemptOutcome::ConnectFailure, t)),
            None
        );
        assert_eq!(
            cause(h.record(&c, &AttemptOutcome::Timeout, t)),
            Some(Cause::ConsecutiveGatewayFailure)
        );
    }

    #[test]
    fn a_refused_ejection_starts_the_count_over() {
        let (c, t) = (cfg(), Instant::now());
        let mut h = HostOutlier::default();
        for _ in 0..2 {
            assert_eq!(cause(h.record(&c, &AttemptOutcome::Status(500), t)), None);
        }
        assert_eq!(
            cause(h.record(&c, &AttemptOutcome::Status(500), t)),
            Some(Cause::Consecutive5xx)
        );
        h.refused(&c);
        assert_eq!(h.consecutive_5xx, 0);
        assert_eq!(h.ejected_until, None);
        // Not re-proposed on the next failure: a whole new run is needed.
        for _ in 0..2 {
            assert_eq!(cause(h.record(&c, &AttemptOutcome::Status(500), t)), None);
        }
        assert_eq!(
            cause(h.record(&c, &AttemptOutcome::Status(500), t)),
            Some(Cause::Consecutive5xx)
        );

        // Only the counts that reached their thresholds start over.
        let mut c = cfg();
        c.consecutive_5xx = 5;
        c.consecutive_gateway_failure = Some(2);
        let mut h = HostOutlier::default();
        h.record(&c, &AttemptOutcome::Status(503), t);
        assert_eq!(
            cause(h.record(&c, &AttemptOutcome::Status(503), t)),
            Some(Cause::ConsecutiveGatewayFailure)
        );
        h.refused(&c);
        assert_eq!((h.consecutive_5xx, h.consecutive_gateway), (2, 0));
    }

    #[test]
    fn an_outcome_after_the_ejection_time_restores_before_counting() {
        let (c, t) = (cfg(), Instant::now());
        let mut h = HostOutlier::default();
        h.eject(&c, t);
        // Three failures while ejected, then the time is up.
        for _ in 0..3 {
            h.record(&c, &AttemptOutcome::Status(500), t);
        }
        let later = t + Duration::from_secs(5);
        let r = h.record(&c, &AttemptOutcome::Status(500), later);
        assert_eq!(
            r,
            Recorded {
                restored: true,
                cause: None
            }
        );
        assert_eq!((h.ejected_until, h.consecutive_5xx), (None, 1));
        // A later restore has nothing left to do: the host is counted back exactly once.
        assert!(!h.restore_if_due(later));
        let r = h.record(&c, &AttemptOutcome::Status(200), later);
        assert_eq!(r, Recorded::default());
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
    fn the_multiplier_stops_once_base_times_it_reaches_max_plus_base() {
        // base 30 s, max 300 s: Envoy stops raising the multiplier at 11 (30 × 11 ≥ 330).
        let t = Instant::now();
        let mut c = cfg();
        c.base_ejection_time = Duration::from_secs(30);
        let mut h = HostOutlier::default();
        let mut now = t;
        for _ in 0..100 {
            let until = h.eject(&c, now);
            assert!(until.duration_since(now) <= Duration::from_secs(300));
            assert!(h.restore_if_due(until));
            now = until;
        }
        assert_eq!(h.ejections, 11);
        assert_eq!(ejection_time(&c, h.ejections), Duration::from_secs(300));
        // So eleven healthy intervals bring it back to the start, however long it flapped.
        h.record(
            &c,
            &AttemptOutcome::Status(200),
            now + Duration::from_secs(11),
        );
        assert_eq!(h.ejections, 0);
        assert_eq!(
            h.eject(&c, now + Duration::from_secs(11)),
            now + Duration::from_secs(41)
        );

        // A base that does not divide the cap: 7 s, max 20 s → stops at 4 (28 ≥ 27).
        c.base_ejection_time = Duration::from_secs(7);
        c.max_ejection_time = Duration::from_secs(20);
        let mut h = HostOutlier::default();
        for _ in 0..10 {
            let until = h.eject(&c, now);
            assert!(h.restore_if_due(until));
        }
        assert_eq!(h.ejections, 4);
    }

    #[test]
    fn huge_ejection_times_do_not_panic() {
        let t = Instant::now();
        let mut c = cfg();
        c.base_ejection_time = Duration::MAX;
        c.max_ejection_time = Duration::MAX;
        let mut h = HostOutlier::default();
        let until = h.eject(&c, t);
        assert!(until > t);
        assert!(h.is_ejected(t + Duration::from_secs(3600 * 24 * 365)));
        let until = h.eject(&c, until);
        assert!(until > t);
        assert_eq!(instant_after(t, Duration::ZERO), t);
        assert_eq!(
            instant_after(t, Duration::from_secs(1)),
            t + Duration::from_secs(1)
        );
        // Calm-down arithmetic with a huge interval stays put.
        c.interval = Duration::MAX;
        let mut h = HostOutlier {
            ejections: 3,
            calm_since: Some(t),
            ..HostOutlier::default()
        };
        h.record(
            &c,
            &AttemptOutcome::Status(200),
            t + Duration::from_secs(10),
        );
        assert_eq!((h.ejections, h.calm_since), (3, Some(t)));
    }

    #[test]
    fn the_cap_is_strict_unless_one_host_may_always_go() {
        // Envoy: 100 × (ejected + 1) / total ≤ max_ejection_percent.
        assert!(!may_eject(0, 2, 10, false));
        assert!(may_eject(0, 2, 10, true));
        assert!(!may_eject(1, 2, 10, true));
        assert!(may_eject(0, 2, 50, false));
        assert!(!may_eject(1, 2, 50, false));
        assert!(may_eject(1, 2, 100, false));
        assert!(!may_eject(2, 2, 100, false));
        assert!(may_eject(1, 10, 20, false));
        assert!(!may_eject(2, 10, 20, false));
        // 1 of 3 is 33.3 %: above 33, within 34.
        assert!(!may_eject(0, 3, 33, false));
        assert!(may_eject(0, 3, 34, false));
        // The default 10 %: ten hosts before the first ejection.
        assert!(!may_eject(0, 9, 10, false));
        assert!(may_eject(0, 10, 10, false));
        // 0 % never ejects, unless one host may always go.
        assert!(!may_eject(0, 5, 0, false));
        assert!(may_eject(0, 5, 0, true));
        // Above 100 % counts as 100 %; no hosts, no ejection.
        assert!(!may_eject(3, 3, 200, true));
        assert!(!may_eject(0, 0, 100, true));
    }
}
