//! Admission checks for FaultInjection and LocalRateLimit — ranges Istio's validation (for the
//! fault fields) and Envoy (for the token bucket and status) would reject — and for the
//! `ExtensionRef` route filters that reference them. Whether the referenced object exists is not
//! checked here (see `translate/extensions.rs`).

use std::time::Duration;

use xds::pb::envoy::r#type::v3::StatusCode;

use super::super::extensions::{
    FAULT_INJECTION, FaultAbort, FaultInjection, GROUP, GRPC_CODES, LOCAL_RATE_LIMIT,
    LocalRateLimit, Percent,
};
use super::super::gateway::{FilterType, LocalObjectReference, RouteFilter};
use super::super::{ManifestError, ManifestObject, parse_duration};

type Check = Result<(), ManifestError>;

/// Envoy refuses token buckets that fill faster than this.
const MIN_FILL_INTERVAL: Duration = Duration::from_millis(50);

pub(super) fn check_fault_injection(obj: &ManifestObject, f: &FaultInjection) -> Check {
    let spec = &f.spec;
    if spec.delay.is_none() && spec.abort.is_none() {
        return Err(ManifestError::at(obj, "spec", "set delay, abort or both"));
    }
    if let Some(d) = &spec.delay {
        let at = "spec.delay.fixedDelay";
        let delay = parse_duration(&d.fixed_delay).map_err(|e| ManifestError::at(obj, at, e))?;
        if delay < Duration::from_millis(1) {
            return Err(ManifestError::at(obj, at, "must be at least 1ms"));
        }
        check_percent(obj, "spec.delay.percentage.value", d.percentage)?;
    }
    if let Some(a) = &spec.abort {
        check_abort(obj, a)?;
    }
    Ok(())
}

fn check_percent(obj: &ManifestObject, at: &str, p: Option<Percent>) -> Check {
    match p {
        Some(p) if !(0.0..=100.0).contains(&p.value) => Err(ManifestError::at(
            obj,
            at,
            format!("{} is not a percentage (0-100)", p.value),
        )),
        _ => Ok(()),
    }
}

fn check_abort(obj: &ManifestObject, a: &FaultAbort) -> Check {
    match (a.http_status, &a.grpc_status) {
        (None, None) | (Some(_), Some(_)) => {
            return Err(ManifestError::at(
                obj,
                "spec.abort",
                "set exactly one of httpStatus and grpcStatus",
            ));
        }
        (Some(code), None) if !(200..=599).contains(&code) => {
            return Err(ManifestError::at(
                obj,
                "spec.abort.httpStatus",
                format!("{code} is not an HTTP status (200-599)"),
            ));
        }
        (None, Some(status)) => match status.code() {
            Some(c) if (1..GRPC_CODES.len()).contains(&(c as usize)) => {}
            _ => {
                return Err(ManifestError::at(
                    obj,
                    "spec.abort.grpcStatus",
                    format!(
                        "{status} is not a gRPC error status: use a name ({}) or its number (1-16)",
                        GRPC_CODES[1..].join(", ")
                    ),
                ));
            }
        },
        _ => {}
    }
    check_percent(obj, "spec.abort.percentage.value", a.percentage)
}

pub(super) fn check_local_rate_limit(obj: &ManifestObject, l: &LocalRateLimit) -> Check {
    let spec = &l.spec;
    for (i, r) in spec.target_refs.iter().enumerate() {
        if !r.is_service() {
            return Err(ManifestError::at(
                obj,
                &format!("spec.targetRefs[{i}].kind"),
                format!("{:?} is not supported; use Service (group \"\")", r.kind),
            ));
        }
        if r.name.is_empty() {
            return Err(ManifestError::at(
                obj,
                &format!("spec.targetRefs[{i}].name"),
                "must not be empty",
            ));
        }
    }
    let b = &spec.token_bucket;
    if b.max_tokens == 0 {
        return Err(ManifestError::at(
            obj,
            "spec.tokenBucket.maxTokens",
            "must be at least 1",
        ));
    }
    if b.tokens_per_fill == Some(0) {
        return Err(ManifestError::at(
            obj,
            "spec.tokenBucket.tokensPerFill",
            "must be at least 1",
        ));
    }
    let at = "spec.tokenBucket.fillInterval";
    let fill = parse_duration(&b.fill_interval).map_err(|e| ManifestError::at(obj, at, e))?;
    if fill < MIN_FILL_INTERVAL {
        return Err(ManifestError::at(
            obj,
            at,
            "must be at least 50ms (Envoy's minimum)",
        ));
    }
    if let Some(code) = spec.status {
        let known = StatusCode::try_from(i32::from(code)).is_ok();
        if !(400..=599).contains(&code) || !known {
            return Err(ManifestError::at(
                obj,
                "spec.status",
                format!("{code} is not an HTTP error status Envoy knows (4xx or 5xx)"),
            ));
        }
    }
    Ok(())
}

/// An `ExtensionRef` filter's reference: a kind of this module's group, by name.
pub(super) fn check_extension_ref(
    obj: &ManifestObject,
    here: &str,
    r: &LocalObjectReference,
) -> Check {
    let at = format!("{here}.extensionRef");
    if r.group != GROUP {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.group"),
            format!("{:?} is not supported; use {GROUP}", r.group),
        ));
    }
    if r.kind != FAULT_INJECTION && r.kind != LOCAL_RATE_LIMIT {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.kind"),
            format!(
                "{:?} is not a {GROUP} kind; use {FAULT_INJECTION} or {LOCAL_RATE_LIMIT}",
                r.kind
            ),
        ));
    }
    if r.name.is_empty() {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.name"),
            "must not be empty",
        ));
    }
    Ok(())
}

/// A rule may reference one object of each extension kind: two cannot both apply.
pub(super) fn check_one_per_kind(obj: &ManifestObject, at: &str, filters: &[RouteFilter]) -> Check {
    let refs: Vec<&LocalObjectReference> = filters
        .iter()
        .filter(|f| f.kind == FilterType::ExtensionRef)
        .filter_map(|f| f.extension_ref.as_ref())
        .collect();
    for (i, r) in refs.iter().enumerate() {
        if refs[..i].iter().any(|o| o.kind == r.kind) {
            return Err(ManifestError::at(
                obj,
                &format!("{at}.filters"),
                format!("more than one {} ExtensionRef in one rule", r.kind),
            ));
        }
    }
    Ok(())
}
