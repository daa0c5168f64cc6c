//! The plugin's network configuration (stdin): our entry's fields (spec §8) plus the runtime-added `cniVersion`,
//! `name` and `prevResult`. Parsing maps every problem to the CNI error code the spec gives it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::error::{CniError, code};

/// The versions we speak (results are passed through, so every version with `prevResult` works).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// Reported when the configuration gives none we know.
pub const DEFAULT_VERSION: &str = "1.1.0";
/// Upstream's default agent run dir.
pub const DEFAULT_RUN_DIR: &str = "/var/run/istio-cni";

/// Our entry in the CNI configuration list (what the agent inserts) with the runtime's additions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// Where `pluginevent.sock` is.
    #[serde(default = "default_run_dir")]
    pub cni_agent_run_dir: PathBuf,
    #[serde(default)]
    pub ambient_enabled: bool,
    /// Accepted and ignored: the built-in selector (`istio.io/dataplane-mode=ambient`) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enablement_selectors: Option<Value>,
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    /// The agent's own namespace (its pods are skipped).
    #[serde(default)]
    pub pod_namespace: String,
    /// Only native nftables is implemented; `false` is refused with code 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_nftables: Option<bool>,
    /// Retry reading the pod's metadata for up to ~2 s when it is not there yet.
    #[serde(default)]
    pub enable_ambient_detection_retry: bool,
    #[serde(default = "default_log_level")]
    pub plugin_log_level: String,
    /// The pod source directory (our addition): when set the plugin decides enrollment itself and does not bother
    /// the agent for pods that are not enrolled; when absent every pod is sent to the agent, which decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_dir: Option<PathBuf>,
    /// How long ADD waits for the agent (our addition; default 15 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_timeout_ms: Option<u64>,
}

fn default_run_dir() -> PathBuf {
    PathBuf::from(DEFAULT_RUN_DIR)
}

fn default_log_level() -> String {
    "info".into()
}

/// The parsed stdin: the configuration and the previous result, kept as the exact bytes we were given.
#[derive(Debug)]
pub struct Input {
    pub conf: PluginConf,
    pub prev_result: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct Prev {
    #[serde(rename = "prevResult", default)]
    prev_result: Option<Box<RawValue>>,
}

/// Only the version, for commands that need nothing else (VERSION) and for reporting errors.
pub fn peek_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

/// Parses and validates the configuration.
pub fn parse(stdin: &[u8]) -> Result<Input, CniError> {
    let value: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            "failed to decode the network configuration",
            e.to_string(),
        )
    })?;
    let obj = value.as_object().ok_or_else(|| {
        CniError::new(
            code::DECODING_FAILURE,
            "failed to decode the network configuration",
            "not a JSON object",
        )
    })?;
    let version = match obj.get("cniVersion") {
        None => {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                "invalid network configuration",
                "missing cniVersion",
            ));
        }
        Some(Value::String(v)) => v.clone(),
        Some(other) => {
            return Err(CniError::new(
                code::DECODING_FAILURE,
                "failed to decode the network configuration",
                format!("cniVersion is not a string: {other}"),
            ));
        }
    };
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            format!("config is {version:?}, plugin supports {SUPPORTED_VERSIONS:?}"),
        ));
    }
    let conf: PluginConf = serde_json::from_value(value.clone()).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            "failed to decode the network configuration",
            e.to_string(),
        )
        .in_version(Some(&version))
    })?;
    validate(&conf).map_err(|e| e.in_version(Some(&version)))?;
    let prev: Prev = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            "failed to decode prevResult",
            e.to_string(),
        )
        .in_version(Some(&version))
    })?;
    if let Some(p) = &prev.prev_result
        && !p.get().trim_start().starts_with('{')
    {
        return Err(CniError::new(
            code::DECODING_FAILURE,
            "failed to decode prevResult",
            "prevResult is not a JSON object",
        )
        .in_version(Some(&version)));
    }
    Ok(Input {
        conf,
        prev_result: prev.prev_result,
    })
}

fn validate(conf: &PluginConf) -> Result<(), CniError> {
    let invalid = |d: &str| CniError::new(code::INVALID_CONFIG, "invalid network configuration", d);
    if conf.name.trim().is_empty() {
        return Err(invalid("empty network name"));
    }
    if conf.plugin_type.trim().is_empty() {
        return Err(invalid("empty type"));
    }
    if conf.native_nftables == Some(false) {
        return Err(CniError::new(
            code::UNSUPPORTED_FIELD,
            "unsupported field in network configuration",
            "native_nftables=false (only native nftables redirection is implemented)",
        ));
    }
    if conf.cni_agent_run_dir.as_os_str().is_empty() {
        return Err(invalid("empty cni_agent_run_dir"));
    }
    Ok(())
}

/// The IP addresses (without prefix length) of a CNI result.
pub fn result_ips(prev: &RawValue) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(prev.get()) else {
        return Vec::new();
    };
    v.get("ips")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip.get("address")?.as_str())
                .filter_map(|a| a.split('/').next())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keeps_prev_result_bytes_exactly() {
        let stdin = br#"{"cniVersion":"1.0.0","name":"n","type":"istio-cni","ambient_enabled":true,
            "prevResult": {"cniVersion":"1.0.0", "ips":[{"address":"10.0.0.5/24","gateway":"10.0.0.1"}],
            "z": 1.50}}"#;
        let input = parse(stdin).unwrap();
        let raw = input.prev_result.unwrap();
        assert!(raw.get().contains("\"z\": 1.50"));
        assert_eq!(result_ips(&raw), ["10.0.0.5"]);
        assert!(input.conf.ambient_enabled);
        assert_eq!(input.conf.cni_agent_run_dir, PathBuf::from(DEFAULT_RUN_DIR));
    }

    #[test]
    fn error_codes() {
        let cases: &[(&[u8], u32)] = &[
            (b"", 6),
            (b"[]", 6),
            (br#"{"name":"n","type":"t"}"#, 7),
            (br#"{"cniVersion":"9.9.9","name":"n","type":"t"}"#, 1),
            (br#"{"cniVersion":1,"name":"n","type":"t"}"#, 6),
            (br#"{"cniVersion":"1.0.0","type":"t"}"#, 6),
            (br#"{"cniVersion":"1.0.0","name":"","type":"t"}"#, 7),
            (
                br#"{"cniVersion":"1.0.0","name":"n","type":"t","native_nftables":false}"#,
                2,
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","type":"t","prevResult":[1]}"#,
                6,
            ),
        ];
        for (input, want) in cases {
            let err = parse(input).unwrap_err();
            assert_eq!(err.code, *want, "{}", String::from_utf8_lossy(input));
        }
    }
}
