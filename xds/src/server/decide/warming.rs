//! Envoy cluster warming: a cluster Envoy receives new or changed is only used once a
//! `ClusterLoadAssignment` for it arrives after it, even an unchanged one. Observed with Envoy 1.40: after a
//! CDS update that changes a cluster but not its endpoints, SotW Envoy re-sends its EDS request with the
//! same names, delta Envoy sends nothing, and either way the cluster stays warming until the EDS
//! `initial_fetch_timeout` (15 s) unless the server sends the assignment again. So every EDS cluster sent
//! marks its assignment for re-sending (see the sessions).
//!
//! The only place the server looks inside a resource: an EDS cluster's assignment name.

use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use prost::Message;

use crate::Resource;

/// The `ClusterLoadAssignment` name an EDS cluster waits for (`eds_cluster_config.service_name`, else the
/// cluster name); `None` for other clusters and for bodies that do not decode.
pub(crate) fn eds_name(cluster: &Resource) -> Option<String> {
    let c = Cluster::decode(cluster.body.value.as_slice()).ok()?;
    let eds = matches!(c.cluster_discovery_type, Some(ClusterDiscoveryType::Type(t)) if t == DiscoveryType::Eds as i32);
    if !eds {
        return None;
    }
    let service = c
        .eds_cluster_config
        .map(|e| e.service_name)
        .unwrap_or_default();
    Some(if service.is_empty() {
        cluster.name.clone()
    } else {
        service
    })
}

/// The assignment names to send again after `clusters` went out.
pub(crate) fn rewarm<'a>(
    clusters: impl IntoIterator<Item = &'a Arc<Resource>>,
) -> impl Iterator<Item = String> {
    clusters.into_iter().filter_map(|c| eds_name(c))
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::EdsClusterConfig;

    use super::*;
    use crate::type_url::CLUSTER;

    fn cluster(
        name: &str,
        kind: Option<DiscoveryType>,
        service_name: Option<&str>,
    ) -> Arc<Resource> {
        let c = Cluster {
            name: name.to_owned(),
            cluster_discovery_type: kind.map(|k| ClusterDiscoveryType::Type(k as i32)),
            eds_cluster_config: service_name.map(|s| EdsClusterConfig {
                service_name: s.to_owned(),
                eds_config: None,
            }),
            ..Default::default()
        };
        Arc::new(Resource::new(CLUSTER, name, &c))
    }

    #[test]
    fn table() {
        let garbage = Arc::new(Resource {
            name: "g".into(),
            version: "1".into(),
            body: envoy_types::pb::google::protobuf::Any {
                type_url: CLUSTER.into(),
                value: vec![0xff, 0xff, 0xff],
            },
        });
        let cases = [
            (
                "eds, no service name",
                cluster("a", Some(DiscoveryType::Eds), None),
                Some("a"),
            ),
            (
                "eds, empty service name",
                cluster("a", Some(DiscoveryType::Eds), Some("")),
                Some("a"),
            ),
            (
                "eds, service name",
                cluster("a", Some(DiscoveryType::Eds), Some("svc")),
                Some("svc"),
            ),
            ("static (default)", cluster("s", None, None), None),
            (
                "strict dns",
                cluster("d", Some(DiscoveryType::StrictDns), None),
                None,
            ),
            ("not a cluster", garbage, None),
        ];
        for (name, c, expect) in cases {
            assert_eq!(eds_name(&c).as_deref(), expect, "{name}");
        }
    }
}
