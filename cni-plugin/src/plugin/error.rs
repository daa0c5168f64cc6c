//! The CNI error object (`{"cniVersion","code","msg","details"}`) and the spec's error codes.

use serde::Serialize;

/// Well-known CNI error codes (spec 1.1 §"Error").
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODING_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// Plugin-specific: an internal failure (a panic caught at the top).
    pub const INTERNAL: u32 = 100;
    /// Plugin-specific: the pod's metadata could not be read.
    pub const POD_SOURCE: u32 = 101;
}

/// A CNI error as printed on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("CNI error {code}: {msg}: {details}")]
pub struct CniError {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            cni_version: super::conf::DEFAULT_VERSION.into(),
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The same error reported in the configuration's version (when it is one we know).
    pub fn in_version(mut self, version: Option<&str>) -> Self {
        if let Some(v) = version.filter(|v| super::conf::SUPPORTED_VERSIONS.contains(v)) {
            self.cni_version = v.into();
        }
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                r#"{{"cniVersion":"{}","code":{},"msg":"error"}}"#,
                super::conf::DEFAULT_VERSION,
                self.code
            )
        })
    }
}
