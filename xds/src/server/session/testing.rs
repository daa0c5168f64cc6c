//! Helpers for the session tests: snapshots from `(type, name, version)` triples.

use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;

use crate::{Resource, Snapshot};

/// A snapshot holding `items` (`(type_url, name, version)`), each type declared.
pub(crate) fn snapshot(items: &[(&str, &str, &str)]) -> Arc<Snapshot> {
    let mut s = Snapshot::new();
    for (type_url, name, version) in items {
        s.insert(Resource {
            name: name.to_string(),
            version: version.to_string(),
            body: Any {
                type_url: type_url.to_string(),
                value: format!("{name}@{version}").into_bytes(),
            },
        });
    }
    Arc::new(s)
}

/// `"name@version"` of an `Any` built by [`snapshot`].
pub(crate) fn label(any: &Any) -> String {
    String::from_utf8_lossy(&any.value).into_owned()
}

/// Adds an EDS cluster `name` whose content (and version) depends on `tag` (the resource version is `tag`).
pub(crate) fn with_eds_cluster(snapshot: &Snapshot, name: &str, tag: u32) -> Arc<Snapshot> {
    use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
    use prost::Message;
    let c = Cluster {
        name: name.to_owned(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        per_connection_buffer_limit_bytes: Some(envoy_types::pb::google::protobuf::UInt32Value {
            value: tag,
        }),
        ..Default::default()
    };
    let mut s = snapshot.clone();
    s.insert(Resource {
        name: name.to_owned(),
        version: tag.to_string(),
        body: Any {
            type_url: crate::type_url::CLUSTER.to_owned(),
            value: c.encode_to_vec(),
        },
    });
    Arc::new(s)
}

pub(crate) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
