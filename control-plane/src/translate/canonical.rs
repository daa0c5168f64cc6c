//! Deterministic encodings for the messages we emit that contain protobuf maps.
//!
//! prost encodes `map` fields from a `HashMap`, in an order that changes from one run (and one
//! map) to the next; a resource's version is a digest of its bytes, so every translation would
//! re-send unchanged resources. Protobuf readers accept fields in any order and accumulate map
//! entries, so a message is encoded here as "the message with its maps emptied" followed by the
//! map entries in key order (and nested messages the same way, as pre-encoded [`Raw`] bytes).
//! Covered: `istio.workload.Address` (Workload `services`), ClusterLoadAssignment (endpoint
//! metadata `Struct`), the RBAC filter configs (`policies`) and RouteConfiguration (virtual host
//! and route `typed_per_filter_config`).

use std::collections::HashMap;

use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, encode_key, encode_varint, skip_field};
use proto::istio::workload as xw;
use xds::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints,
};
use xds::pb::envoy::config::rbac::v3::Rbac as RbacRules;
use xds::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use xds::pb::envoy::extensions::filters::http::rbac::v3::{Rbac, RbacPerRoute};
use xds::pb::google::protobuf::{Any, Struct};

/// Message bytes encoded already; `Snapshot::add` takes it like any message.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Raw(pub Vec<u8>);

impl Message for Raw {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// Appends field `tag` holding the encoded message `bytes`.
fn field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.put_slice(bytes);
}

/// Appends map field `tag` (string keys, message values) in key order.
fn map<'a>(tag: u32, entries: impl Iterator<Item = (&'a String, Vec<u8>)>, out: &mut Vec<u8>) {
    let mut sorted: Vec<(&String, Vec<u8>)> = entries.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (key, value) in sorted {
        let mut entry = Vec::new();
        prost::encoding::string::encode(1, key, &mut entry);
        field(2, &value, &mut entry);
        field(tag, &entry, out);
    }
}

/// `Struct` (values themselves must be map-free, as our string values are).
fn struct_bytes(s: &Struct) -> Vec<u8> {
    let mut out = Vec::new();
    map(
        1,
        s.fields.iter().map(|(k, v)| (k, v.encode_to_vec())),
        &mut out,
    );
    out
}

pub(super) fn address(a: &xw::Address) -> Raw {
    let mut out = Vec::new();
    match &a.r#type {
        Some(xw::address::Type::Workload(w)) => {
            let mut bytes = xw::Workload {
                services: Default::default(),
                ..w.clone()
            }
            .encode_to_vec();
            map(
                22,
                w.services.iter().map(|(k, v)| (k, v.encode_to_vec())),
                &mut bytes,
            );
            field(1, &bytes, &mut out);
        }
        _ => a.encode_raw(&mut out),
    }
    Raw(out)
}

fn lb_endpoint(e: &LbEndpoint) -> Vec<u8> {
    let mut out = LbEndpoint {
        metadata: None,
        ..e.clone()
    }
    .encode_to_vec();
    if let Some(m) = &e.metadata {
        let mut meta = Vec::new();
        map(
            1,
            m.filter_metadata.iter().map(|(k, s)| (k, struct_bytes(s))),
            &mut meta,
        );
        map(
            2,
            m.typed_filter_metadata
                .iter()
                .map(|(k, a)| (k, a.encode_to_vec())),
            &mut meta,
        );
        field(3, &meta, &mut out);
    }
    out
}

pub(super) fn load_assignment(cla: &ClusterLoadAssignment) -> Raw {
    let mut out = ClusterLoadAssignment {
        endpoints: Vec::new(),
        ..cla.clone()
    }
    .encode_to_vec();
    for locality in &cla.endpoints {
        let mut bytes = LocalityLbEndpoints {
            lb_endpoints: Vec::new(),
            ..locality.clone()
        }
        .encode_to_vec();
        for e in &locality.lb_endpoints {
            field(2, &lb_endpoint(e), &mut bytes);
        }
        field(2, &bytes, &mut out);
    }
    Raw(out)
}

fn rules(r: &RbacRules) -> Vec<u8> {
    let mut out = RbacRules {
        policies: Default::default(),
        ..r.clone()
    }
    .encode_to_vec();
    map(
        2,
        r.policies.iter().map(|(k, p)| (k, p.encode_to_vec())),
        &mut out,
    );
    out
}

/// The RBAC HTTP filter config.
pub(super) fn rbac(r: &Rbac) -> Vec<u8> {
    let mut out = Rbac {
        rules: None,
        shadow_rules: None,
        ..r.clone()
    }
    .encode_to_vec();
    if let Some(x) = &r.rules {
        field(1, &rules(x), &mut out);
    }
    if let Some(x) = &r.shadow_rules {
        field(2, &rules(x), &mut out);
    }
    out
}

/// The RBAC per-route (here: per virtual host) override.
pub(super) fn rbac_per_route(r: &RbacPerRoute) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(x) = &r.rbac {
        field(2, &rbac(x), &mut out);
    }
    out
}

/// A message whose `Any` must be packed from canonical bytes.
pub(super) fn any_of<M: prost::Name>(bytes: Vec<u8>) -> Any {
    Any {
        type_url: M::type_url(),
        value: bytes,
    }
}

/// A message's encoding with its `typed_per_filter_config` map (field `tag`) in key order.
fn with_per_filter_config(
    mut bytes: Vec<u8>,
    tag: u32,
    map_field: &HashMap<String, Any>,
) -> Vec<u8> {
    map(
        tag,
        map_field.iter().map(|(k, a)| (k, a.encode_to_vec())),
        &mut bytes,
    );
    bytes
}

/// Virtual hosts and their routes have `typed_per_filter_config` maps (fields 15 and 13).
pub(super) fn route_configuration(rc: &RouteConfiguration) -> Raw {
    let mut out = RouteConfiguration {
        virtual_hosts: Vec::new(),
        ..rc.clone()
    }
    .encode_to_vec();
    for vh in &rc.virtual_hosts {
        let mut bytes = VirtualHost {
            routes: Vec::new(),
            typed_per_filter_config: HashMap::new(),
            ..vh.clone()
        }
        .encode_to_vec();
        for r in &vh.routes {
            let route = Route {
                typed_per_filter_config: HashMap::new(),
                ..r.clone()
            }
            .encode_to_vec();
            field(
                3,
                &with_per_filter_config(route, 13, &r.typed_per_filter_config),
                &mut bytes,
            );
        }
        field(
            2,
            &with_per_filter_config(bytes, 15, &vh.typed_per_filter_config),
            &mut out,
        );
    }
    Raw(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use xds::pb::google::protobuf::{Value, value::Kind};

    #[test]
    fn canonical_bytes_decode_to_the_same_message_every_time() {
        let fields = (0..20)
            .map(|i| {
                (
                    format!("k{i}"),
                    Value {
                        kind: Some(Kind::StringValue(format!("v{i}"))),
                    },
                )
            })
            .collect();
        let cla = ClusterLoadAssignment {
            cluster_name: "c".into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    metadata: Some(xds::pb::envoy::config::core::v3::Metadata {
                        filter_metadata: [("istio".to_owned(), Struct { fields })]
                            .into_iter()
                            .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let first = load_assignment(&cla).0;
        for _ in 0..10 {
            assert_eq!(load_assignment(&cla.clone()).0, first);
        }
        assert_eq!(
            ClusterLoadAssignment::decode(first.as_slice()).unwrap(),
            cla
        );
        let w = xw::Address {
            r#type: Some(xw::address::Type::Workload(xw::Workload {
                uid: "u".into(),
                services: (0..20)
                    .map(|i| (format!("ns/s{i}"), xw::PortList::default()))
                    .collect(),
                ..Default::default()
            })),
        };
        let bytes = address(&w).0;
        assert_eq!(xw::Address::decode(bytes.as_slice()).unwrap(), w);
    }
}
