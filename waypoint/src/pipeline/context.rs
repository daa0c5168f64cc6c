//! What one connection and one request carry through the pipeline: the downstream (who is
//! calling, where they meant to go) and the request context every phase writes into and the log
//! phase reads (route, cluster, endpoint, attempts, flags, RBAC verdict).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use hbone::Identity;
use hbone::headers::{Baggage, TraceParent, parse_traceparent};
use http::{HeaderMap, HeaderValue, Method, Version};

use crate::model::{ConnectionView, Endpoint, RequestView};
use crate::telemetry::TrafficLabels;

/// One downstream connection.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The client's SPIFFE identity (HBONE peer certificate); `None` for plain listeners.
    pub peer_identity: Option<Identity>,
    /// The client's address (the HBONE peer: the source pod; or the TCP peer).
    pub remote: SocketAddr,
    /// Where the client was going: the CONNECT authority (`VIP:port` or `podIP:port`), or the
    /// plain listener's local address.
    pub destination: SocketAddr,
    /// The source workload as the client's tunnel described it (`baggage`).
    pub baggage: Option<Baggage>,
    /// Arrived over HBONE (mutual TLS).
    pub mtls: bool,
}

impl Downstream {
    pub fn view(&self) -> ConnectionView<'_> {
        ConnectionView {
            peer_identity: self.peer_identity.as_ref(),
            remote_ip: self.remote.ip(),
            destination: self.destination,
        }
    }

    /// The source half of the Istio labels.
    pub fn source_labels(&self, l: &mut TrafficLabels) {
        if let Some(id) = &self.peer_identity {
            l.source_principal = id.to_string();
            id.namespace().clone_into(&mut l.source_workload_namespace);
        }
        if let Some(b) = &self.baggage {
            l.source_workload.clone_from(&b.workload_name);
            if !b.namespace.is_empty() {
                l.source_workload_namespace.clone_from(&b.namespace);
            }
            l.source_canonical_service.clone_from(&b.service_name);
            l.source_canonical_revision.clone_from(&b.service_version);
            l.source_app.clone_from(&b.service_name);
            l.source_version.clone_from(&b.service_version);
            l.source_cluster.clone_from(&b.cluster_id);
        }
        l.connection_security_policy = if self.mtls { "mutual_tls" } else { "none" }.into();
    }
}

/// Per-request state, filled phase by phase.
#[derive(Debug)]
pub struct RequestContext {
    pub down: Arc<Downstream>,
    pub started: Instant,
    pub start_time: SystemTime,
    pub method: Method,
    pub path: String,
    pub authority: String,
    pub version: Version,
    pub grpc: bool,
    pub request_id: String,
    /// The traceparent sent upstream (a child of the client's, or a new trace).
    pub traceparent: String,
    pub route: Option<String>,
    pub cluster: Option<String>,
    pub endpoint: Option<Endpoint>,
    pub attempts: u32,
    pub flags: Vec<&'static str>,
    pub rbac_policy: Option<String>,
    /// The rate-limit bucket's answer, for `x-ratelimit-*` response headers.
    pub rate_limit: Option<crate::model::rate_limit::Verdict>,
    pub request_bytes: Arc<std::sync::atomic::AtomicU64>,
}

fn random_hex(bytes: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

impl RequestContext {
    /// The accept phase: what the request is, its id and its trace context.
    pub fn accept(down: Arc<Downstream>, parts: &http::request::Parts) -> Self {
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let grpc = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map_or_else(|| random_hex(16), str::to_owned);
        let parent = parts
            .headers
            .get(hbone::headers::names::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_traceparent(v).ok());
        let mut span = TraceParent::random();
        if let Some(p) = parent {
            span.trace_id = p.trace_id;
            span.flags = p.flags;
        }
        Self {
            down,
            started: Instant::now(),
            start_time: SystemTime::now(),
            method: parts.method.clone(),
            path: super::normalize::normalize(
                parts.uri.path_and_query().map_or("/", |p| p.as_str()),
            ),
            authority,
            version: parts.version,
            grpc,
            request_id,
            traceparent: span.to_string(),
            route: None,
            cluster: None,
            endpoint: None,
            attempts: 0,
            flags: Vec::new(),
            rbac_policy: None,
            rate_limit: None,
            request_bytes: Arc::default(),
        }
    }

    pub fn view<'a>(&'a self, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            method: &self.method,
            path_and_query: &self.path,
            authority: &self.authority,
            headers,
        }
    }

    /// `HTTP/1.1`, `HTTP/2`, … as Envoy's `%PROTOCOL%`.
    pub fn protocol(&self) -> &'static str {
        match self.version {
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
    }

    /// The headers this request adds upstream: `x-request-id`, `traceparent`, `x-forwarded-proto`.
    pub fn tracing_headers(&self, headers: &mut HeaderMap) {
        let mut set = |name: &'static str, v: &str| {
            if let Ok(v) = HeaderValue::from_str(v) {
                headers.insert(name, v);
            }
        };
        set("x-request-id", &self.request_id);
        set(hbone::headers::names::TRACEPARENT, &self.traceparent);
        set("x-forwarded-proto", "http");
    }

    /// Istio labels for this request.
    pub fn labels(&self, status: u16, grpc_status: Option<&str>) -> TrafficLabels {
        let mut l = TrafficLabels::default();
        self.down.source_labels(&mut l);
        if let Some(cluster) = &self.cluster {
            destination_service(cluster, &mut l);
        }
        if let Some(ep) = &self.endpoint {
            if let Some(id) = &ep.identity {
                l.destination_principal = id.to_string();
                id.namespace()
                    .clone_into(&mut l.destination_workload_namespace);
            }
            if let Some(uid) = &ep.workload {
                // `<cluster>//Pod/<ns>/<name>`: the pod name stands in for the workload name.
                if let Some(name) = uid.rsplit('/').next() {
                    name.clone_into(&mut l.destination_workload);
                }
            }
        }
        l.request_protocol = if self.grpc { "grpc" } else { "http" }.into();
        l.response_code = status.to_string();
        l.grpc_response_status = grpc_status.unwrap_or_default().to_owned();
        l.response_flags = self.flags.join(",");
        l.finish()
    }
}

/// `outbound|<port>|<subset>|<host>` → the destination service labels.
fn destination_service(cluster: &str, l: &mut TrafficLabels) {
    let Some(host) = cluster.split('|').nth(3) else {
        return;
    };
    host.clone_into(&mut l.destination_service);
    let mut parts = host.split('.');
    if let (Some(name), Some(ns)) = (parts.next(), parts.next()) {
        name.clone_into(&mut l.destination_service_name);
        ns.clone_into(&mut l.destination_service_namespace);
        name.clone_into(&mut l.destination_canonical_service);
        name.clone_into(&mut l.destination_app);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn down() -> Arc<Downstream> {
        Arc::new(Downstream {
            peer_identity: Some("spiffe://cluster.local/ns/demo/sa/client".parse().unwrap()),
            remote: "10.244.0.5:40000".parse().unwrap(),
            destination: "10.96.0.10:80".parse().unwrap(),
            baggage: None,
            mtls: true,
        })
    }

    #[test]
    fn a_client_trace_is_continued_with_a_new_span() {
        let req = http::Request::builder()
            .uri("/x?y=1")
            .header("host", "backend")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let ctx = RequestContext::accept(down(), &parts);
        assert!(
            ctx.traceparent
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
        assert!(!ctx.traceparent.contains("00f067aa0ba902b7"));
        assert!(ctx.traceparent.ends_with("-01"));
        assert_eq!(ctx.path, "/x?y=1");
        assert_eq!(ctx.authority, "backend");
        assert_eq!(ctx.request_id.len(), 32);
    }

    #[test]
    fn labels_name_both_sides() {
        let (parts, ()) = http::Request::builder()
            .uri("/")
            .body(())
            .unwrap()
            .into_parts();
        let mut ctx = RequestContext::accept(down(), &parts);
        ctx.cluster = Some("outbound|80||backend.demo.svc.cluster.local".into());
        let l = ctx.labels(200, None);
        assert_eq!(
            l.source_principal,
            "spiffe://cluster.local/ns/demo/sa/client"
        );
        assert_eq!(l.destination_service, "backend.demo.svc.cluster.local");
        assert_eq!(l.destination_service_name, "backend");
        assert_eq!(l.destination_service_namespace, "demo");
        assert_eq!(l.connection_security_policy, "mutual_tls");
        assert_eq!(l.reporter, "waypoint");
        assert_eq!(l.response_flags, "-");
    }
}
