//! `ClusterLoadAssignment` → [`Endpoint`]s. Endpoints are IP:port; `UNKNOWN` and `HEALTHY` are
//! healthy (`DEGRADED`, `DRAINING`, … are not); locality weights and the assignment `policy`
//! (overprovisioning, drop overloads) are not read. Istio metadata under
//! `filter_metadata["istio"]`: `workload` (uid), `tunnel` (`"hbone"`), `identity` (SPIFFE URI).

use xds::pb::envoy::config::core::v3::{HealthStatus, Metadata};
use xds::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, LbEndpoint, lb_endpoint::HostIdentifier,
};
use xds::pb::google::protobuf::value::Kind;

use super::{At, ModelError, socket_address, u32v};
use crate::model::Endpoint;

pub(super) fn endpoints(
    at: &At<'_>,
    cla: &ClusterLoadAssignment,
) -> Result<Vec<Endpoint>, ModelError> {
    let mut out = Vec::new();
    for (i, locality) in cla.endpoints.iter().enumerate() {
        let at = at.f("endpoints").i(i, "");
        if locality.lb_config.is_some() {
            return Err(at
                .f("lb_config")
                .unsupported("endpoint lists outside lb_endpoints (LEDS)"));
        }
        for (j, e) in locality.lb_endpoints.iter().enumerate() {
            out.push(endpoint(
                &at.f("lb_endpoints").i(j, ""),
                cla,
                e,
                locality.priority,
            )?);
        }
    }
    Ok(out)
}

fn endpoint(
    at: &At<'_>,
    cla: &ClusterLoadAssignment,
    e: &LbEndpoint,
    priority: u32,
) -> Result<Endpoint, ModelError> {
    let ep = match &e.host_identifier {
        Some(HostIdentifier::Endpoint(ep)) => ep,
        Some(HostIdentifier::EndpointName(n)) => cla.named_endpoints.get(n).ok_or_else(|| {
            at.f("endpoint_name")
                .invalid(format_args!("no named endpoint {n:?}"))
        })?,
        None => return Err(at.f("endpoint").missing()),
    };
    let address = socket_address(&at.f("endpoint.address"), ep.address.as_ref())?;
    if address.port() == 0 {
        return Err(at.f("endpoint.address.port_value").invalid("port 0"));
    }
    let weight = u32v(e.load_balancing_weight.as_ref()).unwrap_or(1);
    if weight == 0 {
        return Err(at.f("load_balancing_weight").invalid("must be at least 1"));
    }
    let healthy = match HealthStatus::try_from(e.health_status) {
        Ok(HealthStatus::Unknown | HealthStatus::Healthy) => true,
        Ok(_) => false,
        Err(_) => {
            return Err(at
                .f("health_status")
                .invalid(format_args!("unknown status {}", e.health_status)));
        }
    };
    let istio = Istio::from_metadata(&at.f("metadata"), e.metadata.as_ref())?;
    let identity = istio
        .identity
        .map(|uri| {
            uri.parse::<hbone::Identity>().map_err(|err| {
                at.f("metadata.filter_metadata[\"istio\"].identity")
                    .identity(address, err)
            })
        })
        .transpose()?;
    Ok(Endpoint {
        address,
        weight,
        healthy,
        workload: istio.workload,
        hbone: istio.tunnel.as_deref() == Some("hbone"),
        identity,
        priority,
    })
}

/// The `istio` metadata strings (empty strings are absent).
#[derive(Default)]
struct Istio {
    workload: Option<String>,
    tunnel: Option<String>,
    identity: Option<String>,
}

impl Istio {
    fn from_metadata(at: &At<'_>, m: Option<&Metadata>) -> Result<Istio, ModelError> {
        let Some(fields) = m
            .and_then(|m| m.filter_metadata.get("istio"))
            .map(|s| &s.fields)
        else {
            return Ok(Istio::default());
        };
        let at = at.f("filter_metadata").k("istio");
        let string = |key: &str| -> Result<Option<String>, ModelError> {
            match fields.get(key).and_then(|v| v.kind.as_ref()) {
                None | Some(Kind::NullValue(_)) => Ok(None),
                Some(Kind::StringValue(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
                Some(_) => Err(at.f(key).invalid("must be a string")),
            }
        };
        Ok(Istio {
            workload: string("workload")?,
            tunnel: string("tunnel")?,
            identity: string("identity")?,
        })
    }
}
