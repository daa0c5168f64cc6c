//! `meshctl.dev/v1alpha1` FaultInjection and LocalRateLimit: route extensions that HTTPRoute and
//! GRPCRoute rules reference with an `ExtensionRef` filter (`group: meshctl.dev`, same namespace),
//! translated for waypoints into Envoy's fault and local rate limit filters. A LocalRateLimit
//! may also attach to Services of its namespace with `targetRefs`. Strictly typed: unknown
//! fields are errors. Checks live in `rules/extensions.rs`.
//!
//! FaultInjection's spec is Istio's VirtualService `HTTPFaultInjection` (without the deprecated
//! `percent` and the unimplemented `exponentialDelay`/`http2Error`).

use std::fmt;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the kinds here, as an `ExtensionRef` names it.
pub const GROUP: &str = "meshctl.dev";
pub const FAULT_INJECTION: &str = "FaultInjection";
pub const LOCAL_RATE_LIMIT: &str = "LocalRateLimit";

// The CRD (`crds/meshctl.dev.yaml`) is generated from this type (`FaultInjection::crd()`).
/// At least one of `delay` and `abort`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, CustomResource, JsonSchema)]
#[kube(
    group = "meshctl.dev",
    version = "v1alpha1",
    kind = "FaultInjection",
    namespaced,
    derive = "PartialEq",
    doc = "Fault injection (Istio's HTTPFaultInjection) for the HTTPRoute/GRPCRoute rules that name it in an ExtensionRef filter"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultInjectionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// Share of requests, `0.0..=100.0`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Percent {
    pub value: f64,
}

/// A percentage that is absent means every request (Istio's default).
pub fn percent_or_all(p: Option<Percent>) -> f64 {
    p.map_or(100.0, |p| p.value)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    /// A duration (`200ms`, `1s`), at least 1 ms.
    pub fixed_delay: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// Exactly one of `httpStatus` (200-599) and `grpcStatus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub grpc_status: Option<GrpcStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// A gRPC status: a code name as Istio writes it (`UNAVAILABLE`) or its number (`14`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GrpcStatus {
    Code(u32),
    Name(String),
}

/// A number or a string, as a structural CRD schema writes it.
fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"x-kubernetes-int-or-string": true})
}

/// gRPC status code names, by number.
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl fmt::Display for GrpcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrpcStatus::Code(c) => write!(f, "{c}"),
            GrpcStatus::Name(n) => write!(f, "{n:?}"),
        }
    }
}

impl GrpcStatus {
    /// The code, if this is a known code name or a number (of a known code or not).
    pub fn code(&self) -> Option<u32> {
        match self {
            GrpcStatus::Code(c) => Some(*c),
            GrpcStatus::Name(n) => n.parse().ok().or_else(|| {
                GRPC_CODES
                    .iter()
                    .position(|c| c == n)
                    .and_then(|i| u32::try_from(i).ok())
            }),
        }
    }
}

// The CRD (`crds/meshctl.dev.yaml`) is generated from this type (`LocalRateLimit::crd()`).
/// A token bucket, for the route rules that name it or for the Services of `targetRefs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomResource, JsonSchema)]
#[kube(
    group = "meshctl.dev",
    version = "v1alpha1",
    kind = "LocalRateLimit",
    namespaced,
    derive = "PartialEq",
    doc = "A local (per waypoint instance) token-bucket rate limit for the route rules that name it, or for Services"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalRateLimitSpec {
    /// Services (same namespace) whose every virtual host on their waypoint gets this limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<LocalTargetRef>,
    pub token_bucket: TokenBucket,
    /// The status of a limited response, 400-599 (default 429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// Envoy's token bucket: starts full, gains `tokensPerFill` every `fillInterval` up to
/// `maxTokens`; each request takes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenBucket {
    pub max_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_fill: Option<u32>,
    /// A duration, at least 50 ms (Envoy's minimum).
    pub fill_interval: String,
}

/// What a LocalRateLimit attaches to: a Service of its namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalTargetRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
}

impl LocalTargetRef {
    /// Whether this names a core Service (no group or `""`, kind `Service`).
    pub fn is_service(&self) -> bool {
        matches!(self.group.as_deref(), None | Some("") | Some("core")) && self.kind == "Service"
    }
}

/// Our CustomResourceDefinitions, as checked in at `control-plane/crds/meshctl.dev.yaml`.
pub fn crds_yaml() -> String {
    use kube::CustomResourceExt;
    let mut out = String::from(
        "# Generated from control-plane/src/manifest/extensions.rs by `UPDATE_CRDS=1 cargo test -p control-plane crds`;\n# do not edit.\n",
    );
    for crd in [FaultInjection::crd(), LocalRateLimit::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd).unwrap_or_default());
    }
    out
}
