//! One L7 AuthorizationPolicy → Envoy RBAC policies, one per rule (named
//! `ns[<ns>]-policy[<name>]-rule[<i>]`, as Istio names them).
//!
//! A rule's permission is the AND of its `to` (OR of operations; each the AND of hosts → `:authority`,
//! methods → `:method`, paths → `url_path`, ports → destination port, and their `not…`
//! negations) and its `when` conditions on the request side (`request.headers[…]`,
//! `destination.ip`, `destination.port`); its principal is the AND of its `from` (OR of sources;
//! each the AND of principals → `spiffe://<p>`, namespaces → principal regex
//! `.*/ns/<ns>/.*`, serviceAccounts, ipBlocks → direct remote IP, remoteIpBlocks → remote IP)
//! and its `when` conditions on the peer (`source.*`, `remote.ip`). Wildcards: `*` any
//! non-empty value, `x*` prefix, `*x` suffix.
//!
//! Not supported (no JWT authentication here): requestPrincipals and `request.auth.*` and any other
//! `when` key. As in §5.3, an ALLOW rule using them never matches (it is dropped) and in a DENY
//! rule they are left out (a broader deny).

use xds::pb::envoy::config::core::v3::CidrRange;
use xds::pb::envoy::config::rbac::v3::{Permission, Policy, Principal, permission, principal};
use xds::pb::envoy::config::route::v3::{HeaderMatcher, header_matcher::HeaderMatchSpecifier};
use xds::pb::envoy::r#type::matcher::v3::{
    PathMatcher, StringMatcher, path_matcher, string_matcher::MatchPattern,
};

use crate::manifest::MetaExt;
use crate::manifest::security::{AuthorizationPolicy, AuthzAction, AuthzOperation, AuthzSource};
use crate::translate::envoy::{matcher, regex};

/// The translated rules of `p`, named; the trust domain completes `serviceAccounts`.
pub(super) fn policies(p: &AuthorizationPolicy, trust_domain: &str) -> Vec<(String, Policy)> {
    let ns = p.metadata.namespace.as_deref().unwrap_or("default");
    let allow = p.spec.action == AuthzAction::Allow;
    let mut out = Vec::new();
    for (i, rule) in p.spec.rules.iter().enumerate() {
        let mut b = Builder {
            ns,
            trust_domain,
            unsupported: false,
        };
        let mut permissions = vec![perm_or(rule.to.iter().map(|t| b.operation(&t.operation)))];
        let mut principals = vec![princ_or(rule.from.iter().map(|f| b.source(&f.source)))];
        for c in &rule.when {
            b.condition(
                &c.key,
                &c.values,
                &c.not_values,
                &mut permissions,
                &mut principals,
            );
        }
        if b.unsupported && allow {
            continue;
        }
        out.push((
            format!("ns[{ns}]-policy[{}]-rule[{i}]", p.metadata.name()),
            Policy {
                permissions: vec![perm_and(permissions)],
                principals: vec![princ_and(principals)],
                ..Policy::default()
            },
        ));
    }
    out
}

struct Builder<'a> {
    ns: &'a str,
    trust_domain: &'a str,
    unsupported: bool,
}

fn perm(rule: permission::Rule) -> Permission {
    Permission { rule: Some(rule) }
}

fn princ(id: principal::Identifier) -> Principal {
    Principal {
        identifier: Some(id),
    }
}

/// OR of `items`; no items = any.
fn perm_or(items: impl Iterator<Item = Permission>) -> Permission {
    let mut rules: Vec<Permission> = items.collect();
    match rules.len() {
        0 => perm(permission::Rule::Any(true)),
        1 => rules.remove(0),
        _ => perm(permission::Rule::OrRules(permission::Set { rules })),
    }
}

/// AND of `rules`, leaving out "any"; nothing left = any.
fn perm_and(rules: Vec<Permission>) -> Permission {
    let mut rules: Vec<Permission> = rules
        .into_iter()
        .filter(|p| p.rule != Some(permission::Rule::Any(true)))
        .collect();
    match rules.len() {
        0 => perm(permission::Rule::Any(true)),
        1 => rules.remove(0),
        _ => perm(permission::Rule::AndRules(permission::Set { rules })),
    }
}

fn perm_not(p: Permission) -> Permission {
    perm(permission::Rule::NotRule(Box::new(p)))
}

fn princ_or(items: impl Iterator<Item = Principal>) -> Principal {
    let mut ids: Vec<Principal> = items.collect();
    match ids.len() {
        0 => princ(principal::Identifier::Any(true)),
        1 => ids.remove(0),
        _ => princ(principal::Identifier::OrIds(principal::Set { ids })),
    }
}

fn princ_and(ids: Vec<Principal>) -> Principal {
    let mut ids: Vec<Principal> = ids
        .into_iter()
        .filter(|p| p.identifier != Some(principal::Identifier::Any(true)))
        .collect();
    match ids.len() {
        0 => princ(principal::Identifier::Any(true)),
        1 => ids.remove(0),
        _ => princ(principal::Identifier::AndIds(principal::Set { ids })),
    }
}

fn princ_not(p: Principal) -> Principal {
    princ(principal::Identifier::NotId(Box::new(p)))
}

/// Istio's wildcard strings: `*` any non-empty value, `x*` prefix, `*x` suffix, else exact.
fn wildcard(s: &str, prefix_with: &str) -> StringMatcher {
    if s == "*" {
        regex(".+")
    } else if let Some(rest) = s.strip_prefix('*') {
        matcher(MatchPattern::Suffix(rest.to_owned()))
    } else if let Some(rest) = s.strip_suffix('*') {
        matcher(MatchPattern::Prefix(format!("{prefix_with}{rest}")))
    } else {
        matcher(MatchPattern::Exact(format!("{prefix_with}{s}")))
    }
}

fn header(name: &str, m: StringMatcher) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_owned(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(m)),
        ..HeaderMatcher::default()
    }
}

fn cidr(s: &str) -> Option<CidrRange> {
    let net = s
        .parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))?;
    Some(CidrRange {
        address_prefix: net.addr().to_string(),
        prefix_len: Some(crate::translate::envoy::u32v(u32::from(net.prefix_len()))),
    })
}

fn authenticated(m: StringMatcher) -> Principal {
    princ(principal::Identifier::Authenticated(
        principal::Authenticated {
            principal_name: Some(m),
        },
    ))
}

/// Positive list OR-ed, negative list OR-ed and negated; both AND-ed (any when both empty).
fn perm_lists<F: Fn(&str) -> Option<Permission>>(
    pos: &[String],
    neg: &[String],
    f: F,
) -> Vec<Permission> {
    let mut out = Vec::new();
    if !pos.is_empty() {
        out.push(perm_or(pos.iter().filter_map(|s| f(s))));
    }
    if !neg.is_empty() {
        out.push(perm_not(perm_or(neg.iter().filter_map(|s| f(s)))));
    }
    out
}

fn princ_lists<F: Fn(&str) -> Option<Principal>>(
    pos: &[String],
    neg: &[String],
    f: F,
) -> Vec<Principal> {
    let mut out = Vec::new();
    if !pos.is_empty() {
        out.push(princ_or(pos.iter().filter_map(|s| f(s))));
    }
    if !neg.is_empty() {
        out.push(princ_not(princ_or(neg.iter().filter_map(|s| f(s)))));
    }
    out
}

fn url_path(s: &str) -> Permission {
    perm(permission::Rule::UrlPath(PathMatcher {
        rule: Some(path_matcher::Rule::Path(wildcard(s, ""))),
    }))
}

fn port(s: &str) -> Option<Permission> {
    s.parse()
        .ok()
        .map(|p| perm(permission::Rule::DestinationPort(p)))
}

impl Builder<'_> {
    fn namespace(&self, ns: &str) -> Principal {
        let re = if ns == "*" {
            ".*/ns/[^/]+/.*".to_owned()
        } else if let Some(rest) = ns.strip_prefix('*') {
            format!(".*/ns/[^/]*{}/.*", regex::escape(rest))
        } else if let Some(rest) = ns.strip_suffix('*') {
            format!(".*/ns/{}[^/]*/.*", regex::escape(rest))
        } else {
            format!(".*/ns/{}/.*", regex::escape(ns))
        };
        authenticated(crate::translate::envoy::regex(&re))
    }

    fn service_account(&self, s: &str) -> Principal {
        let (ns, sa) = s.split_once('/').unwrap_or((self.ns, s));
        authenticated(matcher(MatchPattern::Exact(format!(
            "spiffe://{}/ns/{ns}/sa/{sa}",
            self.trust_domain
        ))))
    }

    fn operation(&mut self, op: &AuthzOperation) -> Permission {
        let host = |h: &str| {
            let mut m = wildcard(h, "");
            m.ignore_case = true;
            Some(perm(permission::Rule::Header(header(":authority", m))))
        };
        let method = |m: &str| {
            Some(perm(permission::Rule::Header(header(
                ":method",
                wildcard(m, ""),
            ))))
        };
        let mut all = perm_lists(&op.hosts, &op.not_hosts, host);
        all.extend(perm_lists(&op.methods, &op.not_methods, method));
        all.extend(perm_lists(&op.paths, &op.not_paths, |p| Some(url_path(p))));
        all.extend(perm_lists(&op.ports, &op.not_ports, port));
        perm_and(all)
    }

    fn source(&mut self, s: &AuthzSource) -> Principal {
        if !(s.request_principals.is_empty() && s.not_request_principals.is_empty()) {
            self.unsupported = true;
        }
        let principal = |p: &str| Some(authenticated(wildcard(p, "spiffe://")));
        let mut all = princ_lists(&s.principals, &s.not_principals, principal);
        all.extend(princ_lists(&s.namespaces, &s.not_namespaces, |n| {
            Some(self.namespace(n))
        }));
        all.extend(princ_lists(
            &s.service_accounts,
            &s.not_service_accounts,
            |a| Some(self.service_account(a)),
        ));
        let direct = |c: &str| cidr(c).map(|c| princ(principal::Identifier::DirectRemoteIp(c)));
        let remote = |c: &str| cidr(c).map(|c| princ(principal::Identifier::RemoteIp(c)));
        all.extend(princ_lists(&s.ip_blocks, &s.not_ip_blocks, direct));
        all.extend(princ_lists(
            &s.remote_ip_blocks,
            &s.not_remote_ip_blocks,
            remote,
        ));
        princ_and(all)
    }

    fn condition(
        &mut self,
        key: &str,
        values: &[String],
        not_values: &[String],
        permissions: &mut Vec<Permission>,
        principals: &mut Vec<Principal>,
    ) {
        if let Some(name) = key
            .strip_prefix("request.headers[")
            .and_then(|k| k.strip_suffix(']'))
        {
            let name = name.to_ascii_lowercase();
            permissions.extend(perm_lists(values, not_values, |v| {
                Some(perm(permission::Rule::Header(header(
                    &name,
                    wildcard(v, ""),
                ))))
            }));
            return;
        }
        match key {
            "destination.port" => permissions.extend(perm_lists(values, not_values, port)),
            "destination.ip" => permissions.extend(perm_lists(values, not_values, |c| {
                cidr(c).map(|c| perm(permission::Rule::DestinationIp(c)))
            })),
            "source.ip" => principals.extend(princ_lists(values, not_values, |c| {
                cidr(c).map(|c| princ(principal::Identifier::DirectRemoteIp(c)))
            })),
            "remote.ip" => principals.extend(princ_lists(values, not_values, |c| {
                cidr(c).map(|c| princ(principal::Identifier::RemoteIp(c)))
            })),
            "source.namespace" => {
                let ns: Vec<Principal> = values.iter().map(|n| self.namespace(n)).collect();
                let not: Vec<Principal> = not_values.iter().map(|n| self.namespace(n)).collect();
                if !ns.is_empty() {
                    principals.push(princ_or(ns.into_iter()));
                }
                if !not.is_empty() {
                    principals.push(princ_not(princ_or(not.into_iter())));
                }
            }
            "source.principal" => principals.extend(princ_lists(values, not_values, |p| {
                Some(authenticated(wildcard(p, "spiffe://")))
            })),
            _ => self.unsupported = true,
        }
    }
}
