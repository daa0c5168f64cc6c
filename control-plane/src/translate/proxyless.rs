//! The proxyless gRPC snapshot: for every TCP port of every Service, API listeners named like the
//! `xds:///` targets a client dials — `<hostname>:<port>`, `<name>.<ns>.svc:<port>`,
//! `<name>.<ns>:<port>` — each an `HttpConnectionManager` with RDS (route config of the same name,
//! over ADS) and the router filter; one RouteConfiguration per listener with a single virtual host
//! `*` (routes from HTTPRoutes/GRPCRoutes, then the Service itself); and the EDS clusters and
//! endpoints of every Service port and every route backend.
//!
//! Envoy rejects API listeners over LDS: only gRPC clients may get this snapshot's listeners.

use std::collections::BTreeSet;

use xds::pb::envoy::config::listener::v3::{ApiListener, Listener};
use xds::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use xds::{Snapshot, type_url};

use super::clusters::{self, key};
use super::envoy::{any, http_connection_manager, router_filter};
use super::mesh::{Mesh, ServiceView, tcp_ports};
use super::routes::{self, Client};
use crate::manifest::PortExt;

/// The listener (and route config) names of `svc:port`, full hostname first.
pub(super) fn names(svc: &ServiceView<'_>, port: u16) -> [String; 3] {
    [
        format!("{}:{port}", svc.hostname),
        format!("{}.{}.svc:{port}", svc.name, svc.namespace),
        format!("{}.{}:{port}", svc.name, svc.namespace),
    ]
}

pub(super) fn snapshot(mesh: &Mesh<'_>) -> Snapshot {
    let mut snap = Snapshot::new();
    snap.declare(type_url::LISTENER);
    snap.declare(type_url::ROUTE);
    let mut cluster_keys = BTreeSet::new();
    for svc in &mesh.services {
        for port in tcp_ports(svc).map(PortExt::number) {
            cluster_keys.extend(key(mesh, svc, port));
            let table = routes::table(mesh, svc, port, Client::Grpc);
            cluster_keys.extend(table.clusters.iter().copied());
            for name in names(svc, port) {
                let hcm = http_connection_manager(&name, &name, vec![router_filter()]);
                let listener = Listener {
                    name: name.clone(),
                    api_listener: Some(ApiListener {
                        api_listener: Some(any(&hcm)),
                    }),
                    ..Listener::default()
                };
                snap.add(type_url::LISTENER, name.clone(), &listener);
                let routes = RouteConfiguration {
                    name: name.clone(),
                    virtual_hosts: vec![VirtualHost {
                        name: format!("{}:{port}", svc.hostname),
                        domains: vec!["*".into()],
                        routes: table.routes.clone(),
                        ..VirtualHost::default()
                    }],
                    ..RouteConfiguration::default()
                };
                snap.add(type_url::ROUTE, name, &routes);
            }
        }
    }
    clusters::add(mesh, &cluster_keys, &mut snap);
    snap
}

#[cfg(test)]
mod tests;
