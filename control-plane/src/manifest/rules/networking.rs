//! Admission checks for DestinationRule: what Istio's validation webhook would reject among the
//! fields the control plane uses.

use super::super::networking::{DestinationRule, TrafficPolicy};
use super::super::{ManifestError, ManifestObject, parse_duration};

pub(super) fn check_destination_rule(
    obj: &ManifestObject,
    d: &DestinationRule,
) -> Result<(), ManifestError> {
    if d.spec.host.is_empty() {
        return Err(ManifestError::at(obj, "spec.host", "must not be empty"));
    }
    match &d.spec.traffic_policy {
        Some(p) => check_policy(obj, p),
        None => Ok(()),
    }
}

fn duration(
    obj: &ManifestObject,
    at: &str,
    d: Option<&String>,
    positive: bool,
) -> Result<(), ManifestError> {
    let Some(text) = d else { return Ok(()) };
    let parsed = parse_duration(text).map_err(|e| ManifestError::at(obj, at, e))?;
    if positive && parsed.is_zero() {
        return Err(ManifestError::at(obj, at, "must be longer than 0s"));
    }
    Ok(())
}

fn check_policy(obj: &ManifestObject, p: &TrafficPolicy) -> Result<(), ManifestError> {
    const AT: &str = "spec.trafficPolicy";
    if let Some(lb) = &p.load_balancer {
        match (&lb.simple, &lb.consistent_hash) {
            (Some(_), Some(_)) => {
                return Err(ManifestError::at(
                    obj,
                    &format!("{AT}.loadBalancer"),
                    "set either simple or consistentHash, not both",
                ));
            }
            (_, Some(h)) => {
                let keys = usize::from(h.http_header_name.is_some())
                    + usize::from(h.http_cookie.is_some())
                    + usize::from(h.use_source_ip == Some(true));
                if keys != 1 {
                    return Err(ManifestError::at(
                        obj,
                        &format!("{AT}.loadBalancer.consistentHash"),
                        "set exactly one of httpHeaderName, httpCookie, useSourceIp",
                    ));
                }
                if let Some(c) = &h.http_cookie {
                    if c.name.is_empty() {
                        return Err(ManifestError::at(
                            obj,
                            &format!("{AT}.loadBalancer.consistentHash.httpCookie.name"),
                            "must not be empty",
                        ));
                    }
                    duration(
                        obj,
                        &format!("{AT}.loadBalancer.consistentHash.httpCookie.ttl"),
                        c.ttl.as_ref(),
                        false,
                    )?;
                }
            }
            _ => {}
        }
    }
    if let Some(tcp) = p.connection_pool.as_ref().and_then(|c| c.tcp.as_ref()) {
        duration(
            obj,
            &format!("{AT}.connectionPool.tcp.connectTimeout"),
            tcp.connect_timeout.as_ref(),
            true,
        )?;
    }
    if let Some(o) = &p.outlier_detection {
        let at = format!("{AT}.outlierDetection");
        duration(obj, &format!("{at}.interval"), o.interval.as_ref(), true)?;
        duration(
            obj,
            &format!("{at}.baseEjectionTime"),
            o.base_ejection_time.as_ref(),
            true,
        )?;
        for (field, value) in [
            ("maxEjectionPercent", o.max_ejection_percent),
            ("minHealthPercent", o.min_health_percent),
        ] {
            if value.is_some_and(|p| p > 100) {
                return Err(ManifestError::at(
                    obj,
                    &format!("{at}.{field}"),
                    "must be 0-100",
                ));
            }
        }
        if o.consecutive_errors.is_some() {
            return Err(ManifestError::at(
                obj,
                &format!("{at}.consecutiveErrors"),
                "was removed from Istio's DestinationRule: use consecutiveGatewayErrors \
                 (502, 503, 504) or consecutive5xxErrors (any 5xx)",
            ));
        }
    }
    Ok(())
}
