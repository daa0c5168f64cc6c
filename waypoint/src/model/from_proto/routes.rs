//! `RouteConfiguration` → [`RouteTable`]: virtual hosts, routes, route matches and per-filter
//! overrides (RBAC, fault injection, local rate limits).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use xds::pb::envoy::config::route::v3::{
    Route as PbRoute, RouteConfiguration, RouteMatch as PbRouteMatch, VirtualHost as PbVirtualHost,
    route, route_match::PathSpecifier,
};
use xds::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use xds::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use xds::pb::envoy::extensions::filters::http::rbac::v3::RbacPerRoute;
use xds::pb::google::protobuf::Any;

use super::rate_limit::{self, Level};
use super::route_action::{self, Defaults};
use super::{At, ModelError, decode, fault, headers, holds, matchers, rbac_rules, responses};
use crate::model::rbac::RbacFilter;
use crate::model::{
    FilterOverride, HeaderChanges, Mirror, PathMatch, Route, RouteAction, RouteMatch, RouteTable,
    VirtualHost,
};

/// What a virtual host takes from its route configuration.
struct TableLevel {
    request_headers: HeaderChanges,
    response_headers: HeaderChanges,
    /// Envoy applies the route configuration's headers last unless this is set.
    most_specific_wins: bool,
    /// Shared by every virtual host that does not replace them (so is a rate limit's bucket, as
    /// in Envoy, where this level's config is one object).
    overrides: BTreeMap<String, FilterOverride>,
    mirrors: Vec<Mirror>,
}

pub(super) fn table(at: &At<'_>, rc: &RouteConfiguration) -> Result<RouteTable, ModelError> {
    if rc.vhds.is_some() {
        return Err(at.f("vhds").unsupported("on-demand virtual hosts (VHDS)"));
    }
    if !rc.vhost_header.is_empty() {
        return Err(at
            .f("vhost_header")
            .unsupported("virtual host selection by another header"));
    }
    let level = TableLevel {
        request_headers: headers::changes(
            at,
            "request_headers_to_add",
            &rc.request_headers_to_add,
            "request_headers_to_remove",
            &rc.request_headers_to_remove,
        )?,
        response_headers: headers::changes(
            at,
            "response_headers_to_add",
            &rc.response_headers_to_add,
            "response_headers_to_remove",
            &rc.response_headers_to_remove,
        )?,
        most_specific_wins: rc.most_specific_header_mutations_wins,
        overrides: per_filter(
            &at.f("typed_per_filter_config"),
            &rc.typed_per_filter_config,
        )?,
        mirrors: route_action::mirrors(
            &at.f("request_mirror_policies"),
            &rc.request_mirror_policies,
        )?,
    };
    let mut seen = HashSet::new();
    let mut virtual_hosts = Vec::with_capacity(rc.virtual_hosts.len());
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        let at = at.f("virtual_hosts").i(i, &vh.name);
        let v = virtual_host(&at, vh, &level)?;
        for d in &v.domains {
            if !seen.insert(d.clone()) {
                return Err(at
                    .f("domains")
                    .invalid(format_args!("duplicate domain {d:?}")));
            }
        }
        virtual_hosts.push(v);
    }
    Ok(RouteTable {
        name: rc.name.clone(),
        virtual_hosts,
    })
}

/// Applies the route configuration's changes after (or, with most-specific-wins, before) the
/// virtual host's.
fn with_table(vh: HeaderChanges, table: &HeaderChanges, most_specific_wins: bool) -> HeaderChanges {
    if most_specific_wins {
        headers::compose(table, &vh)
    } else {
        headers::compose(&vh, table)
    }
}

fn virtual_host(
    at: &At<'_>,
    vh: &PbVirtualHost,
    table: &TableLevel,
) -> Result<VirtualHost, ModelError> {
    if vh.matcher.is_some() {
        return Err(at.f("matcher").unsupported("matcher trees"));
    }
    if vh.require_tls != 0 {
        return Err(at.f("require_tls").unsupported("TLS redirection"));
    }
    if vh.retry_policy_typed_config.is_some() {
        return Err(at
            .f("retry_policy_typed_config")
            .unsupported("retry policy extensions"));
    }
    if vh.domains.is_empty() {
        return Err(at.f("domains").invalid("at least one domain is required"));
    }
    let mut domains: Vec<String> = Vec::with_capacity(vh.domains.len());
    for (i, d) in vh.domains.iter().enumerate() {
        if d.is_empty() {
            return Err(at.f("domains").i(i, "").invalid("empty domain"));
        }
        domains.push(d.to_ascii_lowercase());
    }
    let retry = vh
        .retry_policy
        .as_ref()
        .map(|r| route_action::retry(&at.f("retry_policy"), r))
        .transpose()?;
    let mirrors = if vh.request_mirror_policies.is_empty() {
        table.mirrors.clone()
    } else {
        route_action::mirrors(
            &at.f("request_mirror_policies"),
            &vh.request_mirror_policies,
        )?
    };
    let defaults = Defaults { retry, mirrors };
    let mut overrides = table.overrides.clone();
    overrides.extend(per_filter(
        &at.f("typed_per_filter_config"),
        &vh.typed_per_filter_config,
    )?);
    let routes = vh
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route(&at.f("routes").i(i, &r.name), r, &defaults))
        .collect::<Result<Vec<_>, _>>()?;
    let request_headers = headers::changes(
        at,
        "request_headers_to_add",
        &vh.request_headers_to_add,
        "request_headers_to_remove",
        &vh.request_headers_to_remove,
    )?;
    let response_headers = headers::changes(
        at,
        "response_headers_to_add",
        &vh.response_headers_to_add,
        "response_headers_to_remove",
        &vh.response_headers_to_remove,
    )?;
    Ok(VirtualHost {
        name: vh.name.clone(),
        domains,
        routes,
        overrides,
        request_headers: with_table(
            request_headers,
            &table.request_headers,
            table.most_specific_wins,
        ),
        response_headers: with_table(
            response_headers,
            &table.response_headers,
            table.most_specific_wins,
        ),
    })
}

fn route(at: &At<'_>, r: &PbRoute, defaults: &Defaults) -> Result<Route, ModelError> {
    let Some(m) = &r.r#match else {
        return Err(at.f("match").missing());
    };
    let rewrites_prefix = match &r.action {
        Some(route::Action::Route(a)) => !a.prefix_rewrite.is_empty(),
        Some(route::Action::Redirect(rd)) => matches!(
            rd.path_rewrite_specifier,
            Some(xds::pb::envoy::config::route::v3::redirect_action::PathRewriteSpecifier::PrefixRewrite(_))
        ),
        _ => false,
    };
    let matcher = route_match(&at.f("match"), m, rewrites_prefix)?;
    let action = match &r.action {
        Some(route::Action::Route(a)) => {
            RouteAction::Forward(route_action::forward(&at.f("route"), a, defaults)?)
        }
        Some(route::Action::Redirect(rd)) => {
            RouteAction::Redirect(responses::redirect(&at.f("redirect"), rd)?)
        }
        Some(route::Action::DirectResponse(d)) => {
            let (status, body) = responses::direct(&at.f("direct_response"), d)?;
            RouteAction::Direct { status, body }
        }
        Some(route::Action::FilterAction(_)) => {
            return Err(at.f("filter_action").unsupported("filter actions"));
        }
        Some(route::Action::NonForwardingAction(_)) => {
            return Err(at
                .f("non_forwarding_action")
                .unsupported("non-forwarding actions"));
        }
        None => return Err(at.f("action").missing()),
    };
    Ok(Route {
        name: r.name.clone(),
        matcher,
        action,
        request_headers: headers::changes(
            at,
            "request_headers_to_add",
            &r.request_headers_to_add,
            "request_headers_to_remove",
            &r.request_headers_to_remove,
        )?,
        response_headers: headers::changes(
            at,
            "response_headers_to_add",
            &r.response_headers_to_add,
            "response_headers_to_remove",
            &r.response_headers_to_remove,
        )?,
        overrides: per_filter(&at.f("typed_per_filter_config"), &r.typed_per_filter_config)?,
    })
}

/// A `path_separated_prefix`: no trailing `/`, no `?` or `#` (Envoy's validation).
fn segment_prefix(at: &At<'_>, p: &str) -> Result<PathMatch, ModelError> {
    if p.is_empty() || p.ends_with('/') || p.contains(['?', '#']) {
        return Err(at.invalid(format_args!(
            "{p:?}: must be non-empty, without '?', '#' or a trailing '/'"
        )));
    }
    Ok(PathMatch::SegmentPrefix(p.to_owned()))
}

/// A `RouteMatch`. `prefix: "/"` (and `""`, unless a prefix rewrite needs the exact prefix)
/// become [`PathMatch::Any`]. Conditions the waypoint cannot evaluate are rejected rather than
/// dropped, since dropping one would widen the route.
fn route_match(
    at: &At<'_>,
    m: &PbRouteMatch,
    rewrites_prefix: bool,
) -> Result<RouteMatch, ModelError> {
    let unsupported = [
        ("runtime_fraction", m.runtime_fraction.is_some()),
        ("cookies", !m.cookies.is_empty()),
        ("tls_context", m.tls_context.is_some()),
        ("dynamic_metadata", !m.dynamic_metadata.is_empty()),
        ("filter_state", !m.filter_state.is_empty()),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(at.f(field).unsupported("this route match condition"));
    }
    let path = match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) if p == "/" || (p.is_empty() && !rewrites_prefix) => {
            PathMatch::Any
        }
        Some(PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(PathSpecifier::Path(p)) => PathMatch::Exact(p.clone()),
        Some(PathSpecifier::SafeRegex(r)) => {
            PathMatch::Regex(matchers::regex(&at.f("safe_regex"), r)?)
        }
        Some(PathSpecifier::PathSeparatedPrefix(p)) => {
            segment_prefix(&at.f("path_separated_prefix"), p)?
        }
        Some(PathSpecifier::ConnectMatcher(_)) => {
            return Err(at.f("connect_matcher").unsupported("CONNECT routes"));
        }
        Some(PathSpecifier::PathMatchPolicy(_)) => {
            return Err(at
                .f("path_match_policy")
                .unsupported("path match extensions"));
        }
        None => return Err(at.f("path_specifier").missing()),
    };
    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| matchers::header_match(&at.f("headers").i(i, ""), h))
        .collect::<Result<_, _>>()?;
    let query = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(i, q)| matchers::query_match(&at.f("query_parameters").i(i, ""), q))
        .collect::<Result<_, _>>()?;
    Ok(RouteMatch {
        path,
        case_sensitive: m.case_sensitive.as_ref().is_none_or(|b| b.value),
        headers,
        query,
        grpc: m.grpc.is_some(),
    })
}

/// `typed_per_filter_config` → overrides by filter name: `RBACPerRoute` (without `rbac`: the
/// filter lets everything through), `HTTPFault`, `LocalRateLimit` (which must have a token
/// bucket), or a `FilterConfig` with `disabled` ([`FilterOverride::Disabled`]). Configs of other
/// types are errors unless wrapped in an optional `FilterConfig`, which drops them.
pub(super) fn per_filter(
    at: &At<'_>,
    map: &HashMap<String, Any>,
) -> Result<BTreeMap<String, FilterOverride>, ModelError> {
    use xds::pb::envoy::config::route::v3::FilterConfig;
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    let mut out = BTreeMap::new();
    for name in names {
        let at = at.k(name);
        let Some(any) = map.get(name) else { continue };
        let (any, optional) = if holds::<FilterConfig>(any) {
            let fc: FilterConfig = decode(&at, any)?;
            if fc.disabled {
                out.insert(name.clone(), FilterOverride::Disabled);
                continue;
            }
            match fc.config {
                Some(c) => (c, fc.is_optional),
                None => return Err(at.f("config").missing()),
            }
        } else {
            (any.clone(), false)
        };
        let config = if holds::<RbacPerRoute>(&any) {
            let per_route: RbacPerRoute = decode(&at, &any)?;
            FilterOverride::Rbac(match &per_route.rbac {
                Some(rbac) => rbac_rules::filter(&at.f("rbac"), rbac)?,
                None => RbacFilter::disabled(),
            })
        } else if holds::<HttpFault>(&any) {
            let f: HttpFault = decode(&at, &any)?;
            FilterOverride::Fault(Arc::new(fault::fault(&at, &f)?))
        } else if holds::<LocalRateLimit>(&any) {
            let l: LocalRateLimit = decode(&at, &any)?;
            FilterOverride::RateLimit(Arc::new(rate_limit::local_rate_limit(
                &at,
                &l,
                Level::PerRoute,
            )?))
        } else if optional {
            continue;
        } else {
            return Err(at.unsupported(format_args!("per-route config of type {:?}", any.type_url)));
        };
        out.insert(name.clone(), config);
    }
    Ok(out)
}
