//! `LocalRateLimit` (`envoy.filters.http.local_ratelimit`) → [`RateLimit`]: one token bucket,
//! the shares of requests checked and refused, and the limited response.
//!
//! Envoy's rules: `filter_enabled` and `filter_enforced` default to 0 % (their `runtime_key` is
//! not read: the waypoint has no runtime), the status defaults to 429 and a status below 400
//! becomes 429, a bucket's `tokens_per_fill` defaults to 1, its `fill_interval` must be at least
//! 50 ms (unless `max_tokens` is 0: a bucket that refuses everything), and a per-route config
//! must have a bucket. Descriptors, per-connection buckets, cluster-wide sharing, stages and the
//! other ways of choosing or sharing buckets are rejected, as are headers added to requests
//! that were limited but let through and `Retry-After`.

use std::time::{Duration, Instant};

use http::StatusCode;
use xds::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use xds::pb::envoy::extensions::common::ratelimit::v3::XRateLimitHeadersRfcVersion;
use xds::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use xds::pb::envoy::r#type::v3::{
    HttpStatus, StatusCode as PbStatusCode, TokenBucket as PbTokenBucket,
};

use super::{At, ModelError, duration, headers, share};
use crate::model::rate_limit::{RateLimit, TokenBucket};
use crate::model::{HeaderChanges, Share};

/// Envoy refuses faster refills ("fill timer must be >= 50ms").
const MIN_FILL_INTERVAL: Duration = Duration::from_millis(50);

/// Which config a `LocalRateLimit` is: the HTTP filter's may leave the bucket out (routes or
/// virtual hosts carry the limits), a per-route one must have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Filter,
    PerRoute,
}

/// A `LocalRateLimit`, with a new (full) bucket.
pub(super) fn local_rate_limit(
    at: &At<'_>,
    l: &LocalRateLimit,
    level: Level,
) -> Result<RateLimit, ModelError> {
    unsupported(at, l)?;
    if l.stat_prefix.is_empty() {
        return Err(at.f("stat_prefix").missing());
    }
    let bucket = match &l.token_bucket {
        Some(b) => Some(bucket(&at.f("token_bucket"), b)?),
        None if level == Level::PerRoute => return Err(at.f("token_bucket").missing()),
        None => None,
    };
    let x_ratelimit_headers =
        match XRateLimitHeadersRfcVersion::try_from(l.enable_x_ratelimit_headers) {
            Ok(XRateLimitHeadersRfcVersion::Off) => false,
            Ok(XRateLimitHeadersRfcVersion::DraftVersion03) => true,
            Err(_) => {
                return Err(at.f("enable_x_ratelimit_headers").invalid(format_args!(
                    "unknown version {}",
                    l.enable_x_ratelimit_headers
                )));
            }
        };
    Ok(RateLimit {
        stat_prefix: l.stat_prefix.clone(),
        status: l
            .status
            .as_ref()
            .map_or(Ok(StatusCode::TOO_MANY_REQUESTS), |s| {
                status(&at.f("status"), s)
            })?,
        bucket,
        enabled: runtime_share(&at.f("filter_enabled"), l.filter_enabled.as_ref())?,
        enforced: runtime_share(&at.f("filter_enforced"), l.filter_enforced.as_ref())?,
        response_headers: headers::changes(
            at,
            "response_headers_to_add",
            &l.response_headers_to_add,
            "response_headers_to_remove",
            &[],
        )?,
        x_ratelimit_headers,
        grpc_resource_exhausted: l.rate_limited_as_resource_exhausted,
    })
}

/// The HTTP filter's config when the filter is `disabled`: it checks nothing unless a route or
/// virtual host brings its own config.
pub(super) fn pass_through(stat_prefix: &str) -> RateLimit {
    RateLimit {
        stat_prefix: stat_prefix.to_owned(),
        status: StatusCode::TOO_MANY_REQUESTS,
        bucket: None,
        enabled: Share::NONE,
        enforced: Share::NONE,
        response_headers: HeaderChanges::default(),
        x_ratelimit_headers: false,
        grpc_resource_exhausted: false,
    }
}

/// Fields that choose or share buckets in ways the waypoint does not, or change the response.
/// (`max_dynamic_descriptors` only matters with descriptors, so it is ignored.)
fn unsupported(at: &At<'_>, l: &LocalRateLimit) -> Result<(), ModelError> {
    let fields = [
        (
            "descriptors",
            !l.descriptors.is_empty(),
            "rate limit descriptors",
        ),
        (
            "rate_limits",
            !l.rate_limits.is_empty(),
            "rate limit actions",
        ),
        ("stage", l.stage != 0, "rate limit stages"),
        (
            "local_rate_limit_per_downstream_connection",
            l.local_rate_limit_per_downstream_connection,
            "per-connection token buckets",
        ),
        (
            "local_cluster_rate_limit",
            l.local_cluster_rate_limit.is_some(),
            "sharing the limit across the local cluster",
        ),
        (
            "request_headers_to_add_when_not_enforced",
            !l.request_headers_to_add_when_not_enforced.is_empty(),
            "headers on limited requests that are let through",
        ),
        (
            "vh_rate_limits",
            l.vh_rate_limits != 0,
            "virtual host rate limit options",
        ),
        (
            "always_consume_default_token_bucket",
            l.always_consume_default_token_bucket
                .as_ref()
                .is_some_and(|b| !b.value),
            "sparing the default bucket (only meaningful with descriptors)",
        ),
        (
            "enable_retry_after_header",
            l.enable_retry_after_header,
            "the Retry-After header",
        ),
    ];
    match fields.iter().find(|(_, set, _)| *set) {
        Some((field, _, what)) => Err(at.f(field).unsupported(what)),
        None => Ok(()),
    }
}

/// A `TokenBucket`, full.
fn bucket(at: &At<'_>, b: &PbTokenBucket) -> Result<TokenBucket, ModelError> {
    let Some(fill) = &b.fill_interval else {
        return Err(at.f("fill_interval").missing());
    };
    let fill_interval = duration(&at.f("fill_interval"), fill)?;
    if fill_interval.is_zero() {
        return Err(at.f("fill_interval").invalid("must be positive"));
    }
    // With no tokens the bucket never lets anything through, whatever its refills.
    if b.max_tokens > 0 && fill_interval < MIN_FILL_INTERVAL {
        return Err(at.f("fill_interval").invalid("must be at least 50ms"));
    }
    let tokens_per_fill = b.tokens_per_fill.as_ref().map_or(1, |v| v.value);
    if tokens_per_fill == 0 {
        return Err(at.f("tokens_per_fill").invalid("must be positive"));
    }
    Ok(TokenBucket::new(
        b.max_tokens,
        tokens_per_fill,
        fill_interval,
        Instant::now(),
    ))
}

/// The limited response's status: a defined code; below 400 means 429 (as Envoy).
fn status(at: &At<'_>, s: &HttpStatus) -> Result<StatusCode, ModelError> {
    let code = PbStatusCode::try_from(s.code)
        .ok()
        .filter(|c| *c != PbStatusCode::Empty)
        .and_then(|c| u16::try_from(c as i32).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| {
            at.f("code")
                .invalid(format_args!("{} is not a status code", s.code))
        })?;
    Ok(if code.as_u16() < 400 {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        code
    })
}

/// A `RuntimeFractionalPercent`'s `default_value`; 0 % when the field is unset (as Envoy).
fn runtime_share(at: &At<'_>, p: Option<&RuntimeFractionalPercent>) -> Result<Share, ModelError> {
    let Some(p) = p else {
        return Ok(Share::NONE);
    };
    match &p.default_value {
        Some(v) => share(&at.f("default_value"), v),
        None => Err(at.f("default_value").missing()),
    }
}
