//! Names of SotW resources, which arrive as bare `Any`s: read from the message itself (or from the
//! `envoy.service.discovery.v3.Resource` wrapper when the server wraps them).

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::Resource as Wrapped;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use crate::type_url;

/// Type URL of the SotW resource wrapper.
pub const WRAPPED: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";

/// The resource's name, for the Envoy types; other types need their handler to say.
pub fn resource_name(body: &Any) -> Result<String, String> {
    let bad = |e: prost::DecodeError| format!("cannot decode {}: {e}", body.type_url);
    let name = match body.type_url.as_str() {
        WRAPPED => Wrapped::decode(body.value.as_slice()).map_err(bad)?.name,
        type_url::LISTENER => Listener::decode(body.value.as_slice()).map_err(bad)?.name,
        type_url::CLUSTER => Cluster::decode(body.value.as_slice()).map_err(bad)?.name,
        type_url::ROUTE => {
            RouteConfiguration::decode(body.value.as_slice())
                .map_err(bad)?
                .name
        }
        type_url::ENDPOINT => {
            ClusterLoadAssignment::decode(body.value.as_slice())
                .map_err(bad)?
                .cluster_name
        }
        type_url::SECRET => Secret::decode(body.value.as_slice()).map_err(bad)?.name,
        other => return Err(format!("no name rule for type {other}")),
    };
    if name.is_empty() {
        return Err(format!("{} without a name", body.type_url));
    }
    Ok(name)
}

/// Unwraps an `envoy.service.discovery.v3.Resource` (resource-in-SotW); other bodies pass through.
pub fn unwrap(body: Any) -> Result<Any, String> {
    if body.type_url != WRAPPED {
        return Ok(body);
    }
    let w = Wrapped::decode(body.value.as_slice())
        .map_err(|e| format!("cannot decode the resource wrapper: {e}"))?;
    w.resource
        .ok_or_else(|| format!("resource wrapper {} without a resource", w.name))
}
