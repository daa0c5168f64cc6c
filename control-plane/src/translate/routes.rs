//! HTTPRoutes and GRPCRoutes attached to a Service port → the ordered Envoy routes of its virtual
//! host, shared by waypoints (Envoy) and proxyless gRPC clients.
//!
//! A route applies to Service `S` port `P` when a `parentRef` names `S` (kind `Service`, same
//! namespace) with no port or port `P`, and the route lives in `S`'s namespace (a "producer"
//! route; consumer routes from other namespaces are skipped, as a waypoint serves every client).
//! Each match of each rule becomes one Envoy route (a rule without matches matches everything).
//! Order: [`matching::SortKey`] (Gateway API precedence), then route `namespace/name`, then rule
//! and match order. Last comes the default route: everything to `S:P` itself.

mod action;
mod matching;

use std::collections::BTreeSet;

use xds::pb::envoy::config::route::v3::{
    Route, RouteAction, route, route_action::ClusterSpecifier,
};

use super::clusters::{ClusterKey, key};
use super::destination_rule;
use super::mesh::{Mesh, RouteRule, RouteView, ServiceView};
use crate::manifest::gateway::{BackendRef, RouteFilter, RouteRetry, RouteTimeouts};
use action::no_timeout;
use matching::MatchSpec;

/// Who reads the routes: Envoy, or a proxyless gRPC client (fewer path matchers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Client {
    Envoy,
    Grpc,
}

/// The routes of one virtual host and the clusters they send to.
#[derive(Debug, Default)]
pub(super) struct RouteTable {
    pub routes: Vec<Route>,
    pub clusters: BTreeSet<ClusterKey>,
}

/// The parts of a rule the action needs, whatever the route kind.
#[derive(Debug, Clone, Copy)]
struct RuleParts<'a> {
    filters: &'a [RouteFilter],
    backends: &'a [BackendRef],
    timeouts: Option<&'a RouteTimeouts>,
    retry: Option<&'a RouteRetry>,
}

/// One match of one rule, to be ordered.
struct Candidate<'r, 'a> {
    route: &'r RouteView<'a>,
    rule: usize,
    index: usize,
    spec: MatchSpec,
    parts: RuleParts<'a>,
}

fn attached(route: &RouteView<'_>, svc: &ServiceView<'_>, port: u16) -> bool {
    route.parents.iter().any(|p| {
        let ns = p.namespace.as_deref().unwrap_or(&route.namespace);
        if !(p.is_service() && p.name == svc.name && ns == svc.namespace) {
            return false;
        }
        if route.namespace != svc.namespace {
            tracing::debug!(
                route = %format!("{}/{}", route.namespace, route.name),
                service = %svc.hostname,
                "consumer route (from another namespace) skipped"
            );
            return false;
        }
        p.port.is_none_or(|p| p == port)
    })
}

fn candidates<'r, 'a>(
    mesh: &'r Mesh<'a>,
    svc: &ServiceView<'_>,
    port: u16,
) -> Vec<Candidate<'r, 'a>> {
    let mut out = Vec::new();
    for route in mesh.routes.iter().filter(|r| attached(r, svc, port)) {
        for (rule, r) in route.rules.iter().enumerate() {
            let (specs, parts): (Vec<MatchSpec>, RuleParts<'a>) = match *r {
                RouteRule::Http(r) => (
                    r.matches.iter().map(MatchSpec::from_http).collect(),
                    RuleParts {
                        filters: &r.filters,
                        backends: &r.backend_refs,
                        timeouts: r.timeouts.as_ref(),
                        retry: r.retry.as_ref(),
                    },
                ),
                RouteRule::Grpc(r) => (
                    r.matches.iter().map(MatchSpec::from_grpc).collect(),
                    RuleParts {
                        filters: &r.filters,
                        backends: &r.backend_refs,
                        timeouts: r.timeouts.as_ref(),
                        retry: r.retry.as_ref(),
                    },
                ),
            };
            let specs = if specs.is_empty() {
                vec![MatchSpec::any()]
            } else {
                specs
            };
            for (index, spec) in specs.into_iter().enumerate() {
                out.push(Candidate {
                    route,
                    rule,
                    index,
                    spec,
                    parts,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (
            a.spec.sort_key(),
            &a.route.namespace,
            &a.route.name,
            a.rule,
            a.index,
        )
            .cmp(&(
                b.spec.sort_key(),
                &b.route.namespace,
                &b.route.name,
                b.rule,
                b.index,
            ))
    });
    out
}

/// The routes for `svc:port`, most specific first, ending with the default route.
pub(super) fn table(
    mesh: &Mesh<'_>,
    svc: &ServiceView<'_>,
    port: u16,
    client: Client,
) -> RouteTable {
    let mut table = RouteTable::default();
    for c in candidates(mesh, svc, port) {
        let route = action::route(mesh, &c, client, &mut table.clusters);
        table.routes.push(route);
    }
    if let Some(own) = key(mesh, svc, port) {
        table.clusters.insert(own);
        table.routes.push(Route {
            name: "default".into(),
            r#match: Some(MatchSpec::any().to_envoy(client)),
            action: Some(route::Action::Route(RouteAction {
                cluster_specifier: Some(ClusterSpecifier::Cluster(own.name(mesh))),
                timeout: Some(no_timeout()),
                hash_policy: destination_rule::for_service(mesh, svc)
                    .and_then(destination_rule::hash_policy)
                    .into_iter()
                    .collect(),
                ..RouteAction::default()
            })),
            ..Route::default()
        });
    }
    table
}

#[cfg(test)]
mod tests;
