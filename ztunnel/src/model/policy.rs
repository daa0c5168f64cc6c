//! An L4 authorization policy (`istio.security.Authorization`, spec §4.2): rules → clauses →
//! matches. Evaluation lives in [`crate::authz`].

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PolicyScope {
    #[default]
    Global,
    Namespace,
    WorkloadSelector,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PolicyAction {
    #[default]
    Allow,
    Deny,
}

/// One string comparison; `Presence` = any non-empty value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// Written `{Presence: []}`.
    Presence(),
}

impl StringMatch {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(s) => value.starts_with(s.as_str()),
            StringMatch::Suffix(s) => value.ends_with(s.as_str()),
            StringMatch::Presence() => !value.is_empty(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountMatch {
    pub namespace: String,
    pub service_account: String,
}

/// Every set category must pass; an all-empty match never matches (spec §5.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<ServiceAccountMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<ServiceAccountMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_source_ips: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ips: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_destination_ips: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_destination_ports: Vec<u16>,
}

/// OR of matches.
pub type Clause = Vec<Match>;
/// AND of clauses.
pub type Rule = Vec<Clause>;

/// One policy, in the local-config / config-dump shape (spec §11).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorization {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub scope: PolicyScope,
    #[serde(default)]
    pub action: PolicyAction,
    #[serde(default)]
    pub dry_run: bool,
    /// OR of rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl Authorization {
    /// `namespace/name`, the xDS resource name and the key workloads reference.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
