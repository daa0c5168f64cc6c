//! The cluster's shape: how many nodes, their names and underlay addresses, and the address ranges.
//!
//! Pure: derives every node's addresses from a [`ClusterSpec`]; creating anything is `topology`'s job.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::manifest::{ClusterSpec, ManifestError};

/// The most nodes a local mesh may have.
pub use crate::manifest::MAX_NODES;
pub const DEFAULT_NODES: u32 = 2;

/// The effective cluster configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    pub nodes: Vec<NodeConfig>,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Ipv4Net,
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: Ipv4Net,
    #[serde(rename = "underlayCIDR")]
    pub underlay_cidr: Ipv4Net,
    pub trust_domain: String,
}

/// One node: its name, its address on the underlay, and its share of the pod CIDR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfig {
    pub name: String,
    pub ip: Ipv4Addr,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Ipv4Net,
}

impl NodeConfig {
    /// The node's address on its pod bridge: the gateway of its pods.
    pub fn gateway(&self) -> Ipv4Addr {
        nth(self.pod_cidr, 1)
    }

    /// How many pods host-local can address here: all but network, gateway and broadcast.
    pub fn pod_capacity(&self) -> usize {
        (1usize << (32 - self.pod_cidr.prefix_len())).saturating_sub(3)
    }
}

fn nth(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(n))
}

impl ClusterConfig {
    /// Builds the configuration from the `Cluster` document (if any) and the `--nodes` flag (which wins).
    pub fn from_spec(spec: &ClusterSpec, nodes_flag: Option<u32>) -> Result<Self, ManifestError> {
        let count = nodes_flag.or(spec.nodes).unwrap_or(DEFAULT_NODES);
        if !(1..=MAX_NODES).contains(&count) {
            return Err(ManifestError::new(format!(
                "--nodes {count}: must be 1-{MAX_NODES}"
            )));
        }
        let pod_cidr = spec.pod_cidr.unwrap_or(net("10.244.0.0/16"));
        let service_cidr = spec.service_cidr.unwrap_or(net("10.96.0.0/16"));
        let underlay_cidr = spec.underlay_cidr.unwrap_or(net("172.18.0.0/16"));
        let mask = spec.node_cidr_mask_size.unwrap_or(24);
        let field_err = |field: &str, msg: String| ManifestError {
            location: None,
            object: Some("Cluster".into()),
            field: Some(field.into()),
            message: msg,
        };
        if mask < pod_cidr.prefix_len() || mask > 30 {
            return Err(field_err(
                "spec.nodeCIDRMaskSize",
                format!(
                    "{mask} must be between the pod CIDR's /{} and /30",
                    pod_cidr.prefix_len()
                ),
            ));
        }
        let subnets: Vec<Ipv4Net> = pod_cidr
            .subnets(mask)
            .map_err(|e| field_err("spec.nodeCIDRMaskSize", e.to_string()))?
            .take(count as usize)
            .collect();
        if subnets.len() < count as usize {
            return Err(field_err(
                "spec.podCIDR",
                format!(
                    "{pod_cidr} holds only {} node ranges of /{mask}, {count} nodes asked",
                    subnets.len()
                ),
            ));
        }
        if (1u64 << (32 - underlay_cidr.prefix_len())) < u64::from(count) + 11 {
            return Err(field_err(
                "spec.underlayCIDR",
                format!("{underlay_cidr} is too small for {count} nodes"),
            ));
        }
        for (a, b, field) in [
            (pod_cidr, service_cidr, "spec.serviceCIDR"),
            (pod_cidr, underlay_cidr, "spec.underlayCIDR"),
            (service_cidr, underlay_cidr, "spec.underlayCIDR"),
        ] {
            if a.contains(&b.network()) || b.contains(&a.network()) {
                return Err(field_err(field, format!("{b} overlaps {a}")));
            }
        }
        let nodes = subnets
            .into_iter()
            .enumerate()
            .map(|(i, pod_cidr)| NodeConfig {
                name: format!("node{}", i + 1),
                ip: nth(underlay_cidr, 10 + i as u32),
                pod_cidr,
            })
            .collect();
        Ok(ClusterConfig {
            nodes,
            pod_cidr,
            service_cidr,
            underlay_cidr,
            trust_domain: "cluster.local".into(),
        })
    }

    pub fn node(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The first assignable Service address: `.1` is left for the API server as in Kubernetes, so from `.10`.
    pub fn first_service_ip(&self) -> Ipv4Addr {
        nth(self.service_cidr, 10)
    }
}

fn net(s: &str) -> Ipv4Net {
    // Only called with the literals above.
    s.parse().unwrap_or_else(|_| Ipv4Net::default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_give_two_nodes_with_their_own_ranges() {
        let c = ClusterConfig::from_spec(&ClusterSpec::default(), None).unwrap();
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.nodes[0].name, "node1");
        assert_eq!(c.nodes[0].pod_cidr.to_string(), "10.244.0.0/24");
        assert_eq!(c.nodes[1].pod_cidr.to_string(), "10.244.1.0/24");
        assert_eq!(c.nodes[1].ip.to_string(), "172.18.0.11");
        assert_eq!(c.nodes[0].gateway().to_string(), "10.244.0.1");
        assert_eq!(c.nodes[0].pod_capacity(), 253);
        assert_eq!(c.first_service_ip().to_string(), "10.96.0.10");
    }

    #[test]
    fn flag_overrides_document_and_bad_ranges_are_named() {
        let spec = ClusterSpec {
            nodes: Some(3),
            ..Default::default()
        };
        assert_eq!(
            ClusterConfig::from_spec(&spec, Some(1))
                .unwrap()
                .nodes
                .len(),
            1
        );
        let tiny = ClusterSpec {
            node_cidr_mask_size: Some(30),
            ..Default::default()
        };
        assert_eq!(
            ClusterConfig::from_spec(&tiny, None).unwrap().nodes[0].pod_capacity(),
            1
        );
        let overlap = ClusterSpec {
            service_cidr: Some("10.244.128.0/20".parse().unwrap()),
            ..Default::default()
        };
        let err = ClusterConfig::from_spec(&overlap, None).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("spec.serviceCIDR"));
        let too_many = ClusterSpec {
            pod_cidr: Some("10.244.0.0/23".parse().unwrap()),
            ..Default::default()
        };
        assert!(
            ClusterConfig::from_spec(&too_many, Some(3))
                .unwrap_err()
                .to_string()
                .contains("holds only 2")
        );
        assert!(ClusterConfig::from_spec(&ClusterSpec::default(), Some(0)).is_err());
    }
}
