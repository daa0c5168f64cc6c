//! Fault injection (`HTTPFault`): delays, aborts, shares of requests, and what is rejected.

use std::time::Duration;

use http::StatusCode;
use xds::pb::envoy::config::route::v3::HeaderMatcher;
use xds::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay as PbDelay, FaultRateLimit, fault_delay::FaultDelaySecifier,
};
use xds::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort as PbAbort, HttpFault, fault_abort::ErrorType,
};
use xds::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType as D};
use xds::pb::google::protobuf as pbuf;

use super::{millis, secs, u32v, where_};
use crate::model::from_proto::{At, ModelError, ResourceKind, fault::fault};
use crate::model::{AbortStatus, Fault, FaultAbort, FaultDelay, Share};

pub(super) fn pct(numerator: u32, d: D) -> FractionalPercent {
    FractionalPercent {
        numerator,
        denominator: d as i32,
    }
}

pub(super) fn delay(fixed: pbuf::Duration, percentage: Option<FractionalPercent>) -> PbDelay {
    PbDelay {
        percentage,
        fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(fixed)),
    }
}

pub(super) fn abort(error: ErrorType, percentage: Option<FractionalPercent>) -> PbAbort {
    PbAbort {
        percentage,
        error_type: Some(error),
        ..PbAbort::default()
    }
}

fn convert(f: &HttpFault) -> Result<Fault, ModelError> {
    fault(&At::root(ResourceKind::Listener, "l"), f)
}

fn share(per_million: u32) -> Share {
    Share { per_million }
}

#[test]
fn delays_and_aborts_convert() {
    let cases: Vec<(HttpFault, Fault)> = vec![
        // Both, as Istio's VirtualService fault block: delay first, then abort.
        (
            HttpFault {
                delay: Some(delay(secs(2), Some(pct(50, D::Hundred)))),
                abort: Some(abort(ErrorType::HttpStatus(503), Some(pct(10, D::Hundred)))),
                ..HttpFault::default()
            },
            Fault {
                delay: Some(FaultDelay {
                    fixed: Duration::from_secs(2),
                    share: share(500_000),
                }),
                abort: Some(FaultAbort {
                    status: AbortStatus::Http(StatusCode::SERVICE_UNAVAILABLE),
                    share: share(100_000),
                }),
            },
        ),
        // No percentage: 0 % (Envoy reads the default FractionalPercent, 0/100).
        (
            HttpFault {
                delay: Some(delay(millis(1), None)),
                ..HttpFault::default()
            },
            Fault {
                delay: Some(FaultDelay {
                    fixed: Duration::from_millis(1),
                    share: Share::NONE,
                }),
                abort: None,
            },
        ),
        (
            HttpFault {
                abort: Some(abort(
                    ErrorType::GrpcStatus(14),
                    Some(pct(25, D::TenThousand)),
                )),
                ..HttpFault::default()
            },
            Fault {
                delay: None,
                abort: Some(FaultAbort {
                    status: AbortStatus::Grpc(14),
                    share: share(2_500),
                }),
            },
        ),
        (
            HttpFault {
                abort: Some(abort(ErrorType::HttpStatus(200), Some(pct(7, D::Million)))),
                ..HttpFault::default()
            },
            Fault {
                delay: None,
                abort: Some(FaultAbort {
                    status: AbortStatus::Http(StatusCode::OK),
                    share: share(7),
                }),
            },
        ),
        // Runtime keys, stats and metadata do not change what is injected.
        (
            HttpFault {
                abort: Some(abort(ErrorType::HttpStatus(599), None)),
                delay_percent_runtime: "fault.delay".into(),
                abort_http_status_runtime: "fault.status".into(),
                disable_downstream_cluster_stats: true,
                filter_metadata: Some(pbuf::Struct::default()),
                ..HttpFault::default()
            },
            Fault {
                delay: None,
                abort: Some(FaultAbort {
                    status: AbortStatus::Http(StatusCode::from_u16(599).unwrap()),
                    share: Share::NONE,
                }),
            },
        ),
        (HttpFault::default(), Fault::default()),
    ];
    for (pb, want) in cases {
        assert_eq!(convert(&pb), Ok(want), "{pb:?}");
    }
}

#[test]
fn percentages_with_each_denominator_and_clamped() {
    let cases = [
        (pct(0, D::Hundred), 0),
        (pct(1, D::Hundred), 10_000),
        (pct(100, D::Hundred), 1_000_000),
        (pct(150, D::Hundred), 1_000_000),
        (pct(u32::MAX, D::Hundred), 1_000_000),
        (pct(1, D::TenThousand), 100),
        (pct(9_999, D::TenThousand), 999_900),
        (pct(10_001, D::TenThousand), 1_000_000),
        (pct(1, D::Million), 1),
        (pct(999_999, D::Million), 999_999),
        (pct(2_000_000, D::Million), 1_000_000),
    ];
    for (p, want) in cases {
        let f = HttpFault {
            delay: Some(delay(secs(1), Some(p))),
            abort: Some(abort(ErrorType::GrpcStatus(2), Some(p))),
            ..HttpFault::default()
        };
        let got = convert(&f).unwrap();
        assert_eq!(got.delay.unwrap().share, share(want), "{p:?}");
        assert_eq!(got.abort.unwrap().share, share(want), "{p:?}");
    }
}

#[test]
fn rejected_faults() {
    let with_delay = |d: PbDelay| HttpFault {
        delay: Some(d),
        ..HttpFault::default()
    };
    let with_abort = |a: PbAbort| HttpFault {
        abort: Some(a),
        ..HttpFault::default()
    };
    let header_delay = PbDelay {
        fault_delay_secifier: Some(FaultDelaySecifier::HeaderDelay(Default::default())),
        ..PbDelay::default()
    };
    let bad_denominator = FractionalPercent {
        numerator: 1,
        denominator: 7,
    };
    let cases: Vec<(HttpFault, &str, &str)> = vec![
        (
            with_delay(PbDelay::default()),
            "delay.fixed_delay",
            "missing",
        ),
        (
            with_delay(delay(secs(0), None)),
            "delay.fixed_delay",
            "invalid",
        ),
        (
            with_delay(delay(secs(-1), None)),
            "delay.fixed_delay",
            "invalid",
        ),
        (
            with_delay(header_delay),
            "delay.header_delay",
            "unsupported",
        ),
        (
            with_delay(delay(secs(1), Some(bad_denominator))),
            "delay.percentage.denominator",
            "invalid",
        ),
        (
            with_abort(PbAbort::default()),
            "abort.error_type",
            "missing",
        ),
        (
            with_abort(abort(ErrorType::HttpStatus(199), None)),
            "abort.http_status",
            "invalid",
        ),
        (
            with_abort(abort(ErrorType::HttpStatus(600), None)),
            "abort.http_status",
            "invalid",
        ),
        (
            with_abort(abort(ErrorType::HttpStatus(70_000), None)),
            "abort.http_status",
            "invalid",
        ),
        (
            with_abort(abort(ErrorType::HeaderAbort(Default::default()), None)),
            "abort.header_abort",
            "unsupported",
        ),
        (
            with_abort(abort(ErrorType::GrpcStatus(14), Some(bad_denominator))),
            "abort.percentage.denominator",
            "invalid",
        ),
        (
            with_abort(PbAbort {
                response_body: "nope".into(),
                ..abort(ErrorType::HttpStatus(503), None)
            }),
            "abort.response_body",
            "unsupported",
        ),
        (
            HttpFault {
                upstream_cluster: "outbound|80||a".into(),
                ..with_delay(delay(secs(1), None))
            },
            "upstream_cluster",
            "unsupported",
        ),
        (
            HttpFault {
                headers: vec![HeaderMatcher::default()],
                ..with_delay(delay(secs(1), None))
            },
            "headers",
            "unsupported",
        ),
        (
            HttpFault {
                downstream_nodes: vec!["a".into()],
                ..with_delay(delay(secs(1), None))
            },
            "downstream_nodes",
            "unsupported",
        ),
        (
            HttpFault {
                max_active_faults: Some(u32v(10)),
                ..with_delay(delay(secs(1), None))
            },
            "max_active_faults",
            "unsupported",
        ),
        (
            HttpFault {
                response_rate_limit: Some(FaultRateLimit::default()),
                ..with_delay(delay(secs(1), None))
            },
            "response_rate_limit",
            "unsupported",
        ),
    ];
    for (f, field, kind) in cases {
        let e = convert(&f).unwrap_err();
        assert_eq!(where_(&e), (field.to_owned(), kind), "{e}");
    }
}
