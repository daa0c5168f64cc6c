//! What one route does: filters (header modifiers, URL rewrite, redirect, mirror, and for
//! Envoy the per-filter configs of `ExtensionRef`s, see `translate/extensions.rs`), backends
//! (one cluster or `weighted_clusters`), timeouts and retries.
//!
//! * An `ExtensionRef` to a missing FaultInjection or LocalRateLimit: a 500 direct response.
//! * Backends that do not resolve (not a Service, another namespace without the ReferenceGrant
//!   this control plane does not read, a missing Service or port) are skipped with a warning;
//!   weight-0 backends get no traffic. No backend left → a 500 direct response, as Gateway API
//!   requires.
//! * `timeouts.request` → route `timeout` (0 s = none, Istio's default); without a `retry`,
//!   `timeouts.backendRequest` is the route timeout, with one it is the per-try timeout.
//! * `retry` → `retry_on: connect-failure,reset[,retriable-status-codes]`, `num_retries`
//!   (default 2, Istio's), `retry_back_off.base_interval`.
//! * A DestinationRule `consistentHash` of the first backend → route `hash_policy`.

use std::collections::BTreeSet;
use std::time::Duration;

use xds::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use xds::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, RetryPolicy, Route, RouteAction, WeightedCluster,
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
    retry_policy::RetryBackOff,
    route,
    route_action::{
        ClusterSpecifier, HostRewriteSpecifier, MaxStreamDuration, RequestMirrorPolicy,
    },
    weighted_cluster::ClusterWeight,
};
use xds::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use xds::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use xds::pb::google::protobuf as pbuf;

use super::{Candidate, Client};
use crate::manifest::PortExt;
use crate::manifest::gateway::{
    BackendRef, FilterType, HeaderModifier, PathModifier, PathModifierType, RequestRedirect,
    UrlRewrite,
};
use crate::translate::clusters::{ClusterKey, key};
use crate::translate::destination_rule;
use crate::translate::envoy::{duration, header, parsed, regex_matcher, u32v};
use crate::translate::extensions;
use crate::translate::mesh::{Mesh, tcp_ports};

/// Retries when a `retry` block does not say how many.
const DEFAULT_ATTEMPTS: u32 = 2;

pub(in crate::translate) fn no_timeout() -> pbuf::Duration {
    duration(Duration::ZERO)
}

/// The cluster a backend reference reaches, or `None` (logged) when it does not resolve.
fn resolve(mesh: &Mesh<'_>, route_ns: &str, what: &str, b: &BackendRef) -> Option<ClusterKey> {
    let skip = |why: &str| {
        tracing::warn!(route = %what, backend = %b.name, "backendRef skipped: {why}");
        None
    };
    if !b.is_service() {
        return skip("only Service backends are supported");
    }
    let ns = b.namespace.as_deref().unwrap_or(route_ns);
    if ns != route_ns {
        return skip("cross-namespace backends need a ReferenceGrant, which is not supported");
    }
    let Some(svc) = mesh.service(ns, &b.name) else {
        return skip("no such Service");
    };
    let Some(port) = b
        .port
        .filter(|p| tcp_ports(svc).any(|sp| sp.number() == *p))
    else {
        return skip("the Service has no such TCP port");
    };
    key(mesh, svc, port)
}

pub(super) fn route(
    mesh: &Mesh<'_>,
    c: &Candidate<'_, '_>,
    client: Client,
    clusters: &mut BTreeSet<ClusterKey>,
) -> Route {
    let what = format!("{}/{}", c.route.namespace, c.route.name);
    let mut r = Route {
        name: format!(
            "{}.{}.{}.{}",
            c.route.namespace, c.route.name, c.rule, c.index
        ),
        r#match: Some(c.spec.to_envoy(client)),
        ..Route::default()
    };
    let Ok(per_filter) = extensions::per_route(mesh, &c.route.namespace, &what, c.parts.filters)
    else {
        r.action = Some(server_error());
        return r;
    };
    if client == Client::Envoy {
        r.typed_per_filter_config = per_filter.into_iter().collect();
    }
    let Filters {
        redirect,
        rewrite,
        mirrors,
    } = filters(mesh, c, &what, &mut r, clusters);
    if let Some(rd) = redirect {
        r.action = Some(route::Action::Redirect(redirect_action(
            rd,
            c.spec.prefix(),
        )));
        return r;
    }
    let backends: Vec<(ClusterKey, u32)> = c
        .parts
        .backends
        .iter()
        .filter_map(|b| Some((resolve(mesh, &c.route.namespace, &what, b)?, b.weight())))
        .filter(|(_, w)| *w > 0)
        .collect();
    let Some(specifier) = cluster_specifier(mesh, &backends) else {
        r.action = Some(server_error());
        return r;
    };
    clusters.extend(backends.iter().map(|(k, _)| *k));
    let mut action = RouteAction {
        cluster_specifier: Some(specifier),
        request_mirror_policies: mirrors,
        hash_policy: backends
            .iter()
            .find_map(|(k, _)| {
                destination_rule::for_service(mesh, &mesh.services[k.service])
                    .and_then(destination_rule::hash_policy)
            })
            .into_iter()
            .collect(),
        ..RouteAction::default()
    };
    timeouts_and_retry(&mut action, c, client);
    if let Some(rw) = rewrite {
        apply_rewrite(&mut action, rw, c.spec.prefix());
    }
    r.action = Some(route::Action::Route(action));
    r
}

/// A 500 direct response: what Gateway API asks of a rule that cannot be served as written.
fn server_error() -> route::Action {
    route::Action::DirectResponse(DirectResponseAction {
        status: 500,
        ..DirectResponseAction::default()
    })
}

/// What a rule's filters decide beyond header changes (which go on the route directly).
#[derive(Default)]
struct Filters<'a> {
    redirect: Option<&'a RequestRedirect>,
    rewrite: Option<&'a UrlRewrite>,
    mirrors: Vec<RequestMirrorPolicy>,
}

fn filters<'a>(
    mesh: &Mesh<'_>,
    c: &Candidate<'_, 'a>,
    what: &str,
    r: &mut Route,
    clusters: &mut BTreeSet<ClusterKey>,
) -> Filters<'a> {
    let mut out = Filters::default();
    for f in c.parts.filters {
        match f.kind {
            FilterType::RequestHeaderModifier => {
                if let Some(m) = &f.request_header_modifier {
                    let (add, remove) = modifier(m);
                    r.request_headers_to_add.extend(add);
                    r.request_headers_to_remove.extend(remove);
                }
            }
            FilterType::ResponseHeaderModifier => {
                if let Some(m) = &f.response_header_modifier {
                    let (add, remove) = modifier(m);
                    r.response_headers_to_add.extend(add);
                    r.response_headers_to_remove.extend(remove);
                }
            }
            FilterType::RequestRedirect => out.redirect = f.request_redirect.as_ref(),
            FilterType::ExtensionRef => {}
            FilterType::UrlRewrite => out.rewrite = f.url_rewrite.as_ref(),
            FilterType::RequestMirror => {
                let Some(m) = &f.request_mirror else { continue };
                if let Some(k) = resolve(mesh, &c.route.namespace, what, &m.backend_ref) {
                    clusters.insert(k);
                    out.mirrors.push(RequestMirrorPolicy {
                        cluster: k.name(mesh),
                        runtime_fraction: m.percent.filter(|p| *p < 100).map(|p| {
                            RuntimeFractionalPercent {
                                default_value: Some(FractionalPercent {
                                    numerator: p,
                                    denominator: DenominatorType::Hundred as i32,
                                }),
                                ..RuntimeFractionalPercent::default()
                            }
                        }),
                        ..RequestMirrorPolicy::default()
                    });
                }
            }
        }
    }
    out
}

fn cluster_specifier(mesh: &Mesh<'_>, backends: &[(ClusterKey, u32)]) -> Option<ClusterSpecifier> {
    match backends {
        [] => None,
        [(k, _)] => Some(ClusterSpecifier::Cluster(k.name(mesh))),
        many => Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: many
                .iter()
                .map(|(k, w)| ClusterWeight {
                    name: k.name(mesh),
                    weight: Some(u32v(*w)),
                    ..ClusterWeight::default()
                })
                .collect(),
            ..WeightedCluster::default()
        })),
    }
}

fn modifier(
    m: &HeaderModifier,
) -> (
    Vec<xds::pb::envoy::config::core::v3::HeaderValueOption>,
    Vec<String>,
) {
    let add = m
        .set
        .iter()
        .map(|h| header(&h.name, &h.value, true))
        .chain(m.add.iter().map(|h| header(&h.name, &h.value, false)))
        .collect();
    let remove = m.remove.iter().map(|h| h.to_ascii_lowercase()).collect();
    (add, remove)
}

fn timeouts_and_retry(action: &mut RouteAction, c: &Candidate<'_, '_>, client: Client) {
    let t = c.parts.timeouts.cloned().unwrap_or_default();
    let request = t.request.as_deref().and_then(parsed);
    let backend = t.backend_request.as_deref().and_then(parsed);
    let timeout = match c.parts.retry {
        None => backend.or(request),
        Some(_) => request,
    };
    if client == Client::Grpc
        && let Some(t) = timeout.filter(|t| *t != no_timeout())
    {
        action.max_stream_duration = Some(MaxStreamDuration {
            max_stream_duration: Some(t),
            ..MaxStreamDuration::default()
        });
    }
    action.timeout = Some(timeout.unwrap_or_else(no_timeout));
    if let Some(retry) = c.parts.retry {
        let mut retry_on = "connect-failure,reset".to_owned();
        if !retry.codes.is_empty() {
            retry_on.push_str(",retriable-status-codes");
        }
        action.retry_policy = Some(RetryPolicy {
            retry_on,
            num_retries: Some(u32v(retry.attempts.unwrap_or(DEFAULT_ATTEMPTS))),
            retriable_status_codes: retry.codes.iter().map(|c| u32::from(*c)).collect(),
            per_try_timeout: backend,
            retry_back_off: retry
                .backoff
                .as_deref()
                .and_then(parsed)
                .filter(|b| *b != no_timeout())
                .map(|b| RetryBackOff {
                    base_interval: Some(b),
                    max_interval: None,
                }),
            ..RetryPolicy::default()
        });
    }
}

fn replace_all(substitution: &str) -> RegexMatchAndSubstitute {
    RegexMatchAndSubstitute {
        pattern: Some(regex_matcher("^.*$")),
        substitution: substitution.to_owned(),
    }
}

/// A prefix replacement Envoy's `prefix_rewrite` would get wrong (to or from `/`), as a regex.
fn prefix_regex(prefix: &str, replacement: &str) -> Option<RegexMatchAndSubstitute> {
    let replacement = replacement.trim_end_matches('/');
    if prefix.is_empty() && replacement.is_empty() {
        None
    } else if prefix.is_empty() {
        Some(RegexMatchAndSubstitute {
            pattern: Some(regex_matcher("^/")),
            substitution: format!("{replacement}/"),
        })
    } else if replacement.is_empty() {
        Some(RegexMatchAndSubstitute {
            pattern: Some(regex_matcher(&format!("^{}/*", regex::escape(prefix)))),
            substitution: "/".into(),
        })
    } else {
        None
    }
}

fn apply_rewrite(action: &mut RouteAction, rw: &UrlRewrite, prefix: Option<&str>) {
    if let Some(host) = &rw.hostname {
        action.host_rewrite_specifier =
            Some(HostRewriteSpecifier::HostRewriteLiteral(host.clone()));
    }
    match rw.path.as_ref().map(|p| (p.kind, p)) {
        Some((PathModifierType::ReplaceFullPath, p)) => {
            action.regex_rewrite = Some(replace_all(p.replace_full_path.as_deref().unwrap_or("/")));
        }
        Some((PathModifierType::ReplacePrefixMatch, p)) => {
            let to = p.replace_prefix_match.as_deref().unwrap_or("/");
            match prefix_regex(prefix.unwrap_or_default(), to) {
                Some(re) => action.regex_rewrite = Some(re),
                None => action.prefix_rewrite = to.to_owned(),
            }
        }
        None => {}
    }
}

fn redirect_action(rd: &RequestRedirect, prefix: Option<&str>) -> RedirectAction {
    let code = match rd.status_code.unwrap_or(302) {
        301 => RedirectResponseCode::MovedPermanently,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        _ => RedirectResponseCode::Found,
    };
    RedirectAction {
        host_redirect: rd.hostname.clone().unwrap_or_default(),
        port_redirect: rd.port.map(u32::from).unwrap_or_default(),
        response_code: code as i32,
        scheme_rewrite_specifier: rd
            .scheme
            .clone()
            .map(SchemeRewriteSpecifier::SchemeRedirect),
        path_rewrite_specifier: rd.path.as_ref().map(|p| redirect_path(p, prefix)),
        ..RedirectAction::default()
    }
}

fn redirect_path(p: &PathModifier, prefix: Option<&str>) -> PathRewriteSpecifier {
    match p.kind {
        PathModifierType::ReplaceFullPath => {
            PathRewriteSpecifier::PathRedirect(p.replace_full_path.clone().unwrap_or_default())
        }
        PathModifierType::ReplacePrefixMatch => {
            let to = p.replace_prefix_match.as_deref().unwrap_or("/");
            match prefix_regex(prefix.unwrap_or_default(), to) {
                Some(re) => PathRewriteSpecifier::RegexRewrite(re),
                None => PathRewriteSpecifier::PrefixRewrite(to.to_owned()),
            }
        }
    }
}
