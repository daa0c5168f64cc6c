//! `envoy.extensions.filters.http.rbac.v3.RBAC` → [`RbacFilter`]. Every rule kind either
//! converts or is an error: a rule the waypoint cannot evaluate is never silently allowed.
//! Metadata rules (deprecated `metadata`, `sourced_metadata`) convert to "never matches", as
//! the waypoint has no dynamic metadata; `requested_server_name` likewise (no SNI on the
//! tunnelled HTTP streams). CEL conditions, matcher trees and extensions are rejected.

use xds::pb::envoy::config::rbac::v3::{
    Permission as PbPermission, Policy, Principal as PbPrincipal, Rbac as PbRules, permission,
    principal, rbac::Action,
};
use xds::pb::envoy::extensions::filters::http::rbac::v3::Rbac;

use super::{At, ModelError, matchers};
use crate::model::StringMatch;
use crate::model::rbac::{Permission, Principal, RbacAction, RbacFilter, RbacPolicy, RbacRules};

pub(super) fn filter(at: &At<'_>, r: &Rbac) -> Result<RbacFilter, ModelError> {
    if r.matcher.is_some() {
        return Err(at.f("matcher").unsupported("RBAC matcher trees"));
    }
    if r.shadow_matcher.is_some() {
        return Err(at.f("shadow_matcher").unsupported("RBAC matcher trees"));
    }
    Ok(RbacFilter {
        rules: r
            .rules
            .as_ref()
            .map(|x| rules(&at.f("rules"), x))
            .transpose()?,
        shadow_rules: r
            .shadow_rules
            .as_ref()
            .map(|x| rules(&at.f("shadow_rules"), x))
            .transpose()?,
        shadow_rules_stat_prefix: r.shadow_rules_stat_prefix.clone(),
    })
}

fn rules(at: &At<'_>, r: &PbRules) -> Result<RbacRules, ModelError> {
    let action = match Action::try_from(r.action) {
        Ok(Action::Allow) => RbacAction::Allow,
        Ok(Action::Deny) => RbacAction::Deny,
        Ok(Action::Log) => RbacAction::Log,
        Err(_) => {
            return Err(at
                .f("action")
                .invalid(format_args!("unknown action {}", r.action)));
        }
    };
    let mut names: Vec<&String> = r.policies.keys().collect();
    names.sort();
    let mut policies = Vec::with_capacity(names.len());
    for name in names {
        if let Some(p) = r.policies.get(name) {
            policies.push(policy(&at.f("policies").k(name), name, p)?);
        }
    }
    Ok(RbacRules { action, policies })
}

fn policy(at: &At<'_>, name: &str, p: &Policy) -> Result<RbacPolicy, ModelError> {
    if p.condition.is_some() || p.checked_condition.is_some() {
        return Err(at.f("condition").unsupported("CEL conditions"));
    }
    if p.permissions.is_empty() {
        return Err(at
            .f("permissions")
            .invalid("at least one permission is required"));
    }
    if p.principals.is_empty() {
        return Err(at
            .f("principals")
            .invalid("at least one principal is required"));
    }
    Ok(RbacPolicy {
        name: name.to_owned(),
        permissions: p
            .permissions
            .iter()
            .enumerate()
            .map(|(i, x)| permission(&at.f("permissions").i(i, ""), x))
            .collect::<Result<_, _>>()?,
        principals: p
            .principals
            .iter()
            .enumerate()
            .map(|(i, x)| principal(&at.f("principals").i(i, ""), x))
            .collect::<Result<_, _>>()?,
    })
}

/// A rule set (`and_rules`, `or_ids`, …): at least one member, as Envoy validates.
fn set<P, T>(
    at: &At<'_>,
    items: &[P],
    one: impl Fn(&At<'_>, &P) -> Result<T, ModelError>,
) -> Result<Vec<T>, ModelError> {
    if items.is_empty() {
        return Err(at.invalid("an empty rule set"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, x)| one(&at.i(i, ""), x))
        .collect()
}

fn url_path(
    at: &At<'_>,
    m: &xds::pb::envoy::r#type::matcher::v3::PathMatcher,
) -> Result<StringMatch, ModelError> {
    use xds::pb::envoy::r#type::matcher::v3::path_matcher::Rule;
    match &m.rule {
        Some(Rule::Path(s)) => matchers::string_match(&at.f("path"), s),
        None => Err(at.f("path").missing()),
    }
}

fn permission(at: &At<'_>, p: &PbPermission) -> Result<Permission, ModelError> {
    use permission::Rule;
    #[allow(deprecated)]
    let out = match &p.rule {
        None => return Err(at.f("rule").missing()),
        Some(Rule::Any(true)) => Permission::Any,
        Some(Rule::Any(false)) => return Err(at.f("any").invalid("must be true")),
        Some(Rule::AndRules(s)) => {
            Permission::And(set(&at.f("and_rules.rules"), &s.rules, permission)?)
        }
        Some(Rule::OrRules(s)) => {
            Permission::Or(set(&at.f("or_rules.rules"), &s.rules, permission)?)
        }
        Some(Rule::NotRule(p)) => Permission::Not(Box::new(permission(&at.f("not_rule"), p)?)),
        Some(Rule::Header(h)) => Permission::Header(matchers::header_match(&at.f("header"), h)?),
        Some(Rule::UrlPath(m)) => Permission::UrlPath(url_path(&at.f("url_path"), m)?),
        Some(Rule::DestinationIp(c)) => {
            Permission::DestinationIp(matchers::cidr(&at.f("destination_ip"), c)?)
        }
        Some(Rule::DestinationPort(port)) => Permission::DestinationPort(
            u16::try_from(*port)
                .map_err(|_| at.f("destination_port").invalid("port above 65535"))?,
        ),
        Some(Rule::DestinationPortRange(r)) => Permission::DestinationPortRange {
            start: u32::try_from(r.start).unwrap_or(0),
            end: u32::try_from(r.end).unwrap_or(0),
        },
        Some(Rule::RequestedServerName(m)) => Permission::RequestedServerName(
            matchers::string_match(&at.f("requested_server_name"), m)?,
        ),
        Some(Rule::Metadata(_) | Rule::SourcedMetadata(_)) => Permission::Metadata,
        Some(Rule::Matcher(_)) => {
            return Err(at.f("matcher").unsupported("permission extensions"));
        }
        Some(Rule::UriTemplate(_)) => {
            return Err(at.f("uri_template").unsupported("URI templates"));
        }
    };
    Ok(out)
}

fn principal(at: &At<'_>, p: &PbPrincipal) -> Result<Principal, ModelError> {
    use principal::Identifier as Id;
    #[allow(deprecated)]
    let out = match &p.identifier {
        None => return Err(at.f("identifier").missing()),
        Some(Id::Any(true)) => Principal::Any,
        Some(Id::Any(false)) => return Err(at.f("any").invalid("must be true")),
        Some(Id::AndIds(s)) => Principal::And(set(&at.f("and_ids.ids"), &s.ids, principal)?),
        Some(Id::OrIds(s)) => Principal::Or(set(&at.f("or_ids.ids"), &s.ids, principal)?),
        Some(Id::NotId(p)) => Principal::Not(Box::new(principal(&at.f("not_id"), p)?)),
        Some(Id::Authenticated(a)) => Principal::Authenticated(
            a.principal_name
                .as_ref()
                .map(|m| matchers::string_match(&at.f("authenticated.principal_name"), m))
                .transpose()?,
        ),
        Some(Id::SourceIp(c)) => Principal::RemoteIp(matchers::cidr(&at.f("source_ip"), c)?),
        Some(Id::DirectRemoteIp(c)) => {
            Principal::RemoteIp(matchers::cidr(&at.f("direct_remote_ip"), c)?)
        }
        Some(Id::RemoteIp(c)) => Principal::RemoteIp(matchers::cidr(&at.f("remote_ip"), c)?),
        Some(Id::Header(h)) => Principal::Header(matchers::header_match(&at.f("header"), h)?),
        Some(Id::UrlPath(m)) => Principal::UrlPath(url_path(&at.f("url_path"), m)?),
        Some(Id::Metadata(_) | Id::SourcedMetadata(_)) => Principal::Metadata,
        Some(Id::FilterState(_)) => {
            return Err(at.f("filter_state").unsupported("filter state principals"));
        }
        Some(Id::Custom(_)) => return Err(at.f("custom").unsupported("principal extensions")),
    };
    Ok(out)
}
