//! A service: VIPs and ports, keyed by `namespace/hostname`; its endpoints are the workloads
//! that list it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{GatewayAddress, NamespacedHostname, NetworkAddress};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoadBalancerScope {
    Region,
    Zone,
    Subzone,
    Node,
    Cluster,
    Network,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoadBalancerMode {
    #[default]
    Standard,
    Strict,
    Failover,
    Passthrough,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoadBalancerHealthPolicy {
    #[default]
    OnlyHealthy,
    AllowAll,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    #[serde(default)]
    pub routing_preferences: Vec<LoadBalancerScope>,
    #[serde(default)]
    pub mode: LoadBalancerMode,
    #[serde(default)]
    pub health_policy: LoadBalancerHealthPolicy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpFamilies {
    #[default]
    Automatic,
    Ipv4Only,
    Ipv6Only,
    Dual,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Visibility {
    #[default]
    Public,
    Namespace,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// One service (spec §4.1), in the local-config / config-dump shape (spec §11).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub hostname: String,
    #[serde(default)]
    pub vips: Vec<NetworkAddress>,
    /// Service port → target port (0 = each endpoint's own map).
    #[serde(default, deserialize_with = "super::de_port_map")]
    pub ports: BTreeMap<u16, u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<GatewayAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub ip_families: IpFamilies,
    #[serde(default, skip_serializing_if = "is_default")]
    pub canonical: bool,
    #[serde(default, skip_serializing_if = "is_default")]
    pub visibility: Visibility,
}

impl Service {
    /// The primary key.
    pub fn key(&self) -> NamespacedHostname {
        NamespacedHostname::new(&self.namespace, &self.hostname)
    }

    /// Whether traffic goes straight to the original destination.
    pub fn is_passthrough(&self) -> bool {
        self.load_balancer
            .as_ref()
            .is_some_and(|lb| lb.mode == LoadBalancerMode::Passthrough)
    }
}
