//! Manifests: Kubernetes YAML (one or many documents per file, a file or a directory) turned into typed objects.
//!
//! Owns parsing and per-object field checks; every error names the file, the document, the object and the field.
//! It does not own cross-object checks (duplicates, selectors, capacity): see `plan`.
//!
//! Kinds: core (`types`), Istio security (`security`), Gateway API Gateway/HTTPRoute/GRPCRoute
//! (`gateway`), Istio DestinationRule (`networking`), the `meshctl.dev` route extensions
//! FaultInjection and LocalRateLimit (`extensions`); durations in `duration`.

pub mod duration;
pub mod extensions;
pub mod gateway;
pub mod networking;
mod rules;
pub mod security;
pub mod semantics;
pub mod types;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

pub use duration::parse_duration;
pub use extensions::{FaultInjection, LocalRateLimit};
pub use gateway::{Gateway, GrpcRoute, HttpRoute};
pub use networking::DestinationRule;
pub use security::{AuthorizationPolicy, PeerAuthentication};
pub use types::*;

/// Most nodes a local mesh `Cluster` may ask for.
pub const MAX_NODES: u32 = 64;

/// Where a document came from: a file and the 1-based document index in it (0: the whole source, such as
/// the API server, which has no documents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub file: String,
    pub document: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.document == 0 {
            f.write_str(&self.file)
        } else {
            write!(f, "{} (document {})", self.file, self.document)
        }
    }
}

/// A manifest file's name and text, as read by the CLI and sent to the mesh daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub text: String,
}

/// An error in a manifest, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{}{}{}{message}", location.as_ref().map(|s| format!("{s}: ")).unwrap_or_default(),
    object.as_ref().map(|o| format!("{o}: ")).unwrap_or_default(),
    field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct ManifestError {
    pub location: Option<Source>,
    /// `Kind namespace/name` (or `Kind name` for cluster-scoped kinds).
    pub object: Option<String>,
    /// The field path, such as `spec.containers[0].command`.
    pub field: Option<String>,
    pub message: String,
}

impl ManifestError {
    pub fn new(message: impl Into<String>) -> Self {
        ManifestError {
            location: None,
            object: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn at(obj: &ManifestObject, field: &str, message: impl Into<String>) -> Self {
        ManifestError {
            location: Some(obj.source.clone()),
            object: Some(obj.object.display()),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }
}

/// The kinds the local mesh accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Object {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    Pod(Pod),
    Deployment(Deployment),
    Service(Service),
    Cluster(Cluster),
    AuthorizationPolicy(AuthorizationPolicy),
    PeerAuthentication(PeerAuthentication),
    Gateway(Gateway),
    #[serde(rename = "HTTPRoute")]
    HttpRoute(HttpRoute),
    #[serde(rename = "GRPCRoute")]
    GrpcRoute(GrpcRoute),
    DestinationRule(DestinationRule),
    FaultInjection(FaultInjection),
    LocalRateLimit(LocalRateLimit),
}

/// `(kind, apiVersion)` of every accepted kind.
const KINDS: &[(&str, &str)] = &[
    ("Namespace", "v1"),
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

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
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
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::ServiceAccount(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Cluster(o) => &o.metadata,
            Object::AuthorizationPolicy(o) => &o.metadata,
            Object::PeerAuthentication(o) => &o.metadata,
            Object::Gateway(o) => &o.metadata,
            Object::HttpRoute(o) => &o.metadata,
            Object::GrpcRoute(o) => &o.metadata,
            Object::DestinationRule(o) => &o.metadata,
            Object::FaultInjection(o) => &o.metadata,
            Object::LocalRateLimit(o) => &o.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Namespace(o) => &mut o.metadata,
            Object::ServiceAccount(o) => &mut o.metadata,
            Object::Pod(o) => &mut o.metadata,
            Object::Deployment(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::Cluster(o) => &mut o.metadata,
            Object::AuthorizationPolicy(o) => &mut o.metadata,
            Object::PeerAuthentication(o) => &mut o.metadata,
            Object::Gateway(o) => &mut o.metadata,
            Object::HttpRoute(o) => &mut o.metadata,
            Object::GrpcRoute(o) => &mut o.metadata,
            Object::DestinationRule(o) => &mut o.metadata,
            Object::FaultInjection(o) => &mut o.metadata,
            Object::LocalRateLimit(o) => &mut o.metadata,
        }
    }

    pub fn is_namespaced(&self) -> bool {
        !matches!(self, Object::Namespace(_) | Object::Cluster(_))
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
            name: self.meta().name.clone(),
        }
    }

    pub fn display(&self) -> String {
        self.key().to_string()
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

/// An object and the document it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestObject {
    pub source: Source,
    pub object: Object,
}

/// Reads a manifest file, or every `.yaml`/`.yml`/`.json` file of a directory (recursively, in name order).
pub fn read_path(path: &Path) -> Result<Vec<ManifestFile>, ManifestError> {
    let mut files = Vec::new();
    collect(path, &mut files)?;
    if files.is_empty() {
        return Err(ManifestError::new(format!(
            "{}: no .yaml, .yml or .json manifest found",
            path.display()
        )));
    }
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| ManifestError::new(format!("{}: cannot read: {e}", p.display())))?;
            Ok(ManifestFile {
                name: p.display().to_string(),
                text,
            })
        })
        .collect()
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ManifestError::new(format!("{}: cannot read: {e}", path.display())))?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| ManifestError::new(format!("{}: cannot list: {e}", path.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        let is_manifest = entry
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
        if entry.is_dir() {
            collect(&entry, out)?;
        } else if is_manifest {
            out.push(entry);
        }
    }
    Ok(())
}

/// `object` as a document [`parse_document`] reads back (with its `apiVersion`).
pub fn to_document(object: &Object) -> serde_json::Value {
    let mut v = serde_json::to_value(object).unwrap_or_default();
    if let (Some(map), Some((_, api))) = (
        v.as_object_mut(),
        KINDS.iter().find(|(k, _)| *k == object.kind()),
    ) {
        map.insert("apiVersion".into(), (*api).into());
    }
    v
}

/// Parses every document of every file. Empty documents are skipped.
pub fn parse_files(files: &[ManifestFile]) -> Result<Vec<ManifestObject>, ManifestError> {
    let mut out = Vec::new();
    for file in files {
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&file.text).enumerate() {
            let source = Source {
                file: file.name.clone(),
                document: i + 1,
            };
            let value = Value::deserialize(doc).map_err(|e| ManifestError {
                location: Some(source.clone()),
                object: None,
                field: None,
                message: format!("not valid YAML: {e}"),
            })?;
            if value.is_null() {
                continue;
            }
            out.push(parse_document(source, value)?);
        }
    }
    Ok(out)
}

/// Parses one document: checks `apiVersion`/`kind`, then the kind's typed fields, then per-object rules.
pub fn parse_document(source: Source, value: Value) -> Result<ManifestObject, ManifestError> {
    let err = |object: Option<String>, field: &str, message: String| ManifestError {
        location: Some(source.clone()),
        object,
        field: Some(field.to_string()),
        message,
    };
    if !value.is_mapping() {
        return Err(err(
            None,
            "(document)",
            "expected a mapping (a Kubernetes object)".into(),
        ));
    }
    let kind = match value.get("kind") {
        Some(Value::String(k)) => k.clone(),
        Some(_) => return Err(err(None, "kind", "expected a string".into())),
        None => return Err(err(None, "kind", "missing field `kind`".into())),
    };
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    let namespace = value
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    let cluster_scoped = kind == "Namespace" || kind == "Cluster";
    let label = match namespace {
        _ if cluster_scoped => format!("{kind} {name}"),
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} default/{name}"),
    };
    let Some((_, want_api)) = KINDS.iter().find(|(k, _)| *k == kind) else {
        let known: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        return Err(err(
            Some(label),
            "kind",
            format!(
                "unknown kind {kind:?}; the local mesh accepts {}",
                known.join(", ")
            ),
        ));
    };
    match value.get("apiVersion").and_then(Value::as_str) {
        Some(api) if api == *want_api => {}
        Some(api) => {
            return Err(err(
                Some(label),
                "apiVersion",
                format!("{api:?} is not {want_api:?}"),
            ));
        }
        None => {
            return Err(err(
                Some(label),
                "apiVersion",
                "missing field `apiVersion`".into(),
            ));
        }
    }
    let typed = |v: Value| -> Result<Object, ManifestError> {
        Ok(match kind.as_str() {
            "Namespace" => Object::Namespace(typed_field(v, &source, &label)?),
            "ServiceAccount" => Object::ServiceAccount(typed_field(v, &source, &label)?),
            "Pod" => Object::Pod(typed_field(v, &source, &label)?),
            "Deployment" => Object::Deployment(typed_field(v, &source, &label)?),
            "Service" => Object::Service(typed_field(v, &source, &label)?),
            "AuthorizationPolicy" => Object::AuthorizationPolicy(typed_field(v, &source, &label)?),
            "PeerAuthentication" => Object::PeerAuthentication(typed_field(v, &source, &label)?),
            "Gateway" => Object::Gateway(typed_field(v, &source, &label)?),
            "HTTPRoute" => Object::HttpRoute(typed_field(v, &source, &label)?),
            "GRPCRoute" => Object::GrpcRoute(typed_field(v, &source, &label)?),
            "DestinationRule" => Object::DestinationRule(typed_field(v, &source, &label)?),
            "FaultInjection" => Object::FaultInjection(typed_field(v, &source, &label)?),
            "LocalRateLimit" => Object::LocalRateLimit(typed_field(v, &source, &label)?),
            _ => Object::Cluster(typed_field(v, &source, &label)?),
        })
    };
    let mut object = typed(value)?;
    if !object.is_namespaced() {
        object.meta_mut().namespace = None;
    }
    let parsed = ManifestObject { source, object };
    rules::check(&parsed)?;
    Ok(parsed)
}

fn typed_field<T: DeserializeOwned>(
    value: Value,
    source: &Source,
    label: &str,
) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde_yaml_ng appends its own position, which is meaningless for an in-memory value.
        let message = inner
            .split(" at line ")
            .next()
            .unwrap_or(&inner)
            .to_string();
        ManifestError {
            location: Some(source.clone()),
            object: Some(label.to_string()),
            field: Some(if path == "." {
                "(object)".to_string()
            } else {
                path
            }),
            message,
        }
    })
}

#[cfg(test)]
mod tests;
