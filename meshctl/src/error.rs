//! The local mesh's error type: each variant says what was being done and to what.

use crate::manifest::ManifestError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{command}: {detail}")]
    Command { command: String, detail: String },
    #[error("network namespace {name}: {detail}")]
    Netns { name: String, detail: String },
    #[error("CNI {plugin} {command} for {container}: {detail}")]
    Cni {
        plugin: String,
        command: String,
        container: String,
        detail: String,
    },
    #[error("{path}: {detail}")]
    File { path: String, detail: String },
    #[error("mesh {mesh}: {detail}")]
    Mesh { mesh: String, detail: String },
    #[error("pod {pod}: {detail}")]
    Pod { pod: String, detail: String },
}

impl Error {
    pub fn file(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.display().to_string(),
            detail: e.to_string(),
        }
    }
}
