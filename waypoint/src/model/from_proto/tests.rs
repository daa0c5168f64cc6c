//! Conversion tests: inputs shaped like the control plane's waypoint translation, plus Envoy's
//! other spellings of the same things, and the errors for what does not convert.

#![allow(clippy::unwrap_used)]

mod cluster;
mod fault;
mod listener;
mod rate_limit;
mod rbac;
mod route_actions;
mod routes;

use prost::{Message, Name};
use xds::pb::envoy::config::core::v3::{
    Address, HeaderValue, HeaderValueOption, SocketAddress, address, socket_address::PortSpecifier,
};
use xds::pb::envoy::r#type::matcher::v3::{
    RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};
use xds::pb::google::protobuf as pbuf;

use super::ModelError;

pub(super) fn any<M: Message + Name>(m: &M) -> pbuf::Any {
    pbuf::Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

pub(super) fn secs(s: i64) -> pbuf::Duration {
    pbuf::Duration {
        seconds: s,
        nanos: 0,
    }
}

pub(super) fn millis(ms: i32) -> pbuf::Duration {
    pbuf::Duration {
        seconds: 0,
        nanos: ms * 1_000_000,
    }
}

pub(super) fn u32v(value: u32) -> pbuf::UInt32Value {
    pbuf::UInt32Value { value }
}

pub(super) fn sm(p: MatchPattern) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(p),
        ..StringMatcher::default()
    }
}

pub(super) fn exact(s: &str) -> StringMatcher {
    sm(MatchPattern::Exact(s.into()))
}

pub(super) fn re(s: &str) -> RegexMatcher {
    RegexMatcher {
        regex: s.into(),
        ..RegexMatcher::default()
    }
}

pub(super) fn socket(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..SocketAddress::default()
        })),
    }
}

pub(super) fn hvo(key: &str, value: &str, action: i32) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.into(),
            value: value.into(),
            ..HeaderValue::default()
        }),
        append_action: action,
        ..HeaderValueOption::default()
    }
}

/// The error's field path and whether it is `Unsupported` / `Missing` / `Invalid`.
pub(super) fn where_(e: &ModelError) -> (String, &'static str) {
    match e {
        ModelError::Missing { field, .. } => (field.clone(), "missing"),
        ModelError::Invalid { field, .. } => (field.clone(), "invalid"),
        ModelError::Unsupported { field, .. } => (field.clone(), "unsupported"),
        ModelError::Identity { field, .. } => (field.clone(), "identity"),
    }
}

#[test]
fn errors_name_the_resource_and_field() {
    let e = ModelError::Unsupported {
        kind: super::ResourceKind::Cluster,
        name: "outbound|80||a".into(),
        field: "lb_policy".into(),
        reason: "CLUSTER_PROVIDED".into(),
    };
    assert_eq!(
        e.to_string(),
        "Cluster \"outbound|80||a\": lb_policy: not supported by the waypoint: CLUSTER_PROVIDED"
    );
    assert!(e.is_unsupported());
}

#[test]
fn durations() {
    use super::{At, ResourceKind, duration};
    let at = At::root(ResourceKind::Cluster, "c");
    let d = |s, n| pbuf::Duration {
        seconds: s,
        nanos: n,
    };
    assert_eq!(
        duration(&at, &d(1, 500_000_000)).unwrap(),
        std::time::Duration::from_millis(1500)
    );
    assert!(duration(&at, &d(-1, 0)).is_err());
    assert!(duration(&at, &d(0, -1)).is_err());
    assert!(duration(&at, &d(0, 1_000_000_000)).is_err());
    // Protobuf's (and Envoy's) largest duration converts; a second more is refused, not a
    // deadline that would overflow `Instant` arithmetic later.
    assert_eq!(
        duration(&at, &d(315_576_000_000, 999_999_999)).unwrap(),
        std::time::Duration::new(315_576_000_000, 999_999_999)
    );
    let e = duration(&at.f("interval"), &d(315_576_000_001, 0)).unwrap_err();
    assert_eq!(where_(&e), ("interval".into(), "invalid"), "{e}");
    assert!(duration(&at, &d(i64::MAX, 0)).is_err());
}
