//! AuthorizationPolicy and PeerAuthentication → L4 `Authorization` policies, the way istiod
//! translates them for node tunnels (spec §5.3). Pure; table-tested.
//!
//! * Scope: selector → WorkloadSelector (workloads list the key); none → Namespace; none in
//!   the root namespace → Global. `targetRef(s)` policies are waypoint-only and skipped.
//! * Each rule → one rule of clauses: `to` (one Match per entry), `from` (one Match per entry),
//!   one clause per `when` condition. Wildcards: `*` presence, `*x` suffix, `x*` prefix.
//! * HTTP-only attributes: an ALLOW rule containing them never matches (dropped); in a DENY
//!   rule they are left out (a broader deny). Matches left empty are omitted.
//! * PeerAuthentication STRICT → a DENY with `notPrincipals: [presence]`, minus the ports that
//!   `portLevelMtls` relaxes. Simplification: a more specific PERMISSIVE does not cancel a wider
//!   STRICT (istiod resolves that per workload).

use std::collections::BTreeMap;

use ztunnel::model::{
    Authorization, Match, PolicyAction, PolicyScope, ServiceAccountMatch, StringMatch,
};

use crate::manifest::security::{
    AuthorizationPolicy, AuthzAction, AuthzCondition, AuthzRule, MtlsMode, PeerAuthentication,
};
use crate::manifest::{ManifestObject, MetaExt, Object};

/// `istio.io/dry-run: "true"`: evaluate and log, never enforce.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// The mesh's root namespace: selector-less policies there apply mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// Policies plus, for selector-scoped ones, `(namespace, matchLabels, key)`.
#[derive(Debug, Default)]
pub struct Translated {
    pub policies: Vec<Authorization>,
    pub selectors: Vec<(String, BTreeMap<String, String>, String)>,
}

fn string_match(s: &str) -> StringMatch {
    if s == "*" {
        StringMatch::Presence()
    } else if let Some(rest) = s.strip_prefix('*') {
        StringMatch::Suffix(rest.to_owned())
    } else if let Some(rest) = s.strip_suffix('*') {
        StringMatch::Prefix(rest.to_owned())
    } else {
        StringMatch::Exact(s.to_owned())
    }
}

fn strings(v: &[String]) -> Vec<StringMatch> {
    v.iter().map(|s| string_match(s)).collect()
}

fn nets(v: &[String]) -> Vec<ipnet::IpNet> {
    v.iter()
        .filter_map(|s| {
            s.parse::<ipnet::IpNet>()
                .ok()
                .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
        })
        .collect()
}

fn ports(v: &[String]) -> Vec<u16> {
    v.iter().filter_map(|p| p.parse().ok()).collect()
}

fn service_accounts(v: &[String], policy_ns: &str) -> Vec<ServiceAccountMatch> {
    v.iter()
        .map(|s| match s.split_once('/') {
            Some((ns, sa)) => ServiceAccountMatch {
                namespace: ns.into(),
                service_account: sa.into(),
            },
            None => ServiceAccountMatch {
                namespace: policy_ns.into(),
                service_account: s.clone(),
            },
        })
        .collect()
}

fn is_empty(m: &Match) -> bool {
    *m == Match::default()
}

/// One `when` condition as a clause; `None` when its key is HTTP-only.
fn condition(c: &AuthzCondition) -> Option<Match> {
    let mut m = Match::default();
    match c.key.as_str() {
        "source.ip" => {
            m.source_ips = nets(&c.values);
            m.not_source_ips = nets(&c.not_values);
        }
        "source.namespace" => {
            m.namespaces = strings(&c.values);
            m.not_namespaces = strings(&c.not_values);
        }
        "source.principal" => {
            m.principals = strings(&c.values);
            m.not_principals = strings(&c.not_values);
        }
        "destination.ip" => {
            m.destination_ips = nets(&c.values);
            m.not_destination_ips = nets(&c.not_values);
        }
        "destination.port" => {
            m.destination_ports = ports(&c.values);
            m.not_destination_ports = ports(&c.not_values);
        }
        _ => return None,
    }
    Some(m)
}

/// One AuthorizationPolicy rule; `None` = the rule can never match at L4 (ALLOW with HTTP fields).
fn rule(r: &AuthzRule, policy_ns: &str, allow: bool) -> Option<Vec<Vec<Match>>> {
    let mut http_only = false;
    let mut clauses = Vec::new();
    let mut to = Vec::new();
    for t in &r.to {
        let op = &t.operation;
        http_only |= !(op.hosts.is_empty()
            && op.not_hosts.is_empty()
            && op.methods.is_empty()
            && op.not_methods.is_empty()
            && op.paths.is_empty()
            && op.not_paths.is_empty());
        to.push(Match {
            destination_ports: ports(&op.ports),
            not_destination_ports: ports(&op.not_ports),
            ..Match::default()
        });
    }
    let mut from = Vec::new();
    for f in &r.from {
        let s = &f.source;
        http_only |= !(s.request_principals.is_empty()
            && s.not_request_principals.is_empty()
            && s.remote_ip_blocks.is_empty()
            && s.not_remote_ip_blocks.is_empty());
        from.push(Match {
            principals: strings(&s.principals),
            not_principals: strings(&s.not_principals),
            namespaces: strings(&s.namespaces),
            not_namespaces: strings(&s.not_namespaces),
            source_ips: nets(&s.ip_blocks),
            not_source_ips: nets(&s.not_ip_blocks),
            service_accounts: service_accounts(&s.service_accounts, policy_ns),
            not_service_accounts: service_accounts(&s.not_service_accounts, policy_ns),
            ..Match::default()
        });
    }
    for set in [to, from] {
        let kept: Vec<Match> = set.into_iter().filter(|m| !is_empty(m)).collect();
        if !kept.is_empty() {
            clauses.push(kept);
        }
    }
    for c in &r.when {
        match condition(c) {
            Some(m) if !is_empty(&m) => clauses.push(vec![m]),
            Some(_) => {}
            None => http_only = true,
        }
    }
    if http_only && allow {
        return None;
    }
    Some(clauses)
}

fn scope(ns: &str, has_selector: bool, root: &str) -> PolicyScope {
    match (has_selector, ns == root) {
        (true, _) => PolicyScope::WorkloadSelector,
        (false, true) => PolicyScope::Global,
        (false, false) => PolicyScope::Namespace,
    }
}

fn authorization_policy(p: &AuthorizationPolicy, root: &str, out: &mut Translated) {
    let spec = &p.spec;
    if spec.has_target_refs() {
        return;
    }
    let action = match spec.action {
        AuthzAction::Allow => PolicyAction::Allow,
        AuthzAction::Deny => PolicyAction::Deny,
        AuthzAction::Audit | AuthzAction::Custom => return,
    };
    let ns = p
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let allow = action == PolicyAction::Allow;
    let rules = spec
        .rules
        .iter()
        .filter_map(|r| rule(r, &ns, allow))
        .collect();
    push(
        out,
        root,
        &ns,
        p.metadata.name(),
        action,
        rules,
        spec.selector.as_ref().map(|s| &s.match_labels),
    );
    if let Some(last) = out.policies.last_mut() {
        last.dry_run = p
            .metadata
            .annotations()
            .get(DRY_RUN_ANNOTATION)
            .is_some_and(|v| v == "true");
    }
}

fn push(
    out: &mut Translated,
    root: &str,
    ns: &str,
    name: &str,
    action: PolicyAction,
    rules: Vec<Vec<Vec<Match>>>,
    selector: Option<&BTreeMap<String, String>>,
) {
    let policy = Authorization {
        name: name.to_owned(),
        namespace: ns.to_owned(),
        scope: scope(ns, selector.is_some(), root),
        action,
        dry_run: false,
        rules,
    };
    if let Some(sel) = selector {
        out.selectors
            .push((ns.to_owned(), sel.clone(), policy.key()));
    }
    out.policies.push(policy);
}

fn peer_authentication(p: &PeerAuthentication, root: &str, out: &mut Translated) {
    let spec = &p.spec;
    if spec.mtls.as_ref().map(|m| m.mode) != Some(MtlsMode::Strict) {
        return;
    }
    let ns = p
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let relaxed: Vec<u16> = spec
        .port_level_mtls
        .iter()
        .filter(|(_, m)| matches!(m.mode, MtlsMode::Permissive | MtlsMode::Disable))
        .map(|(port, _)| port.0)
        .collect();
    let m = Match {
        not_principals: vec![StringMatch::Presence()],
        not_destination_ports: relaxed,
        ..Match::default()
    };
    let selector = spec.selector.as_ref().map(|s| &s.match_labels);
    let name = if selector.is_none() && ns == root {
        "istio_converted_static_strict".to_owned()
    } else {
        format!("converted_peer_authentication_{}", p.metadata.name())
    };
    push(
        out,
        root,
        &ns,
        &name,
        PolicyAction::Deny,
        vec![vec![vec![m]]],
        selector,
    );
}

/// Translates every security object in `objects`, with [`ROOT_NAMESPACE`] as the root namespace.
pub fn translate(objects: &[ManifestObject]) -> Translated {
    translate_with_root(objects, ROOT_NAMESPACE)
}

/// Translates every security object in `objects`; selector-less policies in `root_namespace` are
/// mesh-wide.
pub fn translate_with_root(objects: &[ManifestObject], root_namespace: &str) -> Translated {
    let mut out = Translated::default();
    for o in objects {
        match &o.object {
            Object::AuthorizationPolicy(p) => authorization_policy(p, root_namespace, &mut out),
            Object::PeerAuthentication(p) => peer_authentication(p, root_namespace, &mut out),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
