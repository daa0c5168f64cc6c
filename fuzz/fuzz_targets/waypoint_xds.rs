//! Envoy xDS resources → the waypoint's typed configuration (`waypoint::model::from_proto`).
//! The first byte picks the resource type (Listener, RouteConfiguration, Cluster,
//! ClusterLoadAssignment), the rest is decoded as that proto. Whatever decodes must convert or
//! fail with an error that renders; what converts is then run through the pure decisions on a
//! fixed request: route selection, rewrites, redirects, hashing and per-filter overrides (RBAC,
//! faults, rate limits) for route tables, the HTTP filters for listeners, every load-balancing
//! policy for endpoints.
#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use waypoint::model::lb::Balancer;
use waypoint::model::{
    AbortStatus, ConnectionView, Fault, FilterOverride, HttpFilter, LbPolicy, ListenerKind,
    RequestView, RouteAction, Share, action, from_proto, rate_limit, rbac, select,
};
use xds::pb::envoy::config::cluster::v3::Cluster;
use xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds::pb::envoy::config::listener::v3::Listener;
use xds::pb::envoy::config::route::v3::RouteConfiguration;

struct Fixed {
    method: Method,
    headers: HeaderMap,
    identity: Option<hbone::Identity>,
}

impl Fixed {
    fn new() -> Fixed {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.insert("x-user", HeaderValue::from_static("alice"));
        headers.append("x-user", HeaderValue::from_static("bob"));
        headers.insert(
            "cookie",
            HeaderValue::from_static("session=\"abc\"; other=1"),
        );
        Fixed {
            method: Method::GET,
            headers,
            identity: hbone::Identity::new("cluster.local", "default", "sleep").ok(),
        }
    }

    fn request(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            path_and_query: "/api/v1/users?id=7&flag",
            authority: "reviews.default.svc.cluster.local:8080",
            headers: &self.headers,
        }
    }

    fn connection(&self) -> ConnectionView<'_> {
        ConnectionView {
            peer_identity: self.identity.as_ref(),
            remote_ip: IpAddr::from([10, 0, 0, 1]),
            destination: SocketAddr::from(([10, 96, 0, 10], 8080)),
        }
    }
}

/// What every converted fault satisfies.
fn check_fault(fault: &Fault) {
    let valid = |s: Share| s.per_million <= Share::ALL.per_million;
    if let Some(d) = &fault.delay {
        assert!(!d.fixed.is_zero() && valid(d.share));
    }
    if let Some(a) = &fault.abort {
        assert!(valid(a.share));
        if let AbortStatus::Http(s) = a.status {
            assert!((200..600).contains(&s.as_u16()));
        }
    }
}

/// A limit's status is an error status; its decision runs.
fn check_limit(limit: &rate_limit::RateLimit) {
    assert!(limit.status.as_u16() >= 400);
    let _ = rate_limit::decide(limit, Instant::now(), 0, 0);
}

fn check_override(o: &FilterOverride, req: &RequestView<'_>, conn: &ConnectionView<'_>) {
    match o {
        FilterOverride::Rbac(filter) => {
            let _ = rbac::evaluate(filter, req, conn);
        }
        FilterOverride::Fault(fault) => check_fault(fault),
        FilterOverride::RateLimit(limit) => check_limit(limit),
        FilterOverride::Disabled => {}
    }
}

fn route_table(rc: &RouteConfiguration, f: &Fixed) {
    let table = match from_proto::route_table(rc) {
        Ok(t) => t,
        Err(e) => return drop(e.to_string()),
    };
    let (req, conn) = (f.request(), f.connection());
    for dest in [Some(conn.destination), None] {
        let Some(vh) = select::virtual_host(&table, dest, req.authority) else {
            continue;
        };
        assert!(table.virtual_hosts.iter().any(|v| std::ptr::eq(v, vh)));
        for o in vh.overrides.values() {
            check_override(o, &req, &conn);
        }
        let Some(route) = select::route(vh, &req) else {
            continue;
        };
        assert!(route.matcher.matches(&req));
        for o in route.overrides.values() {
            check_override(o, &req, &conn);
        }
        let mut headers = f.headers.clone();
        action::apply_headers(&route.request_headers, &mut headers);
        action::apply_headers(&vh.request_headers, &mut headers);
        match &route.action {
            RouteAction::Forward(fwd) => {
                let total = select::total_weight(&fwd.clusters);
                assert!(total > 0);
                for roll in [0, total / 2, total - 1] {
                    assert!(select::weighted_cluster(&fwd.clusters, roll).is_some());
                }
                assert!(select::weighted_cluster(&fwd.clusters, total).is_none());
                let _ = action::rewrite_path(fwd, &route.matcher, req.path_and_query);
                let _ = action::hash_key(&fwd.hash_policy, &req, &conn);
                if let Some(retry) = &fwd.retry {
                    let _ = action::retriable(retry, &action::AttemptOutcome::Status(503));
                    let d = action::backoff(retry, 3, 0.5);
                    assert!(d <= retry.backoff_max);
                }
            }
            RouteAction::Redirect(r) => {
                let _ = action::redirect_location(
                    r,
                    &route.matcher,
                    select::SCHEME,
                    req.authority,
                    req.path_and_query,
                );
            }
            RouteAction::Direct { .. } => {}
        }
    }
}

fn listener(l: &Listener, f: &Fixed) {
    match from_proto::listener(l) {
        Ok(l) => {
            if let ListenerKind::Http { filters, .. } = &l.kind {
                for filter in filters {
                    match filter {
                        HttpFilter::Rbac { rbac: filter, .. } => {
                            let d = rbac::evaluate(filter, &f.request(), &f.connection());
                            if filter.rules.is_none() {
                                assert!(d.allowed);
                            }
                        }
                        HttpFilter::Fault {
                            fault: Some(fault), ..
                        } => check_fault(fault),
                        HttpFilter::Fault { fault: None, .. } => {}
                        HttpFilter::LocalRateLimit { limit, .. } => check_limit(limit),
                    }
                }
            }
        }
        Err(e) => drop(e.to_string()),
    }
}

fn endpoints(cla: &ClusterLoadAssignment) {
    let eps = match from_proto::endpoints(cla) {
        Ok(e) => e,
        Err(e) => return drop(e.to_string()),
    };
    // Small tables and rings keep iterations fast; the policies' code paths are the same.
    let policies = [
        LbPolicy::RoundRobin,
        LbPolicy::Random,
        LbPolicy::LeastRequest { choice_count: 2 },
        LbPolicy::RingHash {
            minimum_ring_size: 64,
        },
        LbPolicy::Maglev { table_size: 251 },
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for policy in policies {
        let b = Balancer::new(policy, &eps);
        for hash in [None, Some(0), Some(u64::MAX), Some(0x1234_5678)] {
            let active = |i: usize| i as u32;
            let exclude = |i: usize| i % 2 == 0;
            let pick = b.pick(hash, &active, &exclude, &mut rand);
            assert_eq!(pick.is_some(), !eps.is_empty(), "{policy:?}");
            if let Some(i) = pick {
                assert!(i < eps.len());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let f = Fixed::new();
    match kind % 4 {
        0 => {
            if let Ok(l) = Listener::decode(rest) {
                listener(&l, &f);
            }
        }
        1 => {
            if let Ok(rc) = RouteConfiguration::decode(rest) {
                route_table(&rc, &f);
            }
        }
        2 => {
            if let Ok(c) = Cluster::decode(rest) {
                match from_proto::cluster(&c) {
                    Ok(c) => assert!(c.connect_timeout > std::time::Duration::ZERO),
                    Err(e) => drop(e.to_string()),
                }
            }
        }
        _ => {
            if let Ok(cla) = ClusterLoadAssignment::decode(rest) {
                endpoints(&cla);
            }
        }
    }
});
