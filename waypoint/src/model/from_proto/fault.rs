//! `HTTPFault` (`envoy.filters.http.fault`) → [`Fault`]: a fixed delay and/or an abort (HTTP
//! status or gRPC status), each for a share of requests.
//!
//! As in Envoy, an unset `percentage` is 0 %: Envoy reads the proto's default
//! `FractionalPercent` (0/100), so a delay or abort without one never fires. Faults driven by
//! request headers, limited to some upstream cluster, downstream node or request headers,
//! capped in number, or throttling response bodies are rejected. The `*_runtime` keys are
//! ignored: without a runtime, Envoy uses the configured values too.

use http::StatusCode;
use xds::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay as PbDelay, fault_delay::FaultDelaySecifier,
};
use xds::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort as PbAbort, HttpFault, fault_abort::ErrorType,
};
use xds::pb::envoy::r#type::v3::FractionalPercent;

use super::{At, ModelError, duration, share};
use crate::model::{AbortStatus, Fault, FaultAbort, FaultDelay, Share};

/// An `HTTPFault`, from an HTTP filter or a per-route config.
pub(super) fn fault(at: &At<'_>, f: &HttpFault) -> Result<Fault, ModelError> {
    let unsupported = [
        (
            "upstream_cluster",
            !f.upstream_cluster.is_empty(),
            "faults for one upstream cluster",
        ),
        (
            "headers",
            !f.headers.is_empty(),
            "faults conditioned on request headers",
        ),
        (
            "downstream_nodes",
            !f.downstream_nodes.is_empty(),
            "faults for some downstream nodes",
        ),
        (
            "max_active_faults",
            f.max_active_faults.is_some(),
            "a cap on active faults",
        ),
        (
            "response_rate_limit",
            f.response_rate_limit.is_some(),
            "response rate limits",
        ),
    ];
    if let Some((field, _, what)) = unsupported.iter().find(|(_, set, _)| *set) {
        return Err(at.f(field).unsupported(what));
    }
    Ok(Fault {
        delay: f
            .delay
            .as_ref()
            .map(|d| delay(&at.f("delay"), d))
            .transpose()?,
        abort: f
            .abort
            .as_ref()
            .map(|a| abort(&at.f("abort"), a))
            .transpose()?,
    })
}

/// `percentage`, 0 % when unset (Envoy's default).
fn percentage(at: &At<'_>, p: Option<&FractionalPercent>) -> Result<Share, ModelError> {
    p.map_or(Ok(Share::NONE), |p| share(at, p))
}

fn delay(at: &At<'_>, d: &PbDelay) -> Result<FaultDelay, ModelError> {
    let fixed = match &d.fault_delay_secifier {
        Some(FaultDelaySecifier::FixedDelay(d)) => {
            let fixed = duration(&at.f("fixed_delay"), d)?;
            if fixed.is_zero() {
                return Err(at.f("fixed_delay").invalid("must be positive"));
            }
            fixed
        }
        Some(FaultDelaySecifier::HeaderDelay(_)) => {
            return Err(at
                .f("header_delay")
                .unsupported("delays requested by a request header"));
        }
        None => return Err(at.f("fixed_delay").missing()),
    };
    Ok(FaultDelay {
        fixed,
        share: percentage(&at.f("percentage"), d.percentage.as_ref())?,
    })
}

fn abort(at: &At<'_>, a: &PbAbort) -> Result<FaultAbort, ModelError> {
    if !a.response_body.is_empty() {
        return Err(at
            .f("response_body")
            .unsupported("a custom abort response body"));
    }
    let status = match &a.error_type {
        Some(ErrorType::HttpStatus(code)) => {
            let status = u16::try_from(*code)
                .ok()
                .filter(|c| (200..600).contains(c))
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| {
                    at.f("http_status")
                        .invalid(format_args!("{code} is not in 200..=599"))
                })?;
            AbortStatus::Http(status)
        }
        Some(ErrorType::GrpcStatus(code)) => AbortStatus::Grpc(*code),
        Some(ErrorType::HeaderAbort(_)) => {
            return Err(at
                .f("header_abort")
                .unsupported("aborts requested by a request header"));
        }
        None => return Err(at.f("error_type").missing()),
    };
    Ok(FaultAbort {
        status,
        share: percentage(&at.f("percentage"), a.percentage.as_ref())?,
    })
}
