//! Resources as the server holds them: named, versioned, encoded once.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use sha2::{Digest, Sha256};

/// Type URLs of the resources the mesh serves, in the order a server pushes them
/// (clusters → endpoints → listeners → routes; see [`push_rank`]).
pub mod type_url {
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    /// Istio workload discovery (`istio.workload.Address`: workloads and services).
    pub const ADDRESS: &str = "type.googleapis.com/istio.workload.Address";
    /// Istio L4 authorization (`istio.security.Authorization`).
    pub const AUTHORIZATION: &str = "type.googleapis.com/istio.security.Authorization";

    /// Make-before-break order: a type is pushed before the types that reference it.
    /// Unknown types go last, in name order.
    pub fn push_rank(type_url: &str) -> u8 {
        match type_url {
            CLUSTER => 0,
            ENDPOINT => 1,
            LISTENER => 2,
            ROUTE => 3,
            SECRET => 4,
            ADDRESS => 5,
            AUTHORIZATION => 6,
            _ => 7,
        }
    }
}

/// One named resource, encoded, with a version derived from its bytes (so an unchanged resource
/// keeps its version across snapshots and is never re-sent).
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub name: String,
    pub version: String,
    pub body: Any,
}

impl Resource {
    /// Encodes `message` as an `Any` of `type_url`; the version is a digest of the encoding.
    pub fn new(type_url: &str, name: impl Into<String>, message: &impl prost::Message) -> Self {
        let value = message.encode_to_vec();
        let version = digest(&value);
        Resource {
            name: name.into(),
            version,
            body: Any {
                type_url: type_url.to_owned(),
                value,
            },
        }
    }
}

fn digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything one client may see: type URL → name → resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    types: BTreeMap<String, BTreeMap<String, Arc<Resource>>>,
}

impl Snapshot {
    pub fn new() -> Self {
        Snapshot::default()
    }

    /// Adds (or replaces) a resource; returns the previous one of that type and name.
    pub fn insert(&mut self, resource: Resource) -> Option<Arc<Resource>> {
        self.types
            .entry(resource.body.type_url.clone())
            .or_default()
            .insert(resource.name.clone(), Arc::new(resource))
    }

    /// Encodes and adds `message` as `type_url`/`name`.
    pub fn add(&mut self, type_url: &str, name: impl Into<String>, message: &impl prost::Message) {
        self.insert(Resource::new(type_url, name, message));
    }

    /// Declares a type (possibly empty) so wildcard subscribers of it get an answer.
    pub fn declare(&mut self, type_url: &str) {
        self.types.entry(type_url.to_owned()).or_default();
    }

    /// The resources of one type, by name (empty when the type is unknown).
    pub fn resources(&self, type_url: &str) -> Option<&BTreeMap<String, Arc<Resource>>> {
        self.types.get(type_url)
    }

    pub fn get(&self, type_url: &str, name: &str) -> Option<&Arc<Resource>> {
        self.types.get(type_url).and_then(|m| m.get(name))
    }

    pub fn type_urls(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// A version for the whole type: a digest of its names and versions ("" when empty and undeclared).
    pub fn type_version(&self, type_url: &str) -> String {
        let Some(m) = self.types.get(type_url) else {
            return String::new();
        };
        let mut h = Sha256::new();
        for (name, r) in m {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(r.version.as_bytes());
            h.update([0]);
        }
        let d = h.finalize();
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn len(&self) -> usize {
        self.types.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
