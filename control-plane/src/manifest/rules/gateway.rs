//! Admission checks for Gateway, HTTPRoute and GRPCRoute: what the Gateway API's CRD validation
//! (and Istio's webhook, for waypoints) would reject. References to other objects are not
//! checked here: a missing backend is a status condition in Kubernetes, so the translation skips
//! it with a warning.

use super::super::gateway::{
    BackendRef, FilterType, Gateway, GrpcRoute, GrpcRouteRule, HBONE_PORT, HttpRoute,
    HttpRouteMatch, MAX_WEIGHT, ParentRef, PathMatchType, PathModifier, PathModifierType,
    RouteFilter, RouteRetry, RouteTimeouts, ValueMatch, ValueMatchType, WAYPOINT_FOR,
};
use super::super::{ManifestError, ManifestObject, MetaExt, parse_duration};

const WAYPOINT_FOR_VALUES: &[&str] = &["service", "workload", "all", "none"];
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
const REDIRECT_CODES: &[u16] = &[301, 302, 303, 307, 308];

type Check = Result<(), ManifestError>;

pub(super) fn check_gateway(obj: &ManifestObject, g: &Gateway) -> Check {
    let spec = &g.spec;
    if spec.gateway_class_name.is_empty() {
        return Err(ManifestError::at(
            obj,
            "spec.gatewayClassName",
            "must not be empty",
        ));
    }
    for (i, l) in spec.listeners.iter().enumerate() {
        if l.port == 0 {
            return Err(ManifestError::at(
                obj,
                &format!("spec.listeners[{i}].port"),
                "must be 1-65535",
            ));
        }
        if l.name.is_empty() {
            return Err(ManifestError::at(
                obj,
                &format!("spec.listeners[{i}].name"),
                "must not be empty",
            ));
        }
    }
    for (i, a) in spec.addresses.iter().enumerate() {
        match a.kind.as_deref() {
            None | Some("IPAddress") => {
                if a.value.parse::<std::net::IpAddr>().is_err() {
                    return Err(ManifestError::at(
                        obj,
                        &format!("spec.addresses[{i}].value"),
                        format!("{:?} is not an IP address", a.value),
                    ));
                }
            }
            Some("Hostname") => {}
            Some(other) => {
                return Err(ManifestError::at(
                    obj,
                    &format!("spec.addresses[{i}].type"),
                    format!("{other:?} is not supported; use IPAddress or Hostname"),
                ));
            }
        }
    }
    if let Some(v) = g.metadata.labels().get(WAYPOINT_FOR)
        && !WAYPOINT_FOR_VALUES.contains(&v.as_str())
    {
        return Err(ManifestError::at(
            obj,
            &format!("metadata.labels[{WAYPOINT_FOR}]"),
            format!("{v:?} is not one of {}", WAYPOINT_FOR_VALUES.join(", ")),
        ));
    }
    if g.is_waypoint()
        && !spec
            .listeners
            .iter()
            .any(|l| l.port == HBONE_PORT && l.protocol == "HBONE")
    {
        return Err(ManifestError::at(
            obj,
            "spec.listeners",
            format!(
                "a waypoint (gatewayClassName {}) needs a listener on port {HBONE_PORT} with protocol HBONE",
                g.spec.gateway_class_name
            ),
        ));
    }
    Ok(())
}

pub(super) fn check_http_route(obj: &ManifestObject, r: &HttpRoute) -> Check {
    check_parents(obj, &r.spec.parent_refs)?;
    for (i, rule) in r.spec.rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        for (j, m) in rule.matches.iter().enumerate() {
            check_http_match(obj, &format!("{at}.matches[{j}]"), m)?;
        }
        let prefix_only = rule.matches.iter().all(|m| {
            m.path
                .as_ref()
                .is_none_or(|p| p.kind == PathMatchType::PathPrefix)
        });
        check_filters(obj, &at, &rule.filters, prefix_only, true)?;
        check_backends(obj, &at, &rule.backend_refs)?;
        check_timeouts(obj, &at, rule.timeouts.as_ref())?;
        check_retry(obj, &at, rule.retry.as_ref())?;
    }
    Ok(())
}

pub(super) fn check_grpc_route(obj: &ManifestObject, r: &GrpcRoute) -> Check {
    check_parents(obj, &r.spec.parent_refs)?;
    for (i, rule) in r.spec.rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        check_grpc_matches(obj, &at, rule)?;
        check_filters(obj, &at, &rule.filters, false, false)?;
        check_backends(obj, &at, &rule.backend_refs)?;
        check_timeouts(obj, &at, rule.timeouts.as_ref())?;
        check_retry(obj, &at, rule.retry.as_ref())?;
    }
    Ok(())
}

fn check_parents(obj: &ManifestObject, parents: &[ParentRef]) -> Check {
    for (i, p) in parents.iter().enumerate() {
        if p.name.is_empty() {
            return Err(ManifestError::at(
                obj,
                &format!("spec.parentRefs[{i}].name"),
                "must not be empty",
            ));
        }
        if p.port == Some(0) {
            return Err(ManifestError::at(
                obj,
                &format!("spec.parentRefs[{i}].port"),
                "must be 1-65535",
            ));
        }
    }
    Ok(())
}

fn check_regex(obj: &ManifestObject, at: &str, re: &str) -> Check {
    regex::Regex::new(re).map(|_| ()).map_err(|e| {
        ManifestError::at(
            obj,
            at,
            format!("{re:?} is not a valid regular expression: {e}"),
        )
    })
}

fn check_values(obj: &ManifestObject, at: &str, values: &[ValueMatch]) -> Check {
    for (k, v) in values.iter().enumerate() {
        if v.name.is_empty() {
            return Err(ManifestError::at(
                obj,
                &format!("{at}[{k}].name"),
                "must not be empty",
            ));
        }
        if v.kind == ValueMatchType::RegularExpression {
            check_regex(obj, &format!("{at}[{k}].value"), &v.value)?;
        }
    }
    Ok(())
}

fn check_http_match(obj: &ManifestObject, at: &str, m: &HttpRouteMatch) -> Check {
    if let Some(path) = &m.path {
        match path.kind {
            PathMatchType::RegularExpression => {
                check_regex(obj, &format!("{at}.path.value"), &path.value)?
            }
            PathMatchType::Exact | PathMatchType::PathPrefix => {
                if !path.value.starts_with('/') {
                    return Err(ManifestError::at(
                        obj,
                        &format!("{at}.path.value"),
                        format!("{:?} must start with '/'", path.value),
                    ));
                }
            }
        }
    }
    check_values(obj, &format!("{at}.headers"), &m.headers)?;
    check_values(obj, &format!("{at}.queryParams"), &m.query_params)?;
    if let Some(method) = &m.method
        && !METHODS.contains(&method.as_str())
    {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.method"),
            format!("{method:?} is not one of {}", METHODS.join(", ")),
        ));
    }
    Ok(())
}

fn grpc_name_ok(name: &str, dotted: bool) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        && (dotted || !name.contains('.'))
}

fn check_grpc_matches(obj: &ManifestObject, at: &str, rule: &GrpcRouteRule) -> Check {
    for (j, m) in rule.matches.iter().enumerate() {
        let at = format!("{at}.matches[{j}]");
        if let Some(method) = &m.method {
            if method.service.is_none() && method.method.is_none() {
                return Err(ManifestError::at(
                    obj,
                    &format!("{at}.method"),
                    "needs a service, a method or both",
                ));
            }
            for (field, value, dotted) in [
                ("service", &method.service, true),
                ("method", &method.method, false),
            ] {
                let Some(value) = value else { continue };
                let here = format!("{at}.method.{field}");
                match method.kind {
                    ValueMatchType::RegularExpression => check_regex(obj, &here, value)?,
                    ValueMatchType::Exact if !grpc_name_ok(value, dotted) => {
                        return Err(ManifestError::at(
                            obj,
                            &here,
                            format!("{value:?} is not a valid gRPC {field} name"),
                        ));
                    }
                    ValueMatchType::Exact => {}
                }
            }
        }
        check_values(obj, &format!("{at}.headers"), &m.headers)?;
    }
    Ok(())
}

fn check_path_modifier(
    obj: &ManifestObject,
    at: &str,
    p: &PathModifier,
    prefix_only: bool,
) -> Check {
    let (value, field) = match p.kind {
        PathModifierType::ReplaceFullPath => (&p.replace_full_path, "replaceFullPath"),
        PathModifierType::ReplacePrefixMatch => (&p.replace_prefix_match, "replacePrefixMatch"),
    };
    let Some(value) = value else {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.{field}"),
            format!("required when type is {:?}", p.kind),
        ));
    };
    if !value.starts_with('/') {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.{field}"),
            format!("{value:?} must start with '/'"),
        ));
    }
    if p.kind == PathModifierType::ReplacePrefixMatch && !prefix_only {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.type"),
            "ReplacePrefixMatch needs every match of the rule to be a PathPrefix match",
        ));
    }
    Ok(())
}

fn check_filters(
    obj: &ManifestObject,
    at: &str,
    filters: &[RouteFilter],
    prefix_only: bool,
    http: bool,
) -> Check {
    let has = |k: FilterType| filters.iter().any(|f| f.kind == k);
    if has(FilterType::UrlRewrite) && has(FilterType::RequestRedirect) {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.filters"),
            "URLRewrite and RequestRedirect cannot be combined",
        ));
    }
    for (k, f) in filters.iter().enumerate() {
        let here = format!("{at}.filters[{k}]");
        let missing = |field: &str| {
            ManifestError::at(
                obj,
                &format!("{here}.{field}"),
                format!("required when type is {:?}", f.kind),
            )
        };
        match f.kind {
            FilterType::RequestHeaderModifier if f.request_header_modifier.is_none() => {
                return Err(missing("requestHeaderModifier"));
            }
            FilterType::ResponseHeaderModifier if f.response_header_modifier.is_none() => {
                return Err(missing("responseHeaderModifier"));
            }
            FilterType::UrlRewrite | FilterType::RequestRedirect if !http => {
                return Err(ManifestError::at(
                    obj,
                    &format!("{here}.type"),
                    format!("{:?} is not a GRPCRoute filter", f.kind),
                ));
            }
            FilterType::UrlRewrite => {
                let rw = f
                    .url_rewrite
                    .as_ref()
                    .ok_or_else(|| missing("urlRewrite"))?;
                if let Some(p) = &rw.path {
                    check_path_modifier(obj, &format!("{here}.urlRewrite.path"), p, prefix_only)?;
                }
            }
            FilterType::RequestRedirect => {
                let rd = f
                    .request_redirect
                    .as_ref()
                    .ok_or_else(|| missing("requestRedirect"))?;
                check_redirect(obj, &here, rd, prefix_only)?;
            }
            FilterType::RequestMirror => {
                let m = f
                    .request_mirror
                    .as_ref()
                    .ok_or_else(|| missing("requestMirror"))?;
                check_backend(
                    obj,
                    &format!("{here}.requestMirror.backendRef"),
                    &m.backend_ref,
                )?;
                if m.percent.is_some_and(|p| p > 100) {
                    return Err(ManifestError::at(
                        obj,
                        &format!("{here}.requestMirror.percent"),
                        "must be 0-100",
                    ));
                }
            }
            FilterType::ExtensionRef => {
                let r = f
                    .extension_ref
                    .as_ref()
                    .ok_or_else(|| missing("extensionRef"))?;
                super::extensions::check_extension_ref(obj, &here, r)?;
            }
            FilterType::RequestHeaderModifier | FilterType::ResponseHeaderModifier => {}
        }
    }
    super::extensions::check_one_per_kind(obj, at, filters)
}

fn check_redirect(
    obj: &ManifestObject,
    here: &str,
    rd: &super::super::gateway::RequestRedirect,
    prefix_only: bool,
) -> Check {
    let at = format!("{here}.requestRedirect");
    if let Some(code) = rd.status_code
        && !REDIRECT_CODES.contains(&code)
    {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.statusCode"),
            format!("{code} is not one of 301, 302, 303, 307, 308"),
        ));
    }
    if let Some(s) = &rd.scheme
        && s != "http"
        && s != "https"
    {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.scheme"),
            format!("{s:?} is not http or https"),
        ));
    }
    if rd.port == Some(0) {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.port"),
            "must be 1-65535",
        ));
    }
    if let Some(p) = &rd.path {
        check_path_modifier(obj, &format!("{at}.path"), p, prefix_only)?;
    }
    Ok(())
}

fn check_backend(obj: &ManifestObject, at: &str, b: &BackendRef) -> Check {
    if b.name.is_empty() {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.name"),
            "must not be empty",
        ));
    }
    if let Some(w) = b.weight
        && !(0..=MAX_WEIGHT).contains(&w)
    {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.weight"),
            format!("{w} is out of range 0-{MAX_WEIGHT}"),
        ));
    }
    match b.port {
        Some(0) => Err(ManifestError::at(
            obj,
            &format!("{at}.port"),
            "must be 1-65535",
        )),
        None if b.is_service() => Err(ManifestError::at(
            obj,
            &format!("{at}.port"),
            "required for a Service backend",
        )),
        _ => Ok(()),
    }
}

fn check_backends(obj: &ManifestObject, at: &str, backends: &[BackendRef]) -> Check {
    for (k, b) in backends.iter().enumerate() {
        check_backend(obj, &format!("{at}.backendRefs[{k}]"), b)?;
    }
    Ok(())
}

fn check_duration(obj: &ManifestObject, at: &str, d: Option<&String>) -> Result<(), ManifestError> {
    if let Some(text) = d {
        parse_duration(text).map_err(|e| ManifestError::at(obj, at, e))?;
    }
    Ok(())
}

fn check_timeouts(obj: &ManifestObject, at: &str, t: Option<&RouteTimeouts>) -> Check {
    let Some(t) = t else { return Ok(()) };
    check_duration(obj, &format!("{at}.timeouts.request"), t.request.as_ref())?;
    check_duration(
        obj,
        &format!("{at}.timeouts.backendRequest"),
        t.backend_request.as_ref(),
    )?;
    let parsed = |d: &Option<String>| d.as_deref().and_then(|d| parse_duration(d).ok());
    if let (Some(req), Some(backend)) = (parsed(&t.request), parsed(&t.backend_request))
        && !req.is_zero()
        && backend > req
    {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.timeouts.backendRequest"),
            "must not be longer than timeouts.request",
        ));
    }
    Ok(())
}

fn check_retry(obj: &ManifestObject, at: &str, r: Option<&RouteRetry>) -> Check {
    let Some(r) = r else { return Ok(()) };
    for (k, code) in r.codes.iter().enumerate() {
        if !(400..=599).contains(code) {
            return Err(ManifestError::at(
                obj,
                &format!("{at}.retry.codes[{k}]"),
                format!("{code} is not an HTTP error status (400-599)"),
            ));
        }
    }
    check_duration(obj, &format!("{at}.retry.backoff"), r.backoff.as_ref())
}
