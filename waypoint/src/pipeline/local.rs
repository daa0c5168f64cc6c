//! Responses the waypoint makes itself (Envoy's local replies): denials, no route, no upstream,
//! timeouts, redirects and direct responses. A gRPC request gets a trailers-only gRPC answer
//! (HTTP 200 with `grpc-status`/`grpc-message`), mapped as Envoy maps HTTP codes.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{ProxyBody, empty, full};

/// Why the waypoint answered itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalReply {
    /// RBAC denied: 403 `RBAC: access denied` (no response flag, as Envoy; the access log names
    /// the policy).
    Denied,
    /// A malformed request (e.g. an unusable Host) or a body that failed to arrive: 400 (`DPE`).
    BadRequest(String),
    /// No virtual host or route matched: 404 (`NR`).
    NoRoute,
    /// The route's cluster is unknown: 503 (`NC`).
    NoCluster,
    /// No healthy endpoint: 503 `no healthy upstream` (`UH`).
    NoHealthyUpstream,
    /// Connect failure (`UF`) or reset before headers (`UR`); with `URX` when retries ran out: 503.
    UpstreamFailure { reason: String, flag: &'static str },
    /// The route timeout passed: 504 `upstream request timeout` (`UT`).
    Timeout,
    /// A redirect route.
    Redirect {
        status: StatusCode,
        location: String,
    },
    /// A direct-response route.
    Direct { status: StatusCode, body: Bytes },
}

impl LocalReply {
    pub fn status(&self) -> StatusCode {
        match self {
            LocalReply::Denied => StatusCode::FORBIDDEN,
            LocalReply::BadRequest(_) => StatusCode::BAD_REQUEST,
            LocalReply::NoRoute => StatusCode::NOT_FOUND,
            LocalReply::NoCluster
            | LocalReply::NoHealthyUpstream
            | LocalReply::UpstreamFailure { .. } => StatusCode::SERVICE_UNAVAILABLE,
            LocalReply::Timeout => StatusCode::GATEWAY_TIMEOUT,
            LocalReply::Redirect { status, .. } | LocalReply::Direct { status, .. } => *status,
        }
    }

    /// Envoy's `response_flags` value, if any.
    pub fn flag(&self) -> Option<&'static str> {
        match self {
            LocalReply::Denied => None,
            LocalReply::BadRequest(_) => Some("DPE"),
            LocalReply::NoRoute => Some("NR"),
            LocalReply::NoCluster => Some("NC"),
            LocalReply::NoHealthyUpstream => Some("UH"),
            LocalReply::UpstreamFailure { flag, .. } => Some(flag),
            LocalReply::Timeout => Some("UT"),
            LocalReply::Redirect { .. } | LocalReply::Direct { .. } => None,
        }
    }

    fn body(&self) -> Bytes {
        match self {
            LocalReply::Denied => Bytes::from_static(b"RBAC: access denied"),
            LocalReply::NoRoute | LocalReply::Redirect { .. } => Bytes::new(),
            LocalReply::NoCluster => Bytes::from_static(b"cluster not found"),
            LocalReply::NoHealthyUpstream => Bytes::from_static(b"no healthy upstream"),
            LocalReply::BadRequest(why) => Bytes::from(format!("bad request: {why}")),
            LocalReply::UpstreamFailure { reason, .. } => Bytes::from(format!(
                "upstream connect error or disconnect/reset before headers. reset reason: {reason}"
            )),
            LocalReply::Timeout => Bytes::from_static(b"upstream request timeout"),
            LocalReply::Direct { body, .. } => body.clone(),
        }
    }

    /// The response, as HTTP or as a gRPC status.
    pub fn response(&self, grpc: bool) -> Response<ProxyBody> {
        let status = self.status();
        let mut r = Response::new(empty());
        if grpc
            && !matches!(
                self,
                LocalReply::Redirect { .. } | LocalReply::Direct { .. }
            )
        {
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert("grpc-status", HeaderValue::from(grpc_status(status)));
            if let Ok(v) = HeaderValue::from_bytes(&percent_encode(&self.body())) {
                h.insert("grpc-message", v);
            }
            return r;
        }
        *r.status_mut() = status;
        let body = self.body();
        if let LocalReply::Redirect { location, .. } = self
            && let Ok(v) = HeaderValue::from_str(location)
        {
            r.headers_mut().insert(header::LOCATION, v);
        }
        if !body.is_empty() {
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        *r.body_mut() = full(body);
        r
    }
}

/// Envoy's HTTP → gRPC status mapping for local replies.
pub fn grpc_status(status: StatusCode) -> u16 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

fn percent_encode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    for &c in b {
        if (0x20..0x7f).contains(&c) && c != b'%' {
            out.push(c);
        } else {
            out.extend_from_slice(format!("%{c:02X}").as_bytes());
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn denial_is_403_with_a_body() {
        let r = LocalReply::Denied.response(false);
        assert_eq!(r.status(), 403);
        let b = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(b, "RBAC: access denied");
    }

    #[test]
    fn grpc_gets_a_status_not_an_http_code() {
        let r = LocalReply::Timeout.response(true);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["grpc-message"], "upstream request timeout");
        let r = LocalReply::Denied.response(true);
        assert_eq!(r.headers()["grpc-status"], "7");
    }

    #[test]
    fn redirect_sets_location() {
        let r = LocalReply::Redirect {
            status: StatusCode::MOVED_PERMANENTLY,
            location: "http://x/y".into(),
        }
        .response(false);
        assert_eq!(r.status(), 301);
        assert_eq!(r.headers()["location"], "http://x/y");
    }
}
