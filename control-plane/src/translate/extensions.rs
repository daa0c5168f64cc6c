//! Route extensions → Envoy HTTP filter configs for waypoints. A FaultInjection becomes an
//! `HTTPFault` and a LocalRateLimit a `LocalRateLimit`, each as the `typed_per_filter_config`
//! (under the filter's name) of every route built from a rule that references it with an
//! `ExtensionRef`; a LocalRateLimit with `targetRefs` also goes on each virtual host of the
//! Services it names (a route's own config overrides its virtual host's, as Envoy does).
//!
//! A waypoint listener's HTTP connection manager carries the filters ([`http_filters`]) only
//! when a route or virtual host of its port uses them, between the RBAC filters and the router:
//! rate limit first, so that a limited request is refused before any delay. At listener level
//! they do nothing: `HTTPFault {}` injects no fault, a LocalRateLimit without a token bucket
//! limits nothing.
//!
//! Mapping:
//! * `percentage.value` p (default 100) → `FractionalPercent {round(p × 10⁴), MILLION}`;
//!   `fixedDelay` → `delay.fixed_delay`; `httpStatus`/`grpcStatus` → `abort.http_status`/
//!   `abort.grpc_status` (the code number).
//! * `tokenBucket` → `token_bucket` (`tokensPerFill` default 1), `filter_enabled` and
//!   `filter_enforced` 100 % (runtime keys `local_rate_limit_enabled`/`_enforced`),
//!   `enable_x_ratelimit_headers: DRAFT_VERSION_03`, `status` when not 429; stat prefix
//!   `http_local_rate_limiter`.
//!
//! An `ExtensionRef` to an object that does not exist makes every route of the rule answer 500
//! (Gateway API: a filter that cannot be resolved must not be skipped), with a warning. Proxyless
//! gRPC clients get no per-filter configs: their listeners have only the router.

use std::collections::BTreeSet;

use xds::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use xds::pb::envoy::config::route::v3::VirtualHost;
use xds::pb::envoy::extensions::common::ratelimit::v3::XRateLimitHeadersRfcVersion;
use xds::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay::FaultDelaySecifier,
};
use xds::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort::ErrorType,
};
use xds::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use xds::pb::envoy::r#type::v3::{
    FractionalPercent, HttpStatus, TokenBucket, fractional_percent::DenominatorType,
};
use xds::pb::google::protobuf::Any;

use super::envoy::{any, parsed, u32v};
use super::mesh::{Mesh, ServiceView};
use crate::manifest::extensions::{
    FAULT_INJECTION, FaultInjectionSpec, LOCAL_RATE_LIMIT, LocalRateLimitSpec, percent_or_all,
};
use crate::manifest::gateway::{FilterType, RouteFilter};

pub(super) const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub(super) const RATE_LIMIT_FILTER: &str = "envoy.filters.http.local_ratelimit";
pub(super) const RATE_LIMIT_STAT_PREFIX: &str = "http_local_rate_limiter";
/// The status Envoy's local rate limit answers with unless told otherwise.
const DEFAULT_LIMITED_STATUS: u16 = 429;

/// An `ExtensionRef` that names no object: the rule must answer 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unresolved;

/// The per-filter configs of a rule's `ExtensionRef` filters, in `namespace` (the route's).
pub(super) fn per_route(
    mesh: &Mesh<'_>,
    namespace: &str,
    what: &str,
    filters: &[RouteFilter],
) -> Result<Vec<(String, Any)>, Unresolved> {
    let refs = filters
        .iter()
        .filter(|f| f.kind == FilterType::ExtensionRef)
        .filter_map(|f| f.extension_ref.as_ref());
    let mut out = Vec::new();
    for r in refs {
        let key = (namespace.to_owned(), r.name.clone());
        let found = match r.kind.as_str() {
            FAULT_INJECTION => mesh
                .fault_injections
                .get(&key)
                .map(|f| (FAULT_FILTER, any(&fault(f)))),
            LOCAL_RATE_LIMIT => mesh
                .local_rate_limits
                .get(&key)
                .map(|l| (RATE_LIMIT_FILTER, any(&rate_limit(l)))),
            _ => None,
        };
        let Some((filter, config)) = found else {
            tracing::warn!(
                route = %what,
                extension = %format!("{} {namespace}/{}", r.kind, r.name),
                "ExtensionRef names no such object: the rule answers 500"
            );
            return Err(Unresolved);
        };
        out.push((filter.to_owned(), config));
    }
    Ok(out)
}

/// The LocalRateLimit config of `svc`'s virtual hosts: the first (by name) of those in its
/// namespace whose `targetRefs` name it.
pub(super) fn for_service(mesh: &Mesh<'_>, svc: &ServiceView<'_>) -> Option<(String, Any)> {
    let mut targeting = mesh.local_rate_limits.iter().filter(|((ns, _), l)| {
        *ns == svc.namespace
            && l.target_refs
                .iter()
                .any(|r| r.is_service() && r.name == svc.name)
    });
    let ((_, chosen), spec) = targeting.next()?;
    for ((_, ignored), _) in targeting {
        tracing::warn!(
            service = %svc.hostname,
            applied = %chosen,
            ignored = %ignored,
            "several LocalRateLimits target this Service; only the first by name applies"
        );
    }
    Some((RATE_LIMIT_FILTER.to_owned(), any(&rate_limit(spec))))
}

/// The filter names that virtual hosts or their routes configure.
pub(super) fn used(virtual_hosts: &[VirtualHost]) -> BTreeSet<String> {
    virtual_hosts
        .iter()
        .flat_map(|vh| {
            vh.typed_per_filter_config.keys().chain(
                vh.routes
                    .iter()
                    .flat_map(|r| r.typed_per_filter_config.keys()),
            )
        })
        .cloned()
        .collect()
}

/// The listener-level filters for the extensions in `used`: rate limit, then fault.
pub(super) fn http_filters(used: &BTreeSet<String>) -> Vec<HttpFilter> {
    let listener_level = [
        (
            RATE_LIMIT_FILTER,
            any(&LocalRateLimit {
                stat_prefix: RATE_LIMIT_STAT_PREFIX.into(),
                ..LocalRateLimit::default()
            }),
        ),
        (FAULT_FILTER, any(&HttpFault::default())),
    ];
    listener_level
        .into_iter()
        .filter(|(name, _)| used.contains(*name))
        .map(|(name, config)| HttpFilter {
            name: name.to_owned(),
            config_type: Some(http_filter::ConfigType::TypedConfig(config)),
            ..HttpFilter::default()
        })
        .collect()
}

/// `percent` (0-100, checked by the manifest rules) in millionths.
fn fraction(percent: f64) -> FractionalPercent {
    FractionalPercent {
        // At most 10⁶: fits, and `as` saturates anyway.
        numerator: (percent * 10_000.0).round() as u32,
        denominator: DenominatorType::Million as i32,
    }
}

pub(super) fn fault(spec: &FaultInjectionSpec) -> HttpFault {
    HttpFault {
        delay: spec.delay.as_ref().map(|d| FaultDelay {
            percentage: Some(fraction(percent_or_all(d.percentage))),
            fault_delay_secifier: parsed(&d.fixed_delay).map(FaultDelaySecifier::FixedDelay),
        }),
        abort: spec.abort.as_ref().map(|a| FaultAbort {
            percentage: Some(fraction(percent_or_all(a.percentage))),
            error_type: match (a.http_status, a.grpc_status.as_ref().and_then(|g| g.code())) {
                (Some(status), _) => Some(ErrorType::HttpStatus(status)),
                (None, Some(code)) => Some(ErrorType::GrpcStatus(code)),
                (None, None) => None,
            },
            ..FaultAbort::default()
        }),
        ..HttpFault::default()
    }
}

fn always(runtime_key: &str) -> RuntimeFractionalPercent {
    RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator: 100,
            denominator: DenominatorType::Hundred as i32,
        }),
        runtime_key: runtime_key.to_owned(),
    }
}

pub(super) fn rate_limit(spec: &LocalRateLimitSpec) -> LocalRateLimit {
    let b = &spec.token_bucket;
    LocalRateLimit {
        stat_prefix: RATE_LIMIT_STAT_PREFIX.into(),
        status: spec
            .status
            .filter(|s| *s != DEFAULT_LIMITED_STATUS)
            .map(|code| HttpStatus {
                code: i32::from(code),
            }),
        token_bucket: Some(TokenBucket {
            max_tokens: b.max_tokens,
            tokens_per_fill: Some(u32v(b.tokens_per_fill.unwrap_or(1))),
            fill_interval: parsed(&b.fill_interval),
        }),
        filter_enabled: Some(always("local_rate_limit_enabled")),
        filter_enforced: Some(always("local_rate_limit_enforced")),
        enable_x_ratelimit_headers: XRateLimitHeadersRfcVersion::DraftVersion03 as i32,
        ..LocalRateLimit::default()
    }
}

#[cfg(test)]
mod tests;
