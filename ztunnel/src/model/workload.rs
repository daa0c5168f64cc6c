//! A workload: a pod (or VM, or endpoint set behind a hostname), keyed by `uid`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hbone::{Identity, IdentityError};
use serde::{Deserialize, Serialize};

use super::{DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN, GatewayAddress, NamespacedHostname};

/// Service port → target port of one endpoint.
pub type PortMap = BTreeMap<u16, u16>;

/// How to reach the workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// Plain TCP to the target port (not captured by a tunnel).
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// HBONE to the workload's 15008.
    #[serde(rename = "HBONE")]
    Hbone,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    #[default]
    Healthy,
    Unhealthy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NetworkMode {
    #[default]
    Standard,
    /// Shares the node's IP: never looked up by address.
    HostNetwork,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AppTunnelProtocol {
    #[default]
    None,
    Proxy,
}

/// The workload accepts tunnel metadata itself (spec §2.6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationTunnel {
    pub protocol: AppTunnelProtocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Locality {
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub subzone: String,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn one() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

/// One workload (spec §4.1), in the local-config / config-dump shape (spec §11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub workload_ips: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default)]
    pub network: String,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default = "default_td")]
    pub trust_domain: String,
    #[serde(default = "default_sa")]
    pub service_account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<GatewayAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_gateway: Option<GatewayAddress>,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub canonical_name: String,
    #[serde(default)]
    pub canonical_revision: String,
    /// Lower-case WorkloadType: deployment | cronjob | pod | job.
    #[serde(default = "default_workload_type")]
    pub workload_type: String,
    #[serde(default)]
    pub workload_name: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub native_tunnel: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_tunnel: Option<ApplicationTunnel>,
    #[serde(default, deserialize_with = "super::de_service_ports")]
    pub services: BTreeMap<NamespacedHostname, PortMap>,
    #[serde(default)]
    pub authorization_policies: Vec<String>,
    #[serde(default)]
    pub status: HealthStatus,
    #[serde(default = "default_cluster")]
    pub cluster_id: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub locality: Locality,
    #[serde(default, skip_serializing_if = "is_default")]
    pub network_mode: NetworkMode,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub capacity: u32,
}

fn default_td() -> String {
    DEFAULT_TRUST_DOMAIN.into()
}
fn default_sa() -> String {
    DEFAULT_SERVICE_ACCOUNT.into()
}
fn default_cluster() -> String {
    "Kubernetes".into()
}
fn default_workload_type() -> String {
    "pod".into()
}

impl Default for Workload {
    /// Empty, with the defaults a missing field gets (trust domain, service account, cluster,
    /// workload type `pod`, capacity 1).
    fn default() -> Self {
        Self {
            uid: String::new(),
            name: String::new(),
            namespace: String::new(),
            workload_ips: Vec::new(),
            hostname: String::new(),
            network: String::new(),
            protocol: Protocol::default(),
            trust_domain: default_td(),
            service_account: default_sa(),
            waypoint: None,
            network_gateway: None,
            node: String::new(),
            canonical_name: String::new(),
            canonical_revision: String::new(),
            workload_type: default_workload_type(),
            workload_name: String::new(),
            native_tunnel: false,
            application_tunnel: None,
            services: BTreeMap::new(),
            authorization_policies: Vec::new(),
            status: HealthStatus::default(),
            cluster_id: default_cluster(),
            locality: Locality::default(),
            network_mode: NetworkMode::default(),
            capacity: 1,
        }
    }
}

impl Workload {
    /// `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`.
    pub fn identity(&self) -> Result<Identity, IdentityError> {
        Identity::new(&self.trust_domain, &self.namespace, &self.service_account)
    }

    /// The target port this endpoint uses for `service`'s `service_port`, if it maps it.
    pub fn target_port(&self, service: &NamespacedHostname, service_port: u16) -> Option<u16> {
        self.services
            .get(service)
            .and_then(|ports| ports.get(&service_port))
            .copied()
            .filter(|p| *p != 0)
    }

    /// Whether this workload may be looked up by IP.
    pub fn indexed_by_ip(&self) -> bool {
        self.network_mode == NetworkMode::Standard
    }
}
