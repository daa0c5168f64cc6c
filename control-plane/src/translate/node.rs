//! Which audience an xDS client belongs to, from its `Node` (see the module doc of
//! `translate` for the rules).

use xds::pb::envoy::config::core::v3::Node;
use xds::pb::google::protobuf::value::Kind;

/// The snapshot a client gets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A node tunnel: workload discovery and L4 policy.
    Ztunnel,
    /// A waypoint Envoy for the Gateway `namespace/name`.
    Waypoint { namespace: String, name: String },
    /// A proxyless gRPC client (and anything unrecognised).
    Proxyless,
}

fn metadata_string<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    match node.metadata.as_ref()?.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Classifies a client by its node id (and, for `router~` ids, its metadata).
pub fn node_kind(node: &Node) -> NodeKind {
    let mut parts = node.id.split('~');
    match parts.next() {
        Some("ztunnel") => NodeKind::Ztunnel,
        Some("waypoint") => {
            let gateway = parts.nth(1).and_then(|p| p.split_once('.'));
            match gateway {
                Some((name, namespace)) if !name.is_empty() && !namespace.is_empty() => {
                    NodeKind::Waypoint {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                    }
                }
                _ => NodeKind::Proxyless,
            }
        }
        Some("router") => match (
            metadata_string(node, "WAYPOINT_NAME"),
            metadata_string(node, "NAMESPACE"),
        ) {
            (Some(name), Some(namespace)) => NodeKind::Waypoint {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            _ => NodeKind::Proxyless,
        },
        _ => NodeKind::Proxyless,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds::pb::google::protobuf::{Struct, Value};

    fn node(id: &str, meta: &[(&str, &str)]) -> Node {
        let fields = meta
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    Value {
                        kind: Some(Kind::StringValue((*v).to_owned())),
                    },
                )
            })
            .collect();
        Node {
            id: id.into(),
            metadata: Some(Struct { fields }),
            ..Node::default()
        }
    }

    #[test]
    fn classifies_nodes() {
        let wp = |ns: &str, name: &str| NodeKind::Waypoint {
            namespace: ns.into(),
            name: name.into(),
        };
        let cases = [
            (
                node(
                    "ztunnel~10.0.0.1~zt-1.istio-system~istio-system.svc.cluster.local",
                    &[],
                ),
                NodeKind::Ztunnel,
            ),
            (
                node("waypoint~10.0.0.9~wp.shop~shop.svc.cluster.local", &[]),
                wp("shop", "wp"),
            ),
            (node("waypoint~10.0.0.9~nodot~x", &[]), NodeKind::Proxyless),
            (
                node(
                    "router~10.0.0.9~wp-5d7.shop~shop.svc.cluster.local",
                    &[("WAYPOINT_NAME", "wp"), ("NAMESPACE", "shop")],
                ),
                wp("shop", "wp"),
            ),
            (
                node("router~10.0.0.9~gw.ingress~x", &[("NAMESPACE", "ingress")]),
                NodeKind::Proxyless,
            ),
            (
                node("sidecar~10.0.0.2~a.b~b.svc.cluster.local", &[]),
                NodeKind::Proxyless,
            ),
            (node("py-grpc-client", &[]), NodeKind::Proxyless),
            (node("", &[]), NodeKind::Proxyless),
        ];
        for (n, want) in cases {
            assert_eq!(node_kind(&n), want, "{}", n.id);
        }
    }
}
