//! Path rewrites (`prefix_rewrite`, `regex_rewrite`) and redirect locations, as Envoy computes
//! them.

use crate::model::{Forward, PathMatch, Redirect, RegexRewrite, RouteMatch};

/// Splits `path?query` into the path and the rest (`"?query"` or `""`).
fn split(path_and_query: &str) -> (&str, &str) {
    let end = path_and_query.find('?').unwrap_or(path_and_query.len());
    path_and_query.split_at(end)
}

/// How many leading bytes of `path` a prefix rewrite replaces: the matched prefix for prefix
/// matches (`Any` counts as `/`), the whole path for exact and regex matches (as Envoy).
fn matched_len(m: &RouteMatch, path: &str) -> Option<usize> {
    let n = match &m.path {
        PathMatch::Any => usize::from(path.starts_with('/')),
        PathMatch::Prefix(p) | PathMatch::SegmentPrefix(p) => p.len(),
        PathMatch::Exact(_) | PathMatch::Regex(_) => path.len(),
    };
    path.is_char_boundary(n)
        .then_some(n)
        .filter(|n| *n <= path.len())
}

/// The rewritten path (without query), if a rewrite is configured and applies.
fn rewrite(
    prefix: Option<&str>,
    regex: Option<&RegexRewrite>,
    m: &RouteMatch,
    path: &str,
) -> Option<String> {
    if let Some(prefix) = prefix {
        let n = matched_len(m, path)?;
        return Some(format!("{prefix}{}", &path[n..]));
    }
    let r = regex?;
    Some(
        r.pattern
            .compiled
            .replace_all(path, r.substitution.as_str())
            .into_owned(),
    )
}

/// The new `path?query` when the route rewrites the path: `prefix_rewrite` replaces the
/// matched prefix, `regex_rewrite` substitutes every match in the path; the query is kept.
/// `None` = unchanged.
pub fn rewrite_path(fwd: &Forward, matched: &RouteMatch, path_and_query: &str) -> Option<String> {
    let (path, query) = split(path_and_query);
    let new = rewrite(
        fwd.prefix_rewrite.as_deref(),
        fwd.regex_rewrite.as_ref(),
        matched,
        path,
    )?;
    Some(new + query)
}

/// The request's host for the redirect: its port is dropped when a new port is set, or when
/// the scheme changes and the port was the old scheme's default (Envoy's
/// `processRequestHost`).
fn request_host<'a>(authority: &'a str, scheme: &str, new_scheme: &str, new_port: &str) -> &'a str {
    let port_start = if authority.starts_with('[') {
        authority.rfind("]:").map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    let Some(start) = port_start else {
        return authority;
    };
    let port = &authority[start..];
    let default_port = (scheme == "https" && port == ":443") || (scheme == "http" && port == ":80");
    if !new_port.is_empty() || (new_scheme != scheme && default_port) {
        &authority[..start]
    } else {
        authority
    }
}

/// The `Location` of a redirect, by Envoy's rules: scheme from the redirect or the request;
/// `host_redirect` replaces the whole authority (the request's port is not kept), otherwise
/// the request's host keeps its port unless `port_redirect` is set or the scheme changes away
/// from a default port; `port_redirect` is appended; `path_redirect` replaces the path (and
/// the query too if it has one, which `strip_query` then leaves alone), otherwise a prefix or
/// regex rewrite applies to the request path; `strip_query` drops the query.
pub fn redirect_location(
    r: &Redirect,
    matched: &RouteMatch,
    scheme: &str,
    authority: &str,
    path_and_query: &str,
) -> String {
    let new_scheme = r.scheme.as_deref().unwrap_or(scheme);
    let port = r.port.map(|p| format!(":{p}")).unwrap_or_default();
    let host = match &r.host {
        Some(h) => h.as_str(),
        None => request_host(authority, scheme, new_scheme, &port),
    };
    let (path, query) = split(path_and_query);
    let redirect_has_query = r.path.as_deref().is_some_and(|p| p.contains('?'));
    let mut new_path = match &r.path {
        Some(p) if redirect_has_query => p.clone(),
        Some(p) => format!("{p}{query}"),
        None => {
            rewrite(
                r.prefix_rewrite.as_deref(),
                r.regex_rewrite.as_ref(),
                matched,
                path,
            )
            .unwrap_or_else(|| path.to_owned())
                + query
        }
    };
    if !new_path.starts_with('/') {
        new_path.insert(0, '/');
    }
    if r.strip_query
        && !redirect_has_query
        && let Some(q) = new_path.find('?')
    {
        new_path.truncate(q);
    }
    format!("{new_scheme}://{host}{port}{new_path}")
}
