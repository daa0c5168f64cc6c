//! Domain types of the workload API: what the node tunnel knows about workloads, services and
//! L4 policies.
//!
//! Owns the types and their serde shape, which is both the local configuration format (spec
//! §11: camelCase keys, unknown fields rejected, CamelCase enums) and the `config_dump` shape
//! (spec §10). Conversions from the xDS protos live in [`from_proto`]. Does not own the store
//! that indexes them ([`crate::state`]) nor any decision made with them.

pub mod from_proto;
pub mod policy;
pub mod service;
pub mod workload;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use policy::{
    Authorization, Match, PolicyAction, PolicyScope, ServiceAccountMatch, StringMatch,
};
pub use service::{
    IpFamilies, LoadBalancer, LoadBalancerHealthPolicy, LoadBalancerMode, LoadBalancerScope,
    Service,
};
pub use workload::{
    AppTunnelProtocol, ApplicationTunnel, HealthStatus, Locality, NetworkMode, PortMap, Protocol,
    Workload,
};

/// Default trust domain when a workload leaves it empty.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// Default service account when a workload leaves it empty.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Why a value of the workload API is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("network address {0:?}: expected \"<network>/<ip>\"")]
    NetworkAddress(String),
    #[error("gateway destination {0:?}: expected \"<network>/<ip>\" or \"<namespace>/<hostname>\"")]
    GatewayDestination(String),
    #[error("IP address must be 4 or 16 bytes, got {0}")]
    IpLength(usize),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// An IP on a named network (`""` = the default network). Written `"<network>/<ip>"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkAddress {
    pub network: String,
    pub address: IpAddr,
}

impl NetworkAddress {
    pub fn new(network: impl Into<String>, address: IpAddr) -> Self {
        Self {
            network: network.into(),
            address,
        }
    }
}

impl fmt::Display for NetworkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.address)
    }
}

impl FromStr for NetworkAddress {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (network, ip) = s
            .rsplit_once('/')
            .ok_or_else(|| ModelError::NetworkAddress(s.to_owned()))?;
        let address = ip
            .parse()
            .map_err(|_| ModelError::NetworkAddress(s.to_owned()))?;
        Ok(Self::new(network, address))
    }
}

impl Serialize for NetworkAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NetworkAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A Service named by namespace and hostname (the Service's primary key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespacedHostname {
    pub namespace: String,
    pub hostname: String,
}

impl NamespacedHostname {
    pub fn new(namespace: impl Into<String>, hostname: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            hostname: hostname.into(),
        }
    }
}

impl fmt::Display for NamespacedHostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.hostname)
    }
}

impl FromStr for NamespacedHostname {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, host)) if !ns.is_empty() && !host.is_empty() && !host.contains('/') => {
                Ok(Self::new(ns, host))
            }
            _ => Err(ModelError::Invalid {
                field: "service key",
                reason: format!("{s:?}: expected \"<namespace>/<hostname>\""),
            }),
        }
    }
}

impl Serialize for NamespacedHostname {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NamespacedHostname {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a gateway (waypoint or network gateway) is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GatewayDestination {
    /// A VIP or workload IP.
    Address(NetworkAddress),
    /// A Service (or a Workload with that hostname).
    Hostname(NamespacedHostname),
}

impl fmt::Display for GatewayDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayDestination::Address(a) => a.fmt(f),
            GatewayDestination::Hostname(h) => h.fmt(f),
        }
    }
}

impl FromStr for GatewayDestination {
    type Err = ModelError;
    /// `"<network>/<ip>"` when the part after the last `/` is an IP, else `"<ns>/<hostname>"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(a) = s.parse::<NetworkAddress>() {
            return Ok(GatewayDestination::Address(a));
        }
        s.parse()
            .map(GatewayDestination::Hostname)
            .map_err(|_| ModelError::GatewayDestination(s.to_owned()))
    }
}

impl Serialize for GatewayDestination {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GatewayDestination {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A waypoint or network gateway and its HBONE port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayAddress {
    pub destination: GatewayDestination,
    #[serde(default = "default_hbone_port")]
    pub hbone_mtls_port: u16,
}

fn default_hbone_port() -> u16 {
    15008
}

/// Parses a 4- or 16-byte IP from the wire.
pub fn ip_from_bytes(b: &[u8]) -> Result<IpAddr, ModelError> {
    match b.len() {
        4 => {
            let a: [u8; 4] = b.try_into().map_err(|_| ModelError::IpLength(4))?;
            Ok(IpAddr::from(a))
        }
        16 => {
            let a: [u8; 16] = b.try_into().map_err(|_| ModelError::IpLength(16))?;
            Ok(IpAddr::from(a))
        }
        n => Err(ModelError::IpLength(n)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        let a: NetworkAddress = "/10.0.0.1".parse().unwrap();
        assert_eq!(a.network, "");
        assert_eq!(a.to_string(), "/10.0.0.1");
        let b: NetworkAddress = "net1/::1".parse().unwrap();
        assert_eq!(b.network, "net1");
        assert!("10.0.0.1".parse::<NetworkAddress>().is_err());
        assert_eq!(
            "shop/wp.shop.svc.cluster.local"
                .parse::<GatewayDestination>()
                .unwrap(),
            GatewayDestination::Hostname(NamespacedHostname::new(
                "shop",
                "wp.shop.svc.cluster.local"
            ))
        );
        assert!(matches!(
            "/10.1.2.3".parse::<GatewayDestination>().unwrap(),
            GatewayDestination::Address(_)
        ));
        assert!("nothing".parse::<GatewayDestination>().is_err());
        assert!(ip_from_bytes(&[1, 2, 3, 4, 5]).is_err());
    }
}

/// A port used as a map key: YAML writes it as a number, JSON as a string; both are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey(u16);

impl<'de> Deserialize<'de> for PortKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PortKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number (0-65535)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortKey, E> {
                u16::try_from(v)
                    .map(PortKey)
                    .map_err(|_| E::custom(format!("port {v} is over 65535")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortKey, E> {
                u16::try_from(v)
                    .map(PortKey)
                    .map_err(|_| E::custom(format!("port {v} is out of range")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PortKey, E> {
                v.parse()
                    .map(PortKey)
                    .map_err(|_| E::custom(format!("{v:?} is not a port number")))
            }
        }
        d.deserialize_any(V)
    }
}

/// `{servicePort: targetPort}` with numeric or string keys.
pub(crate) fn de_port_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<u16, u16>, D::Error> {
    let m: std::collections::BTreeMap<PortKey, u16> = Deserialize::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (k.0, v)).collect())
}

/// `{"ns/hostname": {servicePort: targetPort}}` with numeric or string port keys.
pub(crate) fn de_service_ports<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<NamespacedHostname, workload::PortMap>, D::Error> {
    let m: std::collections::BTreeMap<
        NamespacedHostname,
        std::collections::BTreeMap<PortKey, u16>,
    > = Deserialize::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, ports)| (k, ports.into_iter().map(|(p, t)| (p.0, t)).collect()))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod port_key_tests {
    #[test]
    fn port_maps_accept_yaml_numbers_and_json_strings() {
        let yaml: crate::model::Service =
            serde_yaml_ng::from_str("{name: a, namespace: b, hostname: c, ports: {80: 8080}}")
                .unwrap();
        let json: crate::model::Service = serde_json::from_str(
            r#"{"name":"a","namespace":"b","hostname":"c","ports":{"80":8080}}"#,
        )
        .unwrap();
        assert_eq!(yaml, json);
        assert_eq!(yaml.ports.get(&80), Some(&8080));
        let back: crate::model::Service =
            serde_json::from_str(&serde_json::to_string(&yaml).unwrap()).unwrap();
        assert_eq!(back, yaml);
        assert!(
            serde_json::from_str::<crate::model::Service>(
                r#"{"name":"a","namespace":"b","hostname":"c","ports":{"x":1}}"#
            )
            .is_err()
        );
    }
}
