//! One waypoint Gateway → its Envoy snapshot: for the Services that use it (spec §12), a socket
//! listener per distinct TCP service port, a RouteConfiguration per port with a virtual host per
//! Service, and the EDS clusters (plus endpoints) the routes reach.
//!
//! * Listener name `0.0.0.0_<port>` (a stable key, whatever it binds); it binds the Gateway's
//!   first `IPAddress` address, else `0.0.0.0`. Its one filter chain is an HTTP connection
//!   manager with RDS route config `"<port>"`, RBAC filters for L7 AuthorizationPolicies
//!   (`waypoint/rbac.rs`), the local rate limit and fault filters when a route or virtual host
//!   of the port uses them (`translate/extensions.rs`), and the router last.
//! * Virtual host `<hostname>:<port>`, domains (lower-case): hostname, `<name>.<ns>.svc`,
//!   `<name>.<ns>`, `<name>` and the VIP, each bare and with `:<port>`. A domain already taken by
//!   an earlier Service (in `namespace/name` order) is left out, as Envoy rejects duplicates.
//!   Its `typed_per_filter_config`: the Service's own RBAC policies and its LocalRateLimit.

mod listener;
mod rbac;
mod rbac_rules;

use std::collections::{BTreeSet, HashMap};

use xds::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use xds::{Snapshot, type_url};

use super::canonical;
use super::clusters;
use super::extensions;
use super::mesh::{Mesh, ServiceView, WaypointRef, WaypointView, tcp_ports};
use super::routes::{self, Client};
use crate::manifest::PortExt;

/// The address a waypoint's listeners bind: the Gateway's first IP address, else `0.0.0.0`.
fn bind_address(gw: &WaypointView<'_>) -> String {
    gw.gateway
        .spec
        .addresses
        .iter()
        .find(|a| matches!(a.kind.as_deref(), None | Some("IPAddress")))
        .map_or_else(|| "0.0.0.0".to_owned(), |a| a.value.clone())
}

/// The Host/`:authority` values that reach `svc` on `port`.
pub(super) fn domains(svc: &ServiceView<'_>, port: u16) -> Vec<String> {
    let mut names = vec![
        svc.hostname.clone(),
        format!("{}.{}.svc", svc.name, svc.namespace),
        format!("{}.{}", svc.name, svc.namespace),
        svc.name.clone(),
    ];
    if let Some(vip) = svc.vip {
        names.push(vip.to_string());
    }
    names
        .into_iter()
        .flat_map(|n| {
            let n = n.to_ascii_lowercase();
            [format!("{n}:{port}"), n]
        })
        .collect()
}

fn virtual_host(
    mesh: &Mesh<'_>,
    policies: &rbac::Policies<'_>,
    svc: &ServiceView<'_>,
    port: u16,
    domains: Vec<String>,
    routes: Vec<Route>,
) -> VirtualHost {
    VirtualHost {
        name: format!("{}:{port}", svc.hostname),
        domains,
        routes,
        typed_per_filter_config: rbac::per_service(policies, svc)
            .into_iter()
            .chain(extensions::for_service(mesh, svc))
            .collect::<HashMap<_, _>>(),
        ..VirtualHost::default()
    }
}

pub(super) fn snapshot(mesh: &Mesh<'_>, gw: &WaypointView<'_>) -> Snapshot {
    let me = WaypointRef {
        namespace: gw.namespace.clone(),
        name: gw.name.clone(),
    };
    let services: Vec<&ServiceView<'_>> = mesh
        .services
        .iter()
        .filter(|s| s.waypoint.as_ref() == Some(&me))
        .collect();
    let ports: BTreeSet<u16> = services
        .iter()
        .flat_map(|s| tcp_ports(s).map(PortExt::number))
        .collect();
    let policies = rbac::Policies::for_waypoint(mesh, &me);
    let bind = bind_address(gw);
    let mut snap = Snapshot::new();
    snap.declare(type_url::LISTENER);
    snap.declare(type_url::ROUTE);
    let mut cluster_keys = BTreeSet::new();
    for port in ports {
        let on_port: Vec<&ServiceView<'_>> = services
            .iter()
            .copied()
            .filter(|s| tcp_ports(s).any(|p| p.number() == port))
            .collect();
        let mut taken = BTreeSet::new();
        let virtual_hosts: Vec<VirtualHost> = on_port
            .iter()
            .map(|svc| {
                let table = routes::table(mesh, svc, port, Client::Envoy);
                cluster_keys.extend(table.clusters);
                let domains = domains(svc, port)
                    .into_iter()
                    .filter(|d| taken.insert(d.clone()))
                    .collect();
                virtual_host(mesh, &policies, svc, port, domains, table.routes)
            })
            .collect();
        let mut filters = rbac::http_filters(&policies, &on_port);
        filters.extend(extensions::http_filters(&extensions::used(&virtual_hosts)));
        let l = listener::listener(&bind, port, filters);
        snap.add(type_url::LISTENER, l.name.clone(), &l);
        let name = port.to_string();
        let rc = RouteConfiguration {
            name: name.clone(),
            virtual_hosts,
            ..RouteConfiguration::default()
        };
        snap.add(type_url::ROUTE, name, &canonical::route_configuration(&rc));
    }
    clusters::add(mesh, &cluster_keys, &mut snap);
    snap
}

#[cfg(test)]
mod envoy_check;
#[cfg(test)]
mod tests;
