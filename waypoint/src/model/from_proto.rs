//! The xDS boundary: Envoy resources → the waypoint's typed configuration, validated once.
//!
//! Everything the control plane emits converts; beyond that the conversion follows Envoy's
//! semantics for the fields the waypoint can honour and rejects (with [`ModelError`]) what it
//! cannot honour where ignoring it would change who gets what: extra match conditions, unknown
//! filters and RBAC rule kinds, subset load balancing, header formatters, and so on. Fields
//! that only tune observability or Envoy internals (stats, tracing, buffer limits, access logs,
//! listener filters, CORS, rate limits without a rate-limit filter) are ignored.
//!
//! Choices worth knowing:
//! * An HTTP connection manager must use RDS; an inline `route_config` is rejected, as
//!   [`ListenerKind::Http`] refers to route tables by name.
//! * A listener has one filter chain (no filter-chain matching) holding exactly one network
//!   filter: the HTTP connection manager or `tcp_proxy`.
//! * Route-configuration-level header changes and per-filter configs are folded into each
//!   virtual host (composition preserves Envoy's order); virtual-host-level retry and mirror
//!   policies are copied onto routes that have none.
//! * Header additions support `APPEND_IF_EXISTS_OR_ADD` and `OVERWRITE_IF_EXISTS_OR_ADD` (and
//!   the deprecated `append`); the two conditional actions are rejected.
//! * Clusters must be EDS.
//! * HTTP filters are RBAC, fault injection (fixed delays and HTTP/gRPC aborts) and local rate
//!   limiting (one token bucket per config, no descriptors); their per-route forms override them
//!   by filter name. Runtime keys are not read (the waypoint has no runtime), which is what Envoy
//!   does when they are unset.

mod cluster;
mod endpoints;
mod fault;
mod headers;
mod listener;
mod matchers;
mod rate_limit;
mod rbac_rules;
mod responses;
mod route_action;
mod routes;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use prost::{Message, Name};
use xds::pb::envoy::config::cluster::v3::Cluster as PbCluster;
use xds::pb::envoy::config::core::v3::{Address, address, socket_address::PortSpecifier};
use xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds::pb::envoy::config::listener::v3::Listener as PbListener;
use xds::pb::envoy::config::route::v3::RouteConfiguration;
use xds::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use xds::pb::google::protobuf as pbuf;

use super::{Cluster, Endpoint, Listener, ListenerKind, RouteTable, Share};

/// The kind of xDS resource a [`ModelError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Listener,
    RouteConfiguration,
    Cluster,
    ClusterLoadAssignment,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::Listener => "Listener",
            ResourceKind::RouteConfiguration => "RouteConfiguration",
            ResourceKind::Cluster => "Cluster",
            ResourceKind::ClusterLoadAssignment => "ClusterLoadAssignment",
        })
    }
}

/// Why a resource does not convert. Each variant names the resource (kind and name) and the
/// field, as a path from the resource (`virtual_hosts["x"].routes[2].match.headers[0]`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("{kind} {name:?}: {field} is required")]
    Missing {
        kind: ResourceKind,
        name: String,
        field: String,
    },
    #[error("{kind} {name:?}: {field}: {reason}")]
    Invalid {
        kind: ResourceKind,
        name: String,
        field: String,
        reason: String,
    },
    #[error("{kind} {name:?}: {field}: not supported by the waypoint: {reason}")]
    Unsupported {
        kind: ResourceKind,
        name: String,
        field: String,
        reason: String,
    },
    #[error("{kind} {name:?}: {field}: endpoint {endpoint}: {source}")]
    Identity {
        kind: ResourceKind,
        name: String,
        field: String,
        endpoint: SocketAddr,
        #[source]
        source: hbone::IdentityError,
    },
}

impl ModelError {
    /// Valid Envoy configuration that the waypoint does not implement.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, ModelError::Unsupported { .. })
    }
}

/// Where in a resource the conversion is: builds the field path of errors.
#[derive(Debug, Clone)]
pub(super) struct At<'a> {
    kind: ResourceKind,
    name: &'a str,
    field: String,
}

impl<'a> At<'a> {
    fn root(kind: ResourceKind, name: &'a str) -> Self {
        At {
            kind,
            name,
            field: String::new(),
        }
    }

    /// A sub-field.
    fn f(&self, field: &str) -> At<'a> {
        let field = if self.field.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.field)
        };
        At { field, ..*self }
    }

    /// A list element, shown by `name` when it has one.
    fn i(&self, index: usize, name: &str) -> At<'a> {
        let field = if name.is_empty() {
            format!("{}[{index}]", self.field)
        } else {
            format!("{}[{name:?}]", self.field)
        };
        At { field, ..*self }
    }

    /// A map entry.
    fn k(&self, key: &str) -> At<'a> {
        At {
            field: format!("{}[{key:?}]", self.field),
            ..*self
        }
    }

    fn field(&self) -> String {
        if self.field.is_empty() {
            "(resource)".to_owned()
        } else {
            self.field.clone()
        }
    }

    fn missing(&self) -> ModelError {
        ModelError::Missing {
            kind: self.kind,
            name: self.name.to_owned(),
            field: self.field(),
        }
    }

    fn invalid(&self, reason: impl fmt::Display) -> ModelError {
        ModelError::Invalid {
            kind: self.kind,
            name: self.name.to_owned(),
            field: self.field(),
            reason: reason.to_string(),
        }
    }

    fn unsupported(&self, reason: impl fmt::Display) -> ModelError {
        ModelError::Unsupported {
            kind: self.kind,
            name: self.name.to_owned(),
            field: self.field(),
            reason: reason.to_string(),
        }
    }

    fn identity(&self, endpoint: SocketAddr, source: hbone::IdentityError) -> ModelError {
        ModelError::Identity {
            kind: self.kind,
            name: self.name.to_owned(),
            field: self.field(),
            endpoint,
            source,
        }
    }
}

/// A `Listener`: its bind address and its one filter chain.
pub fn listener(l: &PbListener) -> Result<Listener, ModelError> {
    let at = At::root(ResourceKind::Listener, &l.name);
    let address = socket_address(&at.f("address"), l.address.as_ref())?;
    let kind: ListenerKind = listener::kind(&at, l)?;
    Ok(Listener {
        name: l.name.clone(),
        address,
        kind,
    })
}

/// A `RouteConfiguration`.
pub fn route_table(rc: &RouteConfiguration) -> Result<RouteTable, ModelError> {
    routes::table(&At::root(ResourceKind::RouteConfiguration, &rc.name), rc)
}

/// A `Cluster` (EDS).
pub fn cluster(c: &PbCluster) -> Result<Cluster, ModelError> {
    cluster::cluster(&At::root(ResourceKind::Cluster, &c.name), c)
}

/// A `ClusterLoadAssignment`'s endpoints, in order (localities in order, then their endpoints).
pub fn endpoints(cla: &ClusterLoadAssignment) -> Result<Vec<Endpoint>, ModelError> {
    endpoints::endpoints(
        &At::root(ResourceKind::ClusterLoadAssignment, &cla.cluster_name),
        cla,
    )
}

/// The longest protobuf `Duration` (about 10 000 years): Envoy refuses longer ones
/// (`validateDuration`, protobuf's `TimeUtil::kDurationMaxSeconds`).
const MAX_DURATION_SECS: u64 = 315_576_000_000;

/// A protobuf duration (non-negative, at most [`MAX_DURATION_SECS`], nanos in range).
fn duration(at: &At<'_>, d: &pbuf::Duration) -> Result<Duration, ModelError> {
    let secs = u64::try_from(d.seconds).map_err(|_| at.invalid("negative duration"))?;
    if secs > MAX_DURATION_SECS {
        return Err(at.invalid(format_args!(
            "duration above {MAX_DURATION_SECS} s (protobuf's maximum)"
        )));
    }
    let nanos = u32::try_from(d.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| at.invalid("duration nanos out of range"))?;
    Ok(Duration::new(secs, nanos))
}

fn opt_duration(at: &At<'_>, d: Option<&pbuf::Duration>) -> Result<Option<Duration>, ModelError> {
    d.map(|d| duration(at, d)).transpose()
}

/// A `FractionalPercent` as a [`Share`], any denominator; above 100 % means every request (as
/// Envoy's `random % denominator < numerator`).
fn share(at: &At<'_>, p: &FractionalPercent) -> Result<Share, ModelError> {
    let scale = match DenominatorType::try_from(p.denominator) {
        Ok(DenominatorType::Hundred) => 10_000,
        Ok(DenominatorType::TenThousand) => 100,
        Ok(DenominatorType::Million) => 1,
        Err(_) => {
            return Err(at
                .f("denominator")
                .invalid(format_args!("unknown denominator {}", p.denominator)));
        }
    };
    Ok(Share {
        per_million: p
            .numerator
            .saturating_mul(scale)
            .min(Share::ALL.per_million),
    })
}

fn u32v(v: Option<&pbuf::UInt32Value>) -> Option<u32> {
    v.map(|v| v.value)
}

/// Whether an `Any` holds an `M` (any type URL host; Envoy dispatches on the message name).
fn holds<M: Name>(any: &pbuf::Any) -> bool {
    any.type_url.rsplit('/').next() == Some(M::full_name().as_str())
}

/// The `M` inside an `Any` of that type.
fn decode<M: Message + Name + Default>(at: &At<'_>, any: &pbuf::Any) -> Result<M, ModelError> {
    if !holds::<M>(any) {
        return Err(at.invalid(format_args!(
            "expected {}, got {:?}",
            M::full_name(),
            any.type_url
        )));
    }
    M::decode(any.value.as_slice()).map_err(|e| at.invalid(format_args!("{}: {e}", M::full_name())))
}

/// An IP socket address (`address` an IP literal, `port_value`).
fn socket_address(at: &At<'_>, a: Option<&Address>) -> Result<SocketAddr, ModelError> {
    let Some(a) = a.and_then(|a| a.address.as_ref()) else {
        return Err(at.missing());
    };
    let address::Address::SocketAddress(sa) = a else {
        return Err(at.unsupported("only socket addresses"));
    };
    if !sa.resolver_name.is_empty() {
        return Err(at.f("resolver_name").unsupported("custom resolvers"));
    }
    let ip: IpAddr = sa.address.parse().map_err(|_| {
        at.f("address")
            .invalid(format_args!("{:?} is not an IP address", sa.address))
    })?;
    let port = match &sa.port_specifier {
        Some(PortSpecifier::PortValue(p)) => {
            u16::try_from(*p).map_err(|_| at.f("port_value").invalid("port above 65535"))?
        }
        Some(PortSpecifier::NamedPort(_)) => {
            return Err(at.f("named_port").unsupported("named ports"));
        }
        None => return Err(at.f("port_value").missing()),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests;
