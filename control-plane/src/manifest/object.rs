//! One enum over every kind the mesh reads, each its ecosystem type (`k8s-openapi` for core kinds, `kube`
//! custom resources for the others), and its identity. Serialized, an object is exactly its Kubernetes document
//! (`apiVersion`, `kind`, `metadata`, `spec`, …), so the CLI, the daemon's state and the API server all read it.

use std::fmt;

use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_yaml_ng::Value;

use super::access::MetaExt;
use super::{
    AuthorizationPolicy, Cluster, Deployment, DestinationRule, FaultInjection, Gateway, GrpcRoute,
    HttpRoute, LocalRateLimit, Namespace, Node, ObjectMeta, PeerAuthentication, Pod, Service,
    ServiceAccount,
};

/// The kinds the mesh accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    /// Read for its topology labels (workload locality).
    Node(Node),
    ServiceAccount(ServiceAccount),
    Pod(Pod),
    Deployment(Deployment),
    Service(Service),
    Cluster(Cluster),
    AuthorizationPolicy(AuthorizationPolicy),
    PeerAuthentication(PeerAuthentication),
    Gateway(Gateway),
    HttpRoute(HttpRoute),
    GrpcRoute(GrpcRoute),
    DestinationRule(DestinationRule),
    FaultInjection(FaultInjection),
    LocalRateLimit(LocalRateLimit),
}

/// `expr` with `$o` bound to the object inside whatever variant `$object` is.
macro_rules! each {
    ($object:expr, $o:ident => $e:expr) => {
        match $object {
            Object::Namespace($o) => $e,
            Object::Node($o) => $e,
            Object::ServiceAccount($o) => $e,
            Object::Pod($o) => $e,
            Object::Deployment($o) => $e,
            Object::Service($o) => $e,
            Object::Cluster($o) => $e,
            Object::AuthorizationPolicy($o) => $e,
            Object::PeerAuthentication($o) => $e,
            Object::Gateway($o) => $e,
            Object::HttpRoute($o) => $e,
            Object::GrpcRoute($o) => $e,
            Object::DestinationRule($o) => $e,
            Object::FaultInjection($o) => $e,
            Object::LocalRateLimit($o) => $e,
        }
    };
}

/// `(kind, apiVersion)` of every accepted kind.
pub(super) const KINDS: &[(&str, &str)] = &[
    ("Namespace", "v1"),
    ("Node", "v1"),
    ("ServiceAccount", "v1"),
    ("Pod", "v1"),
    ("Service", "v1"),
    ("Deployment", "apps/v1"),
    ("AuthorizationPolicy", "security.istio.io/v1"),
    ("PeerAuthentication", "security.istio.io/v1"),
    ("Gateway", "gateway.networking.k8s.io/v1"),
    ("HTTPRoute", "gateway.networking.k8s.io/v1"),
    ("GRPCRoute", "gateway.networking.k8s.io/v1"),
    ("DestinationRule", "networking.istio.io/v1"),
    ("Cluster", "meshctl.dev/v1alpha1"),
    ("FaultInjection", "meshctl.dev/v1alpha1"),
    ("LocalRateLimit", "meshctl.dev/v1alpha1"),
];

/// Kinds whose `spec` may be absent (it reads as `{}`): an AuthorizationPolicy without one allows nothing.
const OPTIONAL_SPEC: &[&str] = &["AuthorizationPolicy", "PeerAuthentication", "Cluster"];

/// Reads one kind's typed fields from a document: with the field path in errors (`parse_document`), or plainly.
pub(super) trait Reader {
    type Error;
    fn read<T: DeserializeOwned>(&self, value: Value) -> Result<T, Self::Error>;
}

/// The plain reader (objects the mesh serialized itself).
struct Plain;

impl Reader for Plain {
    type Error = String;
    fn read<T: DeserializeOwned>(&self, value: Value) -> Result<T, String> {
        T::deserialize(value).map_err(|e| e.to_string())
    }
}

impl Object {
    /// Reads `value` as a `kind` (one of [`KINDS`]; any other reads as a `Cluster`).
    pub(super) fn read<R: Reader>(kind: &str, mut value: Value, r: &R) -> Result<Object, R::Error> {
        if OPTIONAL_SPEC.contains(&kind)
            && let Some(map) = value.as_mapping_mut()
            && map.get("spec").is_none_or(Value::is_null)
        {
            map.insert("spec".into(), Value::Mapping(Default::default()));
        }
        Ok(match kind {
            "Namespace" => Object::Namespace(r.read(value)?),
            "Node" => Object::Node(r.read(value)?),
            "ServiceAccount" => Object::ServiceAccount(r.read(value)?),
            "Pod" => Object::Pod(r.read(value)?),
            "Deployment" => Object::Deployment(r.read(value)?),
            "Service" => Object::Service(r.read(value)?),
            "AuthorizationPolicy" => Object::AuthorizationPolicy(r.read(value)?),
            "PeerAuthentication" => Object::PeerAuthentication(r.read(value)?),
            "Gateway" => Object::Gateway(r.read(value)?),
            "HTTPRoute" => Object::HttpRoute(r.read(value)?),
            "GRPCRoute" => Object::GrpcRoute(r.read(value)?),
            "DestinationRule" => Object::DestinationRule(r.read(value)?),
            "FaultInjection" => Object::FaultInjection(r.read(value)?),
            "LocalRateLimit" => Object::LocalRateLimit(r.read(value)?),
            _ => Object::Cluster(r.read(value)?),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::Node(_) => "Node",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::Pod(_) => "Pod",
            Object::Deployment(_) => "Deployment",
            Object::Service(_) => "Service",
            Object::Cluster(_) => "Cluster",
            Object::AuthorizationPolicy(_) => "AuthorizationPolicy",
            Object::PeerAuthentication(_) => "PeerAuthentication",
            Object::Gateway(_) => "Gateway",
            Object::HttpRoute(_) => "HTTPRoute",
            Object::GrpcRoute(_) => "GRPCRoute",
            Object::DestinationRule(_) => "DestinationRule",
            Object::FaultInjection(_) => "FaultInjection",
            Object::LocalRateLimit(_) => "LocalRateLimit",
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        each!(self, o => o.meta())
    }

    pub(super) fn meta_mut(&mut self) -> &mut ObjectMeta {
        each!(self, o => o.meta_mut())
    }

    pub fn is_namespaced(&self) -> bool {
        !matches!(
            self,
            Object::Namespace(_) | Object::Node(_) | Object::Cluster(_)
        )
    }

    /// The namespace of a namespaced object (`default` when unset), `None` for cluster-scoped kinds.
    pub fn namespace(&self) -> Option<&str> {
        self.is_namespaced()
            .then(|| self.meta().namespace.as_deref().unwrap_or("default"))
    }

    /// The identity of the object: `(kind, namespace, name)`.
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.kind().to_string(),
            namespace: self.namespace().unwrap_or_default().to_string(),
            name: self.meta().name().to_owned(),
        }
    }

    pub fn display(&self) -> String {
        self.key().to_string()
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        each!(self, o => o.serialize(s))
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(d)?;
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| D::Error::missing_field("kind"))?;
        if !KINDS.iter().any(|(k, _)| *k == kind) {
            return Err(D::Error::custom(format!("unknown kind {kind:?}")));
        }
        let kind = kind.to_owned();
        Object::read(&kind, value, &Plain).map_err(D::Error::custom)
    }
}

/// `(kind, namespace, name)`; the namespace is empty for cluster-scoped kinds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}
