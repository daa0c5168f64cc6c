//! One HTTPRoute/GRPCRoute match → an Envoy `RouteMatch`, and the key that orders matches.
//!
//! GRPCRoute method matches become path matches: service and method → exact
//! `/<service>/<method>`; service only → prefix `/<service>/`; method only or regular
//! expressions → a regex over the path. HTTPRoute `PathPrefix` matches whole path elements
//! (`/foo` matches `/foo` and `/foo/bar`, not `/foobar`): Envoy gets `path_separated_prefix`,
//! gRPC (which lacks it) gets `prefix` with a trailing `/`.

use std::cmp::Reverse;

use xds::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RouteMatch, header_matcher::HeaderMatchSpecifier,
    query_parameter_matcher::QueryParameterMatchSpecifier, route_match::PathSpecifier,
};
use xds::pb::envoy::r#type::matcher::v3::StringMatcher;

use super::Client;
use crate::manifest::gateway::{
    GrpcRouteMatch, HttpRouteMatch, PathMatchType, ValueMatch, ValueMatchType,
};
use crate::translate::envoy::{exact, regex, regex_matcher};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PathSpec {
    Exact(String),
    /// Gateway API `PathPrefix`: whole path elements.
    Prefix(String),
    /// A plain string prefix (gRPC service matches).
    RawPrefix(String),
    Regex(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct MatchSpec {
    pub path: PathSpec,
    pub headers: Vec<ValueMatch>,
    pub query: Vec<ValueMatch>,
    pub method: Option<String>,
}

/// The order of matches, most specific first (Gateway API precedence): exact paths, then
/// regular expressions, then prefixes, each longest first; then matches with a method; then more
/// header matches; then more query parameter matches.
pub(super) type SortKey = (
    u8,
    Reverse<usize>,
    Reverse<bool>,
    Reverse<usize>,
    Reverse<usize>,
);

impl MatchSpec {
    /// Every request (`PathPrefix /`).
    pub(super) fn any() -> Self {
        MatchSpec {
            path: PathSpec::Prefix("/".into()),
            headers: Vec::new(),
            query: Vec::new(),
            method: None,
        }
    }

    pub(super) fn from_http(m: &HttpRouteMatch) -> Self {
        let path = match &m.path {
            None => PathSpec::Prefix("/".into()),
            Some(p) => match p.kind {
                PathMatchType::Exact => PathSpec::Exact(p.value.clone()),
                PathMatchType::PathPrefix => PathSpec::Prefix(p.value.clone()),
                PathMatchType::RegularExpression => PathSpec::Regex(p.value.clone()),
            },
        };
        MatchSpec {
            path,
            headers: m.headers.clone(),
            query: m.query_params.clone(),
            method: m.method.clone(),
        }
    }

    pub(super) fn from_grpc(m: &GrpcRouteMatch) -> Self {
        let any = "[^/]+".to_owned();
        let path = match &m.method {
            None => PathSpec::Prefix("/".into()),
            Some(g) => match (g.kind, &g.service, &g.method) {
                (ValueMatchType::Exact, Some(s), Some(m)) => PathSpec::Exact(format!("/{s}/{m}")),
                (ValueMatchType::Exact, Some(s), None) => PathSpec::RawPrefix(format!("/{s}/")),
                (ValueMatchType::Exact, None, m) => PathSpec::Regex(format!(
                    "/{any}/{}",
                    m.as_deref().map_or(any.clone(), regex::escape)
                )),
                (ValueMatchType::RegularExpression, s, m) => PathSpec::Regex(format!(
                    "/{}/{}",
                    s.clone().unwrap_or_else(|| any.clone()),
                    m.clone().unwrap_or_else(|| any.clone())
                )),
            },
        };
        MatchSpec {
            path,
            headers: m.headers.clone(),
            query: Vec::new(),
            method: None,
        }
    }

    pub(super) fn sort_key(&self) -> SortKey {
        let (rank, len) = match &self.path {
            PathSpec::Exact(p) => (0, p.len()),
            PathSpec::Regex(p) => (1, p.len()),
            PathSpec::Prefix(p) | PathSpec::RawPrefix(p) => (2, p.len()),
        };
        (
            rank,
            Reverse(len),
            Reverse(self.method.is_some()),
            Reverse(self.headers.len()),
            Reverse(self.query.len()),
        )
    }

    /// The matched prefix of a prefix match, without a trailing `/` (`""` for `/`).
    pub(super) fn prefix(&self) -> Option<&str> {
        match &self.path {
            PathSpec::Prefix(p) | PathSpec::RawPrefix(p) => Some(p.trim_end_matches('/')),
            _ => None,
        }
    }

    pub(super) fn to_envoy(&self, client: Client) -> RouteMatch {
        let path = match &self.path {
            PathSpec::Exact(p) => PathSpecifier::Path(p.clone()),
            PathSpec::Regex(r) => PathSpecifier::SafeRegex(regex_matcher(r)),
            PathSpec::RawPrefix(p) => PathSpecifier::Prefix(p.clone()),
            PathSpec::Prefix(p) => {
                let trimmed = p.trim_end_matches('/');
                match client {
                    _ if trimmed.is_empty() => PathSpecifier::Prefix("/".into()),
                    Client::Envoy => PathSpecifier::PathSeparatedPrefix(trimmed.into()),
                    Client::Grpc => PathSpecifier::Prefix(format!("{trimmed}/")),
                }
            }
        };
        let mut headers: Vec<HeaderMatcher> = self
            .headers
            .iter()
            .map(|h| header(&h.name.to_ascii_lowercase(), value_matcher(h)))
            .collect();
        if let Some(m) = &self.method {
            headers.push(header(":method", exact(m)));
        }
        RouteMatch {
            path_specifier: Some(path),
            headers,
            query_parameters: self
                .query
                .iter()
                .map(|q| QueryParameterMatcher {
                    name: q.name.clone(),
                    query_parameter_match_specifier: Some(
                        QueryParameterMatchSpecifier::StringMatch(value_matcher(q)),
                    ),
                })
                .collect(),
            ..RouteMatch::default()
        }
    }
}

fn value_matcher(v: &ValueMatch) -> StringMatcher {
    match v.kind {
        ValueMatchType::Exact => exact(&v.value),
        ValueMatchType::RegularExpression => regex(&v.value),
    }
}

fn header(name: &str, m: StringMatcher) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_owned(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(m)),
        ..HeaderMatcher::default()
    }
}
