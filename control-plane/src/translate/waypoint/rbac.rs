//! L7 AuthorizationPolicies of a waypoint → RBAC HTTP filters and per-virtual-host overrides.
//!
//! Policies with `targetRefs` apply to a waypoint when they name its Gateway (all its Services)
//! or a Service that uses it (that Service only), in the policy's namespace. Two filters, DENY
//! first then ALLOW (named [`DENY_FILTER`], [`ALLOW_FILTER`]), each present on a listener when a
//! policy of its action applies to a Service on that port. The listener-level config holds the
//! Gateway-level policies; a Service with its own policies gets an `RBACPerRoute` on its virtual
//! host holding Gateway-level plus its own. Enforced policies go in `rules` (absent = the filter
//! lets everything through), dry-run ones (`istio.io/dry-run: "true"`) in `shadow_rules`. An ALLOW
//! policy without rules still counts: with no matching rule, everything is denied.

use std::collections::BTreeMap;

use xds::pb::envoy::config::rbac::v3::{Rbac as RbacRules, rbac::Action};
use xds::pb::envoy::extensions::filters::http::rbac::v3::{Rbac, RbacPerRoute};
use xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use xds::pb::google::protobuf::Any;

use super::rbac_rules;
use crate::authz::DRY_RUN_ANNOTATION;
use crate::manifest::MetaExt;
use crate::manifest::security::{AuthorizationPolicy, AuthzAction};
use crate::translate::canonical::{self, any_of};
use crate::translate::mesh::{Mesh, ServiceView, WaypointRef};

pub(super) const DENY_FILTER: &str = "istio.rbac.deny";
pub(super) const ALLOW_FILTER: &str = "istio.rbac.allow";

/// The L7 policies that apply to one waypoint.
#[derive(Debug, Default)]
pub(super) struct Policies<'a> {
    trust_domain: String,
    gateway: Vec<&'a AuthorizationPolicy>,
    /// `(namespace, service name)` → its policies.
    services: BTreeMap<(String, String), Vec<&'a AuthorizationPolicy>>,
}

fn namespace(p: &AuthorizationPolicy) -> &str {
    p.metadata.namespace.as_deref().unwrap_or("default")
}

fn dry_run(p: &AuthorizationPolicy) -> bool {
    p.metadata
        .annotations()
        .get(DRY_RUN_ANNOTATION)
        .is_some_and(|v| v == "true")
}

impl<'a> Policies<'a> {
    pub(super) fn for_waypoint(mesh: &Mesh<'a>, wp: &WaypointRef) -> Self {
        let mut out = Policies {
            trust_domain: mesh.options.trust_domain.clone(),
            ..Policies::default()
        };
        for p in &mesh.waypoint_policies {
            let ns = namespace(p);
            for r in p.spec.all_target_refs() {
                match r.kind.as_str() {
                    "Gateway" if ns == wp.namespace && r.name == wp.name => out.gateway.push(p),
                    "Service" => out
                        .services
                        .entry((ns.to_owned(), r.name.clone()))
                        .or_default()
                        .push(p),
                    _ => {}
                }
            }
        }
        out
    }

    fn of_service(&self, svc: &ServiceView<'_>) -> &[&'a AuthorizationPolicy] {
        self.services
            .get(&(svc.namespace.clone(), svc.name.clone()))
            .map_or(&[], Vec::as_slice)
    }
}

fn has(list: &[&AuthorizationPolicy], action: AuthzAction) -> bool {
    list.iter().any(|p| p.spec.action == action)
}

/// The RBAC filter config for `action` over `list`.
fn config(list: &[&AuthorizationPolicy], action: AuthzAction, trust_domain: &str) -> Rbac {
    let (envoy_action, label) = match action {
        AuthzAction::Deny => (Action::Deny, "deny"),
        _ => (Action::Allow, "allow"),
    };
    let rules = |shadow: bool| {
        let chosen: Vec<&&AuthorizationPolicy> = list
            .iter()
            .filter(|p| p.spec.action == action && dry_run(p) == shadow)
            .collect();
        (!chosen.is_empty()).then(|| RbacRules {
            action: envoy_action as i32,
            policies: chosen
                .iter()
                .flat_map(|p| rbac_rules::policies(p, trust_domain))
                .collect(),
            ..RbacRules::default()
        })
    };
    Rbac {
        rules: rules(false),
        shadow_rules: rules(true),
        shadow_rules_stat_prefix: format!("istio_dry_run_{label}_"),
        ..Rbac::default()
    }
}

const ACTIONS: [(AuthzAction, &str); 2] = [
    (AuthzAction::Deny, DENY_FILTER),
    (AuthzAction::Allow, ALLOW_FILTER),
];

/// The RBAC filters of a listener whose port serves `services` (DENY before ALLOW).
pub(super) fn http_filters(p: &Policies<'_>, services: &[&ServiceView<'_>]) -> Vec<HttpFilter> {
    ACTIONS
        .iter()
        .filter(|(action, _)| {
            has(&p.gateway, *action) || services.iter().any(|s| has(p.of_service(s), *action))
        })
        .map(|(action, name)| HttpFilter {
            name: (*name).to_owned(),
            config_type: Some(http_filter::ConfigType::TypedConfig(any_of::<Rbac>(
                canonical::rbac(&config(&p.gateway, *action, &p.trust_domain)),
            ))),
            ..HttpFilter::default()
        })
        .collect()
}

/// `typed_per_filter_config` of `svc`'s virtual host: an override per action it has policies for.
pub(super) fn per_service(p: &Policies<'_>, svc: &ServiceView<'_>) -> Vec<(String, Any)> {
    let own = p.of_service(svc);
    ACTIONS
        .iter()
        .filter(|(action, _)| has(own, *action))
        .map(|(action, name)| {
            let all: Vec<&AuthorizationPolicy> = p.gateway.iter().chain(own).copied().collect();
            let per_route = RbacPerRoute {
                rbac: Some(config(&all, *action, &p.trust_domain)),
            };
            (
                (*name).to_owned(),
                any_of::<RbacPerRoute>(canonical::rbac_per_route(&per_route)),
            )
        })
        .collect()
}
