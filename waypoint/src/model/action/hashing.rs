//! The request hash for consistent-hash load balancing (Envoy's `HashPolicyImpl`): each policy
//! that yields a value contributes `xxh64(value)`, combined as `rotl(h, 1) ^ new`; a `terminal`
//! policy that left a hash stops the rest.

use std::time::Duration;

use http::HeaderValue;

use crate::model::hash::{xxh64, xxh64_chain};
use crate::model::select::{header_value, query_param};
use crate::model::{ConnectionView, HashPolicy, RequestView};

/// A request's hash, and the cookie to set on the response when a cookie policy generated one.
#[derive(Debug, Clone, PartialEq)]
pub struct HashOutcome {
    pub hash: u64,
    /// `Set-Cookie` value to add to the response.
    pub set_cookie: Option<HeaderValue>,
}

/// The hash of a request under `policies`; `None` when no policy yields a value.
pub fn hash_key(
    policies: &[HashPolicy],
    req: &RequestView<'_>,
    conn: &ConnectionView<'_>,
) -> Option<HashOutcome> {
    let mut hash: Option<u64> = None;
    let mut set_cookie = None;
    for p in policies {
        let (value, terminal) = match p {
            HashPolicy::Header { name, terminal } => (header_hash(req, name), *terminal),
            HashPolicy::SourceIp { terminal } => (
                Some(xxh64(
                    conn.remote_ip.to_canonical().to_string().as_bytes(),
                    0,
                )),
                *terminal,
            ),
            HashPolicy::QueryParameter { name, terminal } => (
                query_param(req.path_and_query, name).map(|v| xxh64(v.as_bytes(), 0)),
                *terminal,
            ),
            HashPolicy::Cookie {
                name,
                ttl,
                path,
                terminal,
            } => {
                let value = match cookie(req, name) {
                    Some(v) => Some(xxh64(v.as_bytes(), 0)),
                    None => ttl.map(|ttl| {
                        let (value, header) = new_cookie(req, conn, name, path.as_deref(), ttl);
                        if set_cookie.is_none() {
                            set_cookie = header;
                        }
                        xxh64(value.as_bytes(), 0)
                    }),
                };
                (value, *terminal)
            }
        };
        if let Some(v) = value {
            hash = Some(hash.map_or(0, |h| h.rotate_left(1)) ^ v);
        }
        if terminal && hash.is_some() {
            break;
        }
    }
    hash.map(|hash| HashOutcome { hash, set_cookie })
}

/// A header's values sorted then hashed in chain (so value order does not matter, as in
/// Envoy); pseudo-headers as in route matching.
fn header_hash(req: &RequestView<'_>, name: &str) -> Option<u64> {
    if name.starts_with(':') || name == "host" {
        return header_value(req, name).map(|v| xxh64(v.as_bytes(), 0));
    }
    let mut values: Vec<&[u8]> = req
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(xxh64_chain(values))
}

/// The value of cookie `name` in the request's `Cookie` headers (surrounding quotes removed).
fn cookie(req: &RequestView<'_>, name: &str) -> Option<String> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| {
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
                    .to_owned()
            })
        })
}

/// A cookie value derived from the client address and authority (stable for a client), and
/// the `Set-Cookie` header carrying it: `name="value"; Max-Age=<ttl>; Path=<path>; HttpOnly`
/// (no `Max-Age` for a zero ttl, as in Envoy). The header is `None` if `name` or `path` make
/// it invalid.
fn new_cookie(
    req: &RequestView<'_>,
    conn: &ConnectionView<'_>,
    name: &str,
    path: Option<&str>,
    ttl: Duration,
) -> (String, Option<HeaderValue>) {
    let seed = format!("{}|{}", conn.remote_ip.to_canonical(), req.authority);
    let value = format!("{:016x}", xxh64(seed.as_bytes(), 0));
    let mut header = format!("{name}=\"{value}\"");
    if ttl.as_secs() > 0 {
        header.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(p) = path {
        header.push_str(&format!("; Path={p}"));
    }
    header.push_str("; HttpOnly");
    (value, HeaderValue::from_str(&header).ok())
}
