//! Envoy's request matchers over a [`RequestView`]: string matchers, header matchers (with the
//! pseudo-headers), path and query parameter matches. Shared by route selection and RBAC.

use std::borrow::Cow;

use crate::model::{HeaderMatch, PathMatch, QueryMatch, RequestView, RouteMatch, StringMatch};

/// The scheme the waypoint reports for `:scheme` (HTTP inside the tunnel).
pub const SCHEME: &str = "http";

/// `path_and_query` without the query (and fragment).
pub fn path_only(path_and_query: &str) -> &str {
    let end = path_and_query
        .find(['?', '#'])
        .unwrap_or(path_and_query.len());
    &path_and_query[..end]
}

/// The value of the first query parameter called `name` (`""` for a bare `name`), compared
/// without percent-decoding, as written.
pub fn query_param<'a>(path_and_query: &'a str, name: &str) -> Option<&'a str> {
    let query = path_and_query.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if pair == name => Some(""),
            _ => None,
        })
}

/// A request header as Envoy's header matchers see it: the pseudo-headers `:method`, `:path`
/// (with the query), `:authority` (also for `host`, which Envoy folds into `:authority`) and
/// `:scheme` (always `http`); other headers with all their values joined by `,`. `None` when
/// absent. Non-UTF-8 bytes are replaced.
pub fn header_value<'a>(req: &RequestView<'a>, name: &str) -> Option<Cow<'a, str>> {
    match name {
        ":method" => return Some(Cow::Borrowed(req.method.as_str())),
        ":path" => return Some(Cow::Borrowed(req.path_and_query)),
        ":authority" | "host" => return Some(Cow::Borrowed(req.authority)),
        ":scheme" => return Some(Cow::Borrowed(SCHEME)),
        _ if name.starts_with(':') => return None,
        _ => {}
    }
    let mut values = req.headers.get_all(name).iter();
    let first = values.next()?;
    let mut out = String::from_utf8_lossy(first.as_bytes());
    for v in values {
        let joined = out.to_mut();
        joined.push(',');
        joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    Some(out)
}

fn starts_with(s: &str, prefix: &str, ignore_case: bool) -> bool {
    match s.get(..prefix.len()) {
        Some(head) if ignore_case => head.eq_ignore_ascii_case(prefix),
        Some(head) => head == prefix,
        None => false,
    }
}

fn ends_with(s: &str, suffix: &str, ignore_case: bool) -> bool {
    let Some(start) = s.len().checked_sub(suffix.len()) else {
        return false;
    };
    match s.get(start..) {
        Some(tail) if ignore_case => tail.eq_ignore_ascii_case(suffix),
        Some(tail) => tail == suffix,
        None => false,
    }
}

fn contains(s: &str, needle: &str, ignore_case: bool) -> bool {
    if ignore_case {
        s.to_ascii_lowercase()
            .contains(&needle.to_ascii_lowercase())
    } else {
        s.contains(needle)
    }
}

impl StringMatch {
    /// Envoy's `StringMatcher` on `value` (`ignore_case` is ASCII; regexes match the whole
    /// value). `Present` matches any value.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact {
                value: v,
                ignore_case,
            } => {
                if *ignore_case {
                    value.eq_ignore_ascii_case(v)
                } else {
                    value == v
                }
            }
            StringMatch::Prefix {
                value: v,
                ignore_case,
            } => starts_with(value, v, *ignore_case),
            StringMatch::Suffix {
                value: v,
                ignore_case,
            } => ends_with(value, v, *ignore_case),
            StringMatch::Contains {
                value: v,
                ignore_case,
            } => contains(value, v, *ignore_case),
            StringMatch::Regex(re) => re.compiled.is_match(value),
            StringMatch::Present => true,
        }
    }
}

impl HeaderMatch {
    /// Envoy's `HeaderMatcher`: an absent header matches only an inverted presence match
    /// (unless `missing_as_empty`, which matches `""` instead); otherwise the value matcher,
    /// inverted by `invert`.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let value = match header_value(req, &self.name) {
            Some(v) => v,
            None if self.missing_as_empty => Cow::Borrowed(""),
            None => return self.invert && self.value == StringMatch::Present,
        };
        self.value.matches(&value) != self.invert
    }
}

impl QueryMatch {
    /// The first parameter called `name` exists and (if given) its value matches.
    pub fn matches(&self, path_and_query: &str) -> bool {
        match (query_param(path_and_query, &self.name), &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(v), Some(m)) => m.matches(v),
        }
    }
}

impl PathMatch {
    /// Matches `path` (without the query); prefix, segment prefix and exact honour
    /// `case_sensitive`, regexes match the whole path.
    pub fn matches(&self, path: &str, case_sensitive: bool) -> bool {
        let ignore_case = !case_sensitive;
        match self {
            PathMatch::Any => true,
            PathMatch::Prefix(p) => starts_with(path, p, ignore_case),
            PathMatch::SegmentPrefix(p) => {
                starts_with(path, p, ignore_case)
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            }
            PathMatch::Exact(p) if ignore_case => path.eq_ignore_ascii_case(p),
            PathMatch::Exact(p) => path == p,
            PathMatch::Regex(re) => re.compiled.is_match(path),
        }
    }
}

/// `content-type` is `application/grpc`, or `application/grpc+…` / `application/grpc;…`
/// (Envoy's `Grpc::Common::hasGrpcContentType`).
pub fn is_grpc(req: &RequestView<'_>) -> bool {
    let Some(ct) = req.headers.get(http::header::CONTENT_TYPE) else {
        return false;
    };
    let ct = ct.as_bytes();
    let base = b"application/grpc";
    ct.len() >= base.len()
        && ct[..base.len()].eq_ignore_ascii_case(base)
        && matches!(ct.get(base.len()), None | Some(b'+' | b';'))
}

impl RouteMatch {
    /// Path, then every header matcher, every query matcher and the gRPC condition.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.path
            .matches(path_only(req.path_and_query), self.case_sensitive)
            && self.headers.iter().all(|h| h.matches(req))
            && self.query.iter().all(|q| q.matches(req.path_and_query))
            && (!self.grpc || is_grpc(req))
    }
}
