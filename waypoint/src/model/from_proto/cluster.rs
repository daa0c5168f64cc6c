//! `Cluster` → [`Cluster`]: load-balancing policy, connect timeout, circuit breakers, outlier
//! detection and the upstream HTTP version. Transport sockets are not read: the waypoint
//! reaches endpoints over HBONE (or plain TCP) as their metadata says.

use std::time::Duration;

use xds::pb::envoy::config::cluster::v3::{
    Cluster as PbCluster, OutlierDetection as PbOutlier,
    cluster::{ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy as PbLb},
};
use xds::pb::envoy::config::core::v3::RoutingPriority;
use xds::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{UpstreamProtocolOptions, explicit_http_config::ProtocolConfig},
};

use super::{At, ModelError, decode, holds, opt_duration, pbuf, u32v};
use crate::model::{CircuitBreakers, Cluster, LbPolicy, OutlierDetection};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CHOICE_COUNT: u32 = 2;
const DEFAULT_MIN_RING: u64 = 1024;
/// Envoy's `maximum_ring_size` default (and hard cap).
const MAX_RING: u64 = 8 * 1024 * 1024;
const DEFAULT_MAGLEV_TABLE: u64 = 65537;
/// Larger Maglev tables are refused (Envoy caps them at 5 000 011).
const MAX_MAGLEV_TABLE: u64 = 5_000_011;
const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
const HTTP_OPTIONS_KEY: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

pub(super) fn cluster(at: &At<'_>, c: &PbCluster) -> Result<Cluster, ModelError> {
    match &c.cluster_discovery_type {
        Some(ClusterDiscoveryType::Type(t)) if *t == DiscoveryType::Eds as i32 => {}
        _ => {
            return Err(at
                .f("type")
                .unsupported("only EDS clusters (endpoints come from ClusterLoadAssignments)"));
        }
    }
    if c.lb_subset_config.is_some() {
        return Err(at
            .f("lb_subset_config")
            .unsupported("subset load balancing"));
    }
    if c.load_balancing_policy.is_some() {
        return Err(at
            .f("load_balancing_policy")
            .unsupported("load-balancing policy extensions (use lb_policy)"));
    }
    let connect_timeout = opt_duration(&at.f("connect_timeout"), c.connect_timeout.as_ref())?
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    if connect_timeout.is_zero() {
        return Err(at.f("connect_timeout").invalid("must be positive"));
    }
    Ok(Cluster {
        name: c.name.clone(),
        lb: lb(at, c)?,
        connect_timeout,
        circuit_breakers: circuit_breakers(c),
        outlier: c
            .outlier_detection
            .as_ref()
            .map(|o| outlier(&at.f("outlier_detection"), o))
            .transpose()?,
        http2: http2(at, c)?,
        panic_threshold: panic_threshold(at, c)?,
        max_requests_per_connection: max_requests_per_connection(at, c)?,
    })
}

/// Envoy's default healthy panic threshold, in percent.
const DEFAULT_PANIC_THRESHOLD: u32 = 50;

fn panic_threshold(at: &At<'_>, c: &PbCluster) -> Result<u32, ModelError> {
    let Some(p) = c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.healthy_panic_threshold.as_ref())
    else {
        return Ok(DEFAULT_PANIC_THRESHOLD);
    };
    if !(0.0..=100.0).contains(&p.value) {
        return Err(at
            .f("common_lb_config.healthy_panic_threshold")
            .invalid("must be within 0–100"));
    }
    // Whole percent: Envoy compares the healthy share against it the same way.
    Ok(p.value.ceil() as u32)
}

fn max_requests_per_connection(at: &At<'_>, c: &PbCluster) -> Result<Option<u32>, ModelError> {
    let from_options = match c.typed_extension_protocol_options.get(HTTP_OPTIONS_KEY) {
        Some(any) if holds::<HttpProtocolOptions>(any) => {
            let at = at.f("typed_extension_protocol_options").k(HTTP_OPTIONS_KEY);
            let o: HttpProtocolOptions = decode(&at, any)?;
            o.common_http_protocol_options
                .and_then(|c| c.max_requests_per_connection)
                .map(|v| v.value)
        }
        _ => None,
    };
    #[allow(deprecated)]
    let legacy = c.max_requests_per_connection.as_ref().map(|v| v.value);
    // 0 means no limit, as in Envoy.
    Ok(from_options.or(legacy).filter(|n| *n > 0))
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn lb(at: &At<'_>, c: &PbCluster) -> Result<LbPolicy, ModelError> {
    let config = c.lb_config.as_ref();
    Ok(match PbLb::try_from(c.lb_policy) {
        Ok(PbLb::RoundRobin) => LbPolicy::RoundRobin,
        Ok(PbLb::Random) => LbPolicy::Random,
        Ok(PbLb::LeastRequest) => {
            let choice_count = match config {
                Some(LbConfig::LeastRequestLbConfig(l)) => {
                    if l.active_request_bias.is_some() {
                        return Err(at
                            .f("least_request_lb_config.active_request_bias")
                            .unsupported("active request bias"));
                    }
                    u32v(l.choice_count.as_ref()).unwrap_or(DEFAULT_CHOICE_COUNT)
                }
                _ => DEFAULT_CHOICE_COUNT,
            };
            if choice_count < 2 {
                return Err(at
                    .f("least_request_lb_config.choice_count")
                    .invalid("must be at least 2"));
            }
            LbPolicy::LeastRequest { choice_count }
        }
        Ok(PbLb::RingHash) => {
            let minimum_ring_size = match config {
                Some(LbConfig::RingHashLbConfig(r)) => {
                    if r.hash_function != 0 {
                        return Err(at
                            .f("ring_hash_lb_config.hash_function")
                            .unsupported("only XX_HASH"));
                    }
                    r.minimum_ring_size
                        .as_ref()
                        .map_or(DEFAULT_MIN_RING, |v| v.value)
                }
                _ => DEFAULT_MIN_RING,
            };
            if minimum_ring_size == 0 || minimum_ring_size > MAX_RING {
                return Err(at
                    .f("ring_hash_lb_config.minimum_ring_size")
                    .invalid(format_args!("must be in [1, {MAX_RING}]")));
            }
            LbPolicy::RingHash { minimum_ring_size }
        }
        Ok(PbLb::Maglev) => {
            let table_size = match config {
                Some(LbConfig::MaglevLbConfig(m)) => m
                    .table_size
                    .as_ref()
                    .map_or(DEFAULT_MAGLEV_TABLE, |v| v.value),
                _ => DEFAULT_MAGLEV_TABLE,
            };
            if table_size > MAX_MAGLEV_TABLE || !is_prime(table_size) {
                return Err(at.f("maglev_lb_config.table_size").invalid(format_args!(
                    "{table_size} is not a prime up to {MAX_MAGLEV_TABLE}"
                )));
            }
            LbPolicy::Maglev { table_size }
        }
        Ok(other) => {
            return Err(at
                .f("lb_policy")
                .unsupported(format_args!("{}", other.as_str_name())));
        }
        Err(_) => {
            return Err(at
                .f("lb_policy")
                .invalid(format_args!("unknown policy {}", c.lb_policy)));
        }
    })
}

/// The DEFAULT-priority thresholds (Envoy's defaults for what is unset).
fn circuit_breakers(c: &PbCluster) -> CircuitBreakers {
    let mut out = CircuitBreakers::default();
    let default = c.circuit_breakers.as_ref().and_then(|cb| {
        cb.thresholds
            .iter()
            .find(|t| t.priority == RoutingPriority::Default as i32)
    });
    if let Some(t) = default {
        let set = |v: &Option<xds::pb::google::protobuf::UInt32Value>, d: &mut u32| {
            if let Some(v) = v {
                *d = v.value;
            }
        };
        set(&t.max_connections, &mut out.max_connections);
        set(&t.max_pending_requests, &mut out.max_pending_requests);
        set(&t.max_requests, &mut out.max_requests);
        set(&t.max_retries, &mut out.max_retries);
    }
    out
}

/// Envoy's defaults: 5 consecutive 5xx (enforced 100 %; enforcement 0 % disables it, shown as
/// `consecutive_5xx: 0`), 10 s interval, 30 s base ejection, 10 % max ejected, no
/// `always_eject_one_host`; consecutive gateway failures only when their enforcement is above 0 %
/// (its default). The ejection cap `max_ejection_time` defaults to 300 s or the base ejection
/// time, whichever is larger; when set it must be positive and not below the base (Envoy refuses
/// the cluster otherwise).
///
/// Only the consecutive-errors detectors, all-or-nothing, are implemented: enforcement other than
/// 0 % or 100 %, success-rate ejection (enforced 100 % unless `enforcing_success_rate` is 0, as the
/// control plane sets it), failure-percentage ejection, split local-origin errors, ejection-time
/// jitter, degraded-host detection and monitor extensions are refused.
fn outlier(at: &At<'_>, o: &PbOutlier) -> Result<OutlierDetection, ModelError> {
    unimplemented_outlier(at, o)?;
    let consecutive_5xx = if enforced(
        at,
        "enforcing_consecutive_5xx",
        o.enforcing_consecutive_5xx.as_ref(),
        100,
    )? {
        u32v(o.consecutive_5xx.as_ref()).unwrap_or(5)
    } else {
        0
    };
    let consecutive_gateway_failure = enforced(
        at,
        "enforcing_consecutive_gateway_failure",
        o.enforcing_consecutive_gateway_failure.as_ref(),
        0,
    )?
    .then(|| u32v(o.consecutive_gateway_failure.as_ref()).unwrap_or(5));
    let max_ejection_percent = u32v(o.max_ejection_percent.as_ref()).unwrap_or(10);
    if max_ejection_percent > 100 {
        return Err(at.f("max_ejection_percent").invalid("above 100"));
    }
    let interval =
        opt_duration(&at.f("interval"), o.interval.as_ref())?.unwrap_or(Duration::from_secs(10));
    if interval.is_zero() {
        return Err(at.f("interval").invalid("must be positive"));
    }
    let base_ejection_time =
        opt_duration(&at.f("base_ejection_time"), o.base_ejection_time.as_ref())?
            .unwrap_or(DEFAULT_BASE_EJECTION);
    let max_ejection_time =
        match opt_duration(&at.f("max_ejection_time"), o.max_ejection_time.as_ref())? {
            None => base_ejection_time.max(DEFAULT_MAX_EJECTION),
            Some(d) if d.is_zero() => {
                return Err(at.f("max_ejection_time").invalid("must be positive"));
            }
            Some(d) if d < base_ejection_time => {
                return Err(at
                    .f("max_ejection_time")
                    .invalid("must not be below base_ejection_time"));
            }
            Some(d) => d,
        };
    Ok(OutlierDetection {
        consecutive_5xx,
        consecutive_gateway_failure,
        interval,
        base_ejection_time,
        max_ejection_time,
        max_ejection_percent,
        always_eject_one_host: o.always_eject_one_host.as_ref().is_some_and(|b| b.value),
    })
}

/// Whether an `enforcing_*` percentage (unset: `default`) enforces ejection: 100 % yes, 0 % no;
/// anything between would eject that share of the time, which the waypoint does not do.
fn enforced(
    at: &At<'_>,
    field: &str,
    v: Option<&pbuf::UInt32Value>,
    default: u32,
) -> Result<bool, ModelError> {
    match u32v(v).unwrap_or(default) {
        0 => Ok(false),
        100 => Ok(true),
        n if n > 100 => Err(at.f(field).invalid("above 100")),
        n => Err(at.f(field).unsupported(format_args!(
            "enforcement of {n} %: ejection is all or nothing (0 or 100)"
        ))),
    }
}

/// Outlier-detection settings that change who gets ejected but that the waypoint does not
/// implement, with Envoy's defaults (an explicit default is accepted).
fn unimplemented_outlier(at: &At<'_>, o: &PbOutlier) -> Result<(), ModelError> {
    let set_to =
        |v: &Option<pbuf::UInt32Value>, default: u32| u32v(v.as_ref()).filter(|n| *n != default);
    if o.split_external_local_origin_errors {
        return Err(at
            .f("split_external_local_origin_errors")
            .unsupported("separate detection of locally originated errors"));
    }
    // Only read by Envoy with split local-origin errors; refused when not their defaults.
    for (field, v, default) in [
        (
            "consecutive_local_origin_failure",
            &o.consecutive_local_origin_failure,
            5,
        ),
        (
            "enforcing_consecutive_local_origin_failure",
            &o.enforcing_consecutive_local_origin_failure,
            100,
        ),
        (
            "enforcing_local_origin_success_rate",
            &o.enforcing_local_origin_success_rate,
            100,
        ),
        (
            "enforcing_failure_percentage_local_origin",
            &o.enforcing_failure_percentage_local_origin,
            0,
        ),
    ] {
        if let Some(n) = set_to(v, default) {
            return Err(at
                .f(field)
                .unsupported(format_args!("{n}: detection of locally originated errors")));
        }
    }
    // Envoy enforces success-rate ejection 100 % by default; the control plane sets 0.
    let success_rate = u32v(o.enforcing_success_rate.as_ref()).unwrap_or(100);
    if success_rate > 0 {
        return Err(at.f("enforcing_success_rate").unsupported(format_args!(
            "success-rate ejection (enforced {success_rate} %{}; set 0 to disable it)",
            if o.enforcing_success_rate.is_none() {
                " by default"
            } else {
                ""
            }
        )));
    }
    if let Some(n) = u32v(o.enforcing_failure_percentage.as_ref()).filter(|n| *n > 0) {
        return Err(at
            .f("enforcing_failure_percentage")
            .unsupported(format_args!("failure-percentage ejection (enforced {n} %)")));
    }
    let jitter = opt_duration(
        &at.f("max_ejection_time_jitter"),
        o.max_ejection_time_jitter.as_ref(),
    )?;
    if jitter.is_some_and(|d| !d.is_zero()) {
        return Err(at
            .f("max_ejection_time_jitter")
            .unsupported("random ejection-time jitter"));
    }
    if o.detect_degraded_hosts.as_ref().is_some_and(|b| b.value) {
        return Err(at
            .f("detect_degraded_hosts")
            .unsupported("degraded-host detection"));
    }
    if !o.monitors.is_empty() {
        return Err(at
            .f("monitors")
            .unsupported("outlier-detection monitor extensions"));
    }
    Ok(())
}

/// HTTP/2 upstream: `HttpProtocolOptions` with explicit HTTP/2, or with "use downstream" /
/// "auto" that allow HTTP/2 (the model has no "follow the client" setting: such a cluster
/// speaks HTTP/2); else the deprecated `http2_protocol_options`.
fn http2(at: &At<'_>, c: &PbCluster) -> Result<bool, ModelError> {
    let at = at.f("typed_extension_protocol_options").k(HTTP_OPTIONS_KEY);
    if let Some(any) = c.typed_extension_protocol_options.get(HTTP_OPTIONS_KEY) {
        if !holds::<HttpProtocolOptions>(any) {
            return Err(at.invalid(format_args!("unexpected type {:?}", any.type_url)));
        }
        let o: HttpProtocolOptions = decode(&at, any)?;
        return Ok(match &o.upstream_protocol_options {
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => {
                matches!(
                    e.protocol_config,
                    Some(ProtocolConfig::Http2ProtocolOptions(_))
                )
            }
            Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(d)) => {
                d.http2_protocol_options.is_some()
            }
            Some(UpstreamProtocolOptions::AutoConfig(a)) => a.http2_protocol_options.is_some(),
            None => false,
        });
    }
    #[allow(deprecated)]
    let legacy = c.http2_protocol_options.is_some();
    Ok(legacy)
}
