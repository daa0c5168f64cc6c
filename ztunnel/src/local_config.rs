//! The local configuration file (spec §11): workloads, services and policies in YAML, used
//! instead of (or before) istiod. `LOCAL_XDS_PATH` names a file ([`load`]); `LOCAL_XDS` holds the
//! text inline ([`LocalConfig::from_yaml`]).
//!
//! Owns parsing and the checks that make a file loadable: the shape comes from the domain types
//! in [`crate::model`] (unknown fields rejected), errors name the offending path (for example
//! `workloads[1].services`), and a semantic pass rejects what cannot work (duplicate keys,
//! invalid identities). Does not own applying the result to the state store, nor the env vars.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Authorization, NamespacedHostname, Service, Workload};

/// The whole file. Every list may be omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalConfig {
    #[serde(default)]
    pub workloads: Vec<Workload>,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub policies: Vec<Authorization>,
}

/// Why a local configuration cannot be loaded. `origin` is the file path or `LOCAL_XDS`.
#[derive(Debug, thiserror::Error)]
pub enum LocalConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid YAML, or not the §11 shape. `path` is where in the document, e.g.
    /// `workloads[1].services` (`.` for the document root).
    #[error("{origin}: {path}: {message}")]
    Parse {
        origin: String,
        path: String,
        message: String,
    },
    /// Parses, but cannot work.
    #[error("{origin}: {path}: {message}")]
    Invalid {
        origin: String,
        path: String,
        message: String,
    },
}

impl LocalConfigError {
    /// Where in the document the problem is (`None` for read errors).
    pub fn path(&self) -> Option<&str> {
        match self {
            LocalConfigError::Read { .. } => None,
            LocalConfigError::Parse { path, .. } | LocalConfigError::Invalid { path, .. } => {
                Some(path)
            }
        }
    }
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<LocalConfig, LocalConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| LocalConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    LocalConfig::from_yaml(&text, &path.display().to_string())
}

impl LocalConfig {
    /// Parses and validates `text`; `origin` (file path or `LOCAL_XDS`) prefixes every error.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, LocalConfigError> {
        let mut track = serde_path_to_error::Track::new();
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let de = serde_path_to_error::Deserializer::new(de, &mut track);
        // §11 writes enums with data as single-key maps (`{Exact: "x"}`), not YAML tags.
        let parsed: Result<LocalConfig, _> =
            serde_yaml_ng::with::singleton_map_recursive::deserialize(de);
        let config = parsed.map_err(|e| {
            let path = track.path().to_string();
            let message = e.to_string();
            // serde_yaml_ng prefixes some messages with its own (shorter) path; keep ours only.
            let message = match message.split_once(": ") {
                Some((prefix, rest)) if path.starts_with(prefix) => rest.to_owned(),
                _ => message,
            };
            LocalConfigError::Parse {
                origin: origin.to_owned(),
                path,
                message,
            }
        })?;
        config
            .validate()
            .map_err(|(path, message)| LocalConfigError::Invalid {
                origin: origin.to_owned(),
                path,
                message,
            })?;
        Ok(config)
    }

    /// The semantic checks: (document path, message) of the first problem.
    fn validate(&self) -> Result<(), (String, String)> {
        let mut uids = HashSet::new();
        for (i, w) in self.workloads.iter().enumerate() {
            let at = |field: &str| format!("workloads[{i}].{field}");
            if w.uid.is_empty() {
                return Err((at("uid"), "must not be empty".into()));
            }
            if !uids.insert(w.uid.as_str()) {
                return Err((at("uid"), format!("duplicate workload uid {:?}", w.uid)));
            }
            if let Err(e) = w.identity() {
                return Err((
                    format!("workloads[{i}]"),
                    format!("trustDomain/namespace/serviceAccount do not form an identity: {e}"),
                ));
            }
        }
        let mut keys: HashSet<NamespacedHostname> = HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let key = s.key();
            if key.to_string().parse::<NamespacedHostname>().as_ref() != Ok(&key) {
                return Err((
                    format!("services[{i}]"),
                    format!("{key:?}: namespace and hostname must be non-empty and contain no '/'"),
                ));
            }
            if !keys.insert(key) {
                return Err((
                    format!("services[{i}]"),
                    format!("duplicate service {}", s.key()),
                ));
            }
        }
        let mut policies = HashSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            if p.name.is_empty() || p.namespace.is_empty() {
                return Err((
                    format!("policies[{i}]"),
                    "name and namespace must not be empty".into(),
                ));
            }
            if !policies.insert(p.key()) {
                return Err((
                    format!("policies[{i}]"),
                    format!("duplicate policy {}", p.key()),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
