//! Responses the waypoint makes itself (Envoy's local replies): denials, no route, no upstream,
//! timeouts, redirects and direct responses. A gRPC request gets a trailers-only gRPC answer
//! (HTTP 200 with `grpc-status`/`grpc-message`), mapped as Envoy maps HTTP codes.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{ProxyBody, empty, full};
use crate::model::{AbortStatus, HeaderChanges, action};

/// Why the waypoint answered itself.
#[derive(Debug, Clone, PartialEq)]
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
    /// A circuit breaker is open (max requests, pending requests or connections): 503 with
    /// `x-envoy-overloaded: true` (`UO`).
    Overflow,
    /// A fault-injection abort (`FI`).
    FaultAbort(AbortStatus),
    /// The local rate limit's bucket is empty: its status (429 by default), the gRPC code for
    /// gRPC requests, and its extra response headers (`RL`).
    RateLimited {
        status: StatusCode,
        grpc_code: u16,
        headers: HeaderChanges,
    },
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
            | LocalReply::UpstreamFailure { .. }
            | LocalReply::Overflow => StatusCode::SERVICE_UNAVAILABLE,
            LocalReply::Timeout => StatusCode::GATEWAY_TIMEOUT,
            LocalReply::FaultAbort(AbortStatus::Http(s)) => *s,
            LocalReply::FaultAbort(AbortStatus::Grpc(code)) => http_status(*code),
            LocalReply::RateLimited { status, .. } => *status,
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
            LocalReply::Overflow => Some("UO"),
            LocalReply::FaultAbort(_) => Some("FI"),
            LocalReply::RateLimited { .. } => Some("RL"),
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
            LocalReply::Overflow => Bytes::from_static(
                b"upstream connect error or disconnect/reset before headers. reset reason: overflow",
            ),
            LocalReply::FaultAbort(_) => Bytes::from_static(b"fault filter abort"),
            LocalReply::RateLimited { .. } => Bytes::from_static(b"local_rate_limited"),
            LocalReply::Direct { body, .. } => body.clone(),
        }
    }

    /// The gRPC status of this reply to a gRPC request.
    fn grpc_code(&self) -> u16 {
        match self {
            LocalReply::FaultAbort(AbortStatus::Grpc(code)) => u16::try_from(*code).unwrap_or(2),
            LocalReply::RateLimited { grpc_code, .. } => *grpc_code,
            _ => grpc_status(self.status()),
        }
    }

    /// Headers this reply carries whatever the protocol.
    fn extra_headers(&self, h: &mut http::HeaderMap) {
        match self {
            LocalReply::Overflow => {
                h.insert("x-envoy-overloaded", HeaderValue::from_static("true"));
            }
            LocalReply::RateLimited { headers, .. } => action::apply_headers(headers, h),
            _ => {}
        }
    }

    /// The response, as HTTP or as a gRPC status.
    pub fn response(&self, grpc: bool) -> Response<ProxyBody> {
        let r = self.response_inner(grpc);
        let (mut parts, body) = r.into_parts();
        self.extra_headers(&mut parts.headers);
        Response::from_parts(parts, body)
    }

    fn response_inner(&self, grpc: bool) -> Response<ProxyBody> {
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
            h.insert("grpc-status", HeaderValue::from(self.grpc_code()));
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

/// The HTTP status for a gRPC code, for a gRPC abort fault answered to a non-gRPC request
/// (the gRPC-over-HTTP mapping, reversed).
pub fn http_status(grpc: u32) -> StatusCode {
    match grpc {
        0 => StatusCode::OK,
        3 | 9 | 11 => StatusCode::BAD_REQUEST,
        4 => StatusCode::GATEWAY_TIMEOUT,
        5 => StatusCode::NOT_FOUND,
        6 | 10 => StatusCode::CONFLICT,
        7 => StatusCode::FORBIDDEN,
        8 => StatusCode::TOO_MANY_REQUESTS,
        12 => StatusCode::NOT_IMPLEMENTED,
        14 => StatusCode::SERVICE_UNAVAILABLE,
        16 => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
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
    fn overflow_fault_and_rate_limit_replies() {
        let r = LocalReply::Overflow.response(false);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["x-envoy-overloaded"], "true");
        assert_eq!(LocalReply::Overflow.flag(), Some("UO"));
        let abort = LocalReply::FaultAbort(AbortStatus::Grpc(14));
        assert_eq!(abort.response(true).headers()["grpc-status"], "14");
        assert_eq!(abort.response(false).status(), 503);
        let abort = LocalReply::FaultAbort(AbortStatus::Http(StatusCode::IM_A_TEAPOT));
        assert_eq!(abort.response(false).status(), 418);
        assert_eq!(abort.flag(), Some("FI"));
        let mut headers = HeaderChanges::default();
        headers.add.push((
            http::HeaderName::from_static("x-limited"),
            HeaderValue::from_static("yes"),
            false,
        ));
        let limited = LocalReply::RateLimited {
            status: StatusCode::TOO_MANY_REQUESTS,
            grpc_code: 8,
            headers,
        };
        let r = limited.response(false);
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers()["x-limited"], "yes");
        assert_eq!(limited.response(true).headers()["grpc-status"], "8");
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
