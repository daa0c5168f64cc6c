//! The pure part of inbound CONNECT handling: is this request well-formed, and what does it
//! target? Everything that fails here is answered `400`.

use http::{Method, Request};

use crate::headers::{Authority, parse_authority};

/// Why a request is a `400`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    #[error("method {0} is not CONNECT")]
    Method(String),
    #[error("CONNECT must not carry :scheme or :path")]
    PseudoHeaders,
    #[error("request headers are {size} bytes, over the {limit}-byte limit")]
    HeadersTooLarge { size: usize, limit: usize },
    #[error("{0}")]
    Authority(String),
}

/// Header bytes as HPACK counts them (name + value + 32 per field).
fn header_list_size<B>(req: &Request<B>) -> usize {
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 32)
        .sum()
}

/// Validates an inbound request and parses its authority.
pub fn validate_connect<B>(
    req: &Request<B>,
    max_header_bytes: usize,
) -> Result<Authority, BadRequest> {
    if req.method() != Method::CONNECT {
        return Err(BadRequest::Method(
            req.method().as_str().chars().take(32).collect(),
        ));
    }
    if req.uri().scheme().is_some()
        || req
            .uri()
            .path_and_query()
            .is_some_and(|p| !p.as_str().is_empty())
    {
        return Err(BadRequest::PseudoHeaders);
    }
    let size = header_list_size(req);
    if size > max_header_bytes {
        return Err(BadRequest::HeadersTooLarge {
            size,
            limit: max_header_bytes,
        });
    }
    let authority = req
        .uri()
        .authority()
        .ok_or_else(|| BadRequest::Authority("missing :authority".into()))?;
    parse_authority(authority.as_str()).map_err(|e| BadRequest::Authority(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    #[test]
    fn table() {
        let ok = validate_connect(&req(Method::CONNECT, "10.0.0.1:80"), 1024);
        assert_eq!(ok.unwrap().to_string(), "10.0.0.1:80");
        assert!(
            validate_connect(&req(Method::CONNECT, "svc.ns.svc.cluster.local:80"), 1024).is_ok()
        );
        assert!(matches!(
            validate_connect(&req(Method::GET, "http://10.0.0.1:80/"), 1024),
            Err(BadRequest::Method(_))
        ));
        assert!(matches!(
            validate_connect(&req(Method::CONNECT, "http://10.0.0.1:80/x"), 1024),
            Err(BadRequest::PseudoHeaders)
        ));
        assert!(matches!(
            validate_connect(&req(Method::CONNECT, "10.0.0.1:0"), 1024),
            Err(BadRequest::Authority(_))
        ));
        let mut big = req(Method::CONNECT, "10.0.0.1:80");
        big.headers_mut()
            .insert("x-big", "a".repeat(2000).parse().unwrap());
        assert!(matches!(
            validate_connect(&big, 1024),
            Err(BadRequest::HeadersTooLarge { .. })
        ));
    }
}
