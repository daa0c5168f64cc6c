//! Local rate limits (`LocalRateLimit`): buckets, shares, the limited response, defaults, and
//! what is rejected.

use std::time::{Duration, Instant};

use http::StatusCode;
use xds::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use xds::pb::envoy::config::route::v3::RateLimit as PbRouteRateLimit;
use xds::pb::envoy::extensions::common::ratelimit::v3::{
    LocalClusterRateLimit, LocalRateLimitDescriptor, XRateLimitHeadersRfcVersion,
};
use xds::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use xds::pb::envoy::r#type::v3::{
    HttpStatus, TokenBucket as PbBucket, fractional_percent::DenominatorType as D,
};
use xds::pb::google::protobuf as pbuf;

use super::fault::pct;
use super::{hvo, millis, secs, u32v, where_};
use crate::model::from_proto::rate_limit::{Level, local_rate_limit};
use crate::model::from_proto::{At, ModelError, ResourceKind};
use crate::model::rate_limit::{RateLimit, TokenBucket};
use crate::model::{HeaderChanges, Share};

pub(super) fn pb_bucket(max: u32, per_fill: Option<u32>, fill: pbuf::Duration) -> PbBucket {
    PbBucket {
        max_tokens: max,
        tokens_per_fill: per_fill.map(u32v),
        fill_interval: Some(fill),
    }
}

pub(super) fn runtime(numerator: u32, d: D) -> RuntimeFractionalPercent {
    RuntimeFractionalPercent {
        default_value: Some(pct(numerator, d)),
        runtime_key: "local_rate_limit_enabled".into(),
    }
}

/// What Istio's local rate limit examples look like: 10 requests a minute, enabled and enforced
/// for every request.
pub(super) fn istio_style(max: u32) -> LocalRateLimit {
    LocalRateLimit {
        stat_prefix: "http_local_rate_limiter".into(),
        token_bucket: Some(pb_bucket(max, Some(max), secs(60))),
        filter_enabled: Some(runtime(100, D::Hundred)),
        filter_enforced: Some(runtime(100, D::Hundred)),
        ..LocalRateLimit::default()
    }
}

fn convert(l: &LocalRateLimit, level: Level) -> Result<RateLimit, ModelError> {
    local_rate_limit(&At::root(ResourceKind::Listener, "l"), l, level)
}

#[test]
fn full_config_converts() {
    let l = LocalRateLimit {
        status: Some(HttpStatus { code: 503 }),
        response_headers_to_add: vec![hvo("x-local-rate-limit", "true", 2)],
        enable_x_ratelimit_headers: XRateLimitHeadersRfcVersion::DraftVersion03 as i32,
        rate_limited_as_resource_exhausted: true,
        always_consume_default_token_bucket: Some(pbuf::BoolValue { value: true }),
        max_dynamic_descriptors: Some(u32v(5)),
        ..istio_style(10)
    };
    let got = convert(&l, Level::Filter).unwrap();
    let want = RateLimit {
        stat_prefix: "http_local_rate_limiter".into(),
        status: StatusCode::SERVICE_UNAVAILABLE,
        bucket: Some(TokenBucket::new(
            10,
            10,
            Duration::from_secs(60),
            Instant::now(),
        )),
        enabled: Share::ALL,
        enforced: Share::ALL,
        response_headers: HeaderChanges {
            remove: vec![],
            add: vec![(
                "x-local-rate-limit".parse().unwrap(),
                "true".parse().unwrap(),
                false,
            )],
        },
        x_ratelimit_headers: true,
        grpc_resource_exhausted: true,
    };
    assert_eq!(got, want);
    // The bucket starts full.
    let b = got.bucket.as_ref().unwrap();
    let now = Instant::now();
    assert!((0..10).all(|_| b.take(now).allowed));
    assert!(!b.take(now).allowed);
}

#[test]
fn envoy_defaults() {
    let bare = LocalRateLimit {
        stat_prefix: "rl".into(),
        ..LocalRateLimit::default()
    };
    let got = convert(&bare, Level::Filter).unwrap();
    assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(got.bucket.is_none());
    // filter_enabled and filter_enforced unset: 0 %, as Envoy ("for safety").
    assert_eq!((got.enabled, got.enforced), (Share::NONE, Share::NONE));
    assert_eq!(got.response_headers, HeaderChanges::default());
    assert!(!got.x_ratelimit_headers && !got.grpc_resource_exhausted);

    // tokens_per_fill defaults to 1.
    let one = LocalRateLimit {
        token_bucket: Some(pb_bucket(5, None, secs(1))),
        ..bare.clone()
    };
    let b = convert(&one, Level::Filter).unwrap().bucket.unwrap();
    assert_eq!(
        (b.max_tokens, b.tokens_per_fill, b.fill_interval),
        (5, 1, Duration::from_secs(1))
    );

    // A status below 400 is replaced by 429; 400 and above are kept.
    for (code, want) in [(200, 429), (302, 429), (400, 400), (429, 429), (503, 503)] {
        let l = LocalRateLimit {
            status: Some(HttpStatus { code }),
            ..bare.clone()
        };
        assert_eq!(convert(&l, Level::Filter).unwrap().status.as_u16(), want);
    }

    // 50 ms is the fastest refill; a bucket without tokens refuses everything at any interval.
    let fast = LocalRateLimit {
        token_bucket: Some(pb_bucket(1, None, millis(50))),
        ..bare.clone()
    };
    assert!(convert(&fast, Level::Filter).is_ok());
    let empty = LocalRateLimit {
        token_bucket: Some(pb_bucket(0, None, millis(1))),
        ..bare
    };
    let b = convert(&empty, Level::PerRoute).unwrap().bucket.unwrap();
    assert!(!b.take(Instant::now() + Duration::from_secs(5)).allowed);
}

#[test]
fn enabled_and_enforced_shares_with_each_denominator() {
    let cases = [
        (pct(50, D::Hundred), 500_000),
        (pct(250, D::Hundred), 1_000_000),
        (pct(5, D::TenThousand), 500),
        (pct(42, D::Million), 42),
    ];
    for (p, want) in cases {
        let l = LocalRateLimit {
            filter_enabled: Some(RuntimeFractionalPercent {
                default_value: Some(p),
                runtime_key: String::new(),
            }),
            filter_enforced: Some(RuntimeFractionalPercent {
                default_value: Some(p),
                runtime_key: "ignored".into(),
            }),
            ..istio_style(1)
        };
        let got = convert(&l, Level::Filter).unwrap();
        assert_eq!(got.enabled.per_million, want, "{p:?}");
        assert_eq!(got.enforced.per_million, want, "{p:?}");
    }
}

#[test]
fn rejected_rate_limits() {
    let base = istio_style(10);
    let cases: Vec<(LocalRateLimit, Level, &str, &str)> = vec![
        (
            LocalRateLimit {
                stat_prefix: String::new(),
                ..base.clone()
            },
            Level::Filter,
            "stat_prefix",
            "missing",
        ),
        (
            LocalRateLimit {
                token_bucket: None,
                ..base.clone()
            },
            Level::PerRoute,
            "token_bucket",
            "missing",
        ),
        (
            LocalRateLimit {
                token_bucket: Some(PbBucket {
                    fill_interval: None,
                    ..pb_bucket(1, None, secs(1))
                }),
                ..base.clone()
            },
            Level::Filter,
            "token_bucket.fill_interval",
            "missing",
        ),
        (
            LocalRateLimit {
                token_bucket: Some(pb_bucket(1, None, secs(0))),
                ..base.clone()
            },
            Level::Filter,
            "token_bucket.fill_interval",
            "invalid",
        ),
        (
            LocalRateLimit {
                token_bucket: Some(pb_bucket(1, None, millis(49))),
                ..base.clone()
            },
            Level::Filter,
            "token_bucket.fill_interval",
            "invalid",
        ),
        (
            LocalRateLimit {
                token_bucket: Some(pb_bucket(1, Some(0), secs(1))),
                ..base.clone()
            },
            Level::Filter,
            "token_bucket.tokens_per_fill",
            "invalid",
        ),
        (
            LocalRateLimit {
                status: Some(HttpStatus { code: 0 }),
                ..base.clone()
            },
            Level::Filter,
            "status.code",
            "invalid",
        ),
        (
            LocalRateLimit {
                status: Some(HttpStatus { code: 499 }),
                ..base.clone()
            },
            Level::Filter,
            "status.code",
            "invalid",
        ),
        (
            LocalRateLimit {
                filter_enabled: Some(RuntimeFractionalPercent::default()),
                ..base.clone()
            },
            Level::Filter,
            "filter_enabled.default_value",
            "missing",
        ),
        (
            LocalRateLimit {
                filter_enforced: Some(RuntimeFractionalPercent {
                    default_value: Some(xds::pb::envoy::r#type::v3::FractionalPercent {
                        numerator: 1,
                        denominator: 3,
                    }),
                    ..RuntimeFractionalPercent::default()
                }),
                ..base.clone()
            },
            Level::Filter,
            "filter_enforced.default_value.denominator",
            "invalid",
        ),
        (
            LocalRateLimit {
                enable_x_ratelimit_headers: 7,
                ..base.clone()
            },
            Level::Filter,
            "enable_x_ratelimit_headers",
            "invalid",
        ),
        (
            LocalRateLimit {
                response_headers_to_add: vec![hvo("x-a", "%START_TIME%", 0)],
                ..base.clone()
            },
            Level::Filter,
            "response_headers_to_add[0].header.value",
            "unsupported",
        ),
    ];
    for (l, level, field, kind) in cases {
        let e = convert(&l, level).unwrap_err();
        assert_eq!(where_(&e), (field.to_owned(), kind), "{e}");
    }
}

#[test]
fn unimplemented_fields_are_unsupported() {
    let base = istio_style(10);
    let cases: Vec<(LocalRateLimit, &str)> = vec![
        (
            LocalRateLimit {
                descriptors: vec![LocalRateLimitDescriptor::default()],
                ..base.clone()
            },
            "descriptors",
        ),
        (
            LocalRateLimit {
                rate_limits: vec![PbRouteRateLimit::default()],
                ..base.clone()
            },
            "rate_limits",
        ),
        (
            LocalRateLimit {
                stage: 1,
                ..base.clone()
            },
            "stage",
        ),
        (
            LocalRateLimit {
                local_rate_limit_per_downstream_connection: true,
                ..base.clone()
            },
            "local_rate_limit_per_downstream_connection",
        ),
        (
            LocalRateLimit {
                local_cluster_rate_limit: Some(LocalClusterRateLimit::default()),
                ..base.clone()
            },
            "local_cluster_rate_limit",
        ),
        (
            LocalRateLimit {
                request_headers_to_add_when_not_enforced: vec![hvo("x-limited", "1", 0)],
                ..base.clone()
            },
            "request_headers_to_add_when_not_enforced",
        ),
        (
            LocalRateLimit {
                vh_rate_limits: 1,
                ..base.clone()
            },
            "vh_rate_limits",
        ),
        (
            LocalRateLimit {
                always_consume_default_token_bucket: Some(pbuf::BoolValue { value: false }),
                ..base.clone()
            },
            "always_consume_default_token_bucket",
        ),
        (
            LocalRateLimit {
                enable_retry_after_header: true,
                ..base
            },
            "enable_retry_after_header",
        ),
    ];
    for (l, field) in cases {
        let e = convert(&l, Level::Filter).unwrap_err();
        assert_eq!(where_(&e), (field.to_owned(), "unsupported"), "{e}");
    }
}
