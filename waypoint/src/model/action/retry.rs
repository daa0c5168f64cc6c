//! Retry decisions (Envoy's `x-envoy-retry-on` semantics) and back-off.

use std::time::Duration;

use crate::model::RetryPolicy;

/// How one upstream attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A response with this status.
    Status(u16),
    /// The stream or connection was reset (or closed) before a response.
    Reset,
    /// No connection could be made.
    ConnectFailure,
    /// The upstream refused the stream (HTTP/2 `REFUSED_STREAM`).
    RefusedStream,
    /// The per-try timeout fired.
    Timeout,
}

/// Whether `outcome` may be retried under `policy` (the caller still checks `num_retries`):
/// * `5xx`: any 5xx status, and every failure without a response (reset, connect failure,
///   refused stream, per-try timeout);
/// * `gateway-error`: 502, 503, 504, and the same failures (Envoy counts them as 5xx);
/// * `reset`: every failure without a response;
/// * `connect-failure`, `refused-stream`: that failure only;
/// * `retriable-status-codes`: the listed statuses.
pub fn retriable(policy: &RetryPolicy, outcome: &AttemptOutcome) -> bool {
    let on = policy.on;
    let no_response = on.server_error || on.gateway_error || on.reset;
    match *outcome {
        AttemptOutcome::Status(s) => {
            (on.server_error && (500..600).contains(&s))
                || (on.gateway_error && matches!(s, 502..=504))
                || (on.retriable_status_codes && policy.retriable_status_codes.contains(&s))
        }
        AttemptOutcome::Reset | AttemptOutcome::Timeout => no_response,
        AttemptOutcome::ConnectFailure => no_response || on.connect_failure,
        AttemptOutcome::RefusedStream => no_response || on.refused_stream,
    }
}

/// The wait before retry number `attempt` (0 for the first retry): Envoy's fully jittered
/// exponential back-off, `unit × min(base × 2^attempt, max)` with `unit` uniform in `[0, 1)`
/// (clamped; a non-finite `unit` counts as 0).
pub fn backoff(policy: &RetryPolicy, attempt: u32, unit: f64) -> Duration {
    let ceiling = policy
        .backoff_base
        .saturating_mul(1u32 << attempt.min(31))
        .min(policy.backoff_max);
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ceiling.mul_f64(unit)
}
