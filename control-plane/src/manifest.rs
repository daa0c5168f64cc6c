//! Manifests: Kubernetes YAML (one or many documents per file, a file or a directory) turned into typed objects.
//!
//! Owns parsing and per-object field checks; every error names the file, the document, the object and the field.
//! It does not own cross-object checks (duplicates, selectors, capacity): see `plan`.
//!
//! The types are the Kubernetes ecosystem's, one per kind, for the file source and the API server alike
//! (`object` puts them in one enum): core kinds from `k8s-openapi` (`types`; `access` reads their optional
//! fields with Kubernetes' defaults), and `kube` custom resources for Istio security (`security`), Gateway API
//! Gateway/HTTPRoute/GRPCRoute (`gateway`), Istio DestinationRule (`networking`) and the `meshctl.dev` route
//! extensions FaultInjection and LocalRateLimit (`extensions`, whose CRDs are generated from them). Kubernetes
//! semantics shared by the translation and the local mesh live in `semantics`; durations in `duration`.

pub mod access;
pub mod duration;
pub mod extensions;
pub mod gateway;
pub mod networking;
mod object;
mod rules;
pub mod security;
pub mod semantics;
pub mod types;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

pub use access::{
    DeploymentExt, Labels, MetaExt, PodExt, PodSpecExt, PortExt, Protocol, RestartPolicy,
    ServiceExt,
};
pub use duration::parse_duration;
pub use extensions::{FaultInjection, LocalRateLimit};
pub use gateway::{Gateway, GrpcRoute, HttpRoute};
pub use networking::DestinationRule;
use object::{KINDS, Reader};
pub use object::{Object, ObjectKey};
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

/// `object` as a document [`parse_document`] reads back (with its `apiVersion` and `kind`).
pub fn to_document(object: &Object) -> serde_json::Value {
    serde_json::to_value(object).unwrap_or_default()
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
    let cluster_scoped = matches!(kind.as_str(), "Namespace" | "Node" | "Cluster");
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
    let reader = Tracked {
        source: &source,
        label: &label,
    };
    let mut object = Object::read(&kind, value, &reader)?;
    if !object.is_namespaced() {
        object.meta_mut().namespace = None;
    }
    let parsed = ManifestObject { source, object };
    rules::check(&parsed)?;
    Ok(parsed)
}

/// Reads a document's typed fields; errors name the field path.
struct Tracked<'a> {
    source: &'a Source,
    label: &'a str,
}

impl Reader for Tracked<'_> {
    type Error = ManifestError;

    fn read<T: DeserializeOwned>(&self, value: Value) -> Result<T, ManifestError> {
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
                location: Some(self.source.clone()),
                object: Some(self.label.to_string()),
                field: Some(if path == "." {
                    "(object)".to_string()
                } else {
                    path
                }),
                message,
            }
        })
    }
}

#[cfg(test)]
mod tests;
