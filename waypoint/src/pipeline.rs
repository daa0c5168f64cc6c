//! The per-request pipeline, in phases over one [`RequestContext`]:
//!
//! 1. **accept** — what the request is, its id and trace context (`context`);
//! 2. **route** — listener by the destination port, virtual host by the destination VIP (then
//!    Host), first matching route (`model::select`);
//! 3. **filters** — the listener's HTTP filters in order, each overridden per virtual host or
//!    route: RBAC (403), local rate limit (429), fault injection (delay, abort) (`filters`);
//! 4. **upstream** — redirect/direct response, or weighted cluster → endpoint (load balancer,
//!    hash policy) → HBONE/TCP → HTTP, with per-route timeout and retries (`forward`);
//! 5. **respond** — response header changes, hop-by-hop headers removed;
//! 6. **log** — Istio metrics and the access log, once the response body has been sent.

pub mod context;
mod filters;
mod forward;
pub mod local;
pub mod normalize;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;

use crate::body::{Observed, ProxyBody, boxed};
use crate::model::{self, HttpFilter, ListenerKind, RouteAction};
use crate::state::{State, Store};
use crate::telemetry::{AccessLog, Metrics};
use crate::upstream::Upstream;
pub use context::{Downstream, RequestContext};
use local::LocalReply;

/// Everything a request needs. Shared by all connections.
pub struct Proxy {
    pub store: Store,
    pub upstream: Upstream,
    pub metrics: Metrics,
}

/// What the route phase found.
struct Routed<'s> {
    filters: &'s [HttpFilter],
    vhost: Option<&'s model::VirtualHost>,
    route: Option<&'s model::Route>,
}

fn route_phase<'s>(state: &'s State, ctx: &RequestContext, headers: &HeaderMap) -> Routed<'s> {
    let none = Routed {
        filters: &[],
        vhost: None,
        route: None,
    };
    let Some(listener) = state.by_port.get(&ctx.down.destination.port()) else {
        return none;
    };
    let ListenerKind::Http {
        route_config,
        filters,
        ..
    } = &listener.kind
    else {
        return none;
    };
    let vhost =
        state.config.routes.get(route_config).and_then(|t| {
            model::select::virtual_host(t, Some(ctx.down.destination), &ctx.authority)
        });
    let route = vhost.and_then(|vh| model::select::route(vh, &ctx.view(headers)));
    Routed {
        filters,
        vhost,
        route,
    }
}

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// Removes hop-by-hop headers (and those `Connection` names); keeps `te: trailers` for gRPC and
/// the upgrade pair when `upgrade` is set.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let trailers = headers
        .get(http::header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for n in HOP_BY_HOP.iter().map(|s| (*s).to_owned()).chain(named) {
        if upgrade && (n == "connection" || n == "upgrade") {
            continue;
        }
        headers.remove(n.as_str());
    }
    if trailers {
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
}

/// Handles one request end to end; never fails (errors become local replies).
pub async fn handle(
    proxy: Arc<Proxy>,
    down: Arc<Downstream>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let mut ctx = RequestContext::accept(down, &parts);
    let counter = ctx.request_bytes.clone();
    let body = Observed::new(body, move |n, _| {
        counter.fetch_add(n, Ordering::Relaxed);
    });
    let req = Request::from_parts(parts, boxed(body));
    let state = proxy.store.current();
    let routed = route_phase(&state, &ctx, req.headers());
    ctx.route = routed.route.map(|r| r.name.clone());

    let outcome = if let Err(reply) = filters::run(&routed, &mut ctx, req.headers()).await {
        Err(reply)
    } else {
        match (routed.vhost, routed.route) {
            (Some(vh), Some(route)) => match &route.action {
                RouteAction::Direct { status, body } => Err(LocalReply::Direct {
                    status: *status,
                    body: body.clone(),
                }),
                RouteAction::Redirect(r) => Err(LocalReply::Redirect {
                    status: r.status,
                    location: model::action::redirect_location(
                        r,
                        &route.matcher,
                        "http",
                        &ctx.authority,
                        &ctx.path,
                    ),
                }),
                RouteAction::Forward(fwd) => {
                    forward::forward(&proxy, &state, &mut ctx, vh, route, fwd, req).await
                }
            },
            _ => Err(LocalReply::NoRoute),
        }
    };
    let mut resp = match outcome {
        Ok(resp) => resp,
        Err(reply) => {
            if let Some(f) = reply.flag() {
                ctx.flags.push(f);
            }
            reply.response(ctx.grpc)
        }
    };
    if let Some(v) = ctx.rate_limit {
        let h = resp.headers_mut();
        h.insert("x-ratelimit-limit", v.limit.into());
        h.insert("x-ratelimit-remaining", v.remaining.into());
        h.insert("x-ratelimit-reset", v.reset_secs.into());
    }
    Ok(log_phase(&proxy.metrics, ctx, resp))
}

/// Records metrics and the access log when the response body has been sent.
fn log_phase(
    metrics: &Metrics,
    ctx: RequestContext,
    resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let status = resp.status().as_u16();
    let grpc_status = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let metrics = metrics.clone();
    let (parts, body) = resp.into_parts();
    let body = Observed::new(body, move |sent, clean| {
        let mut ctx = ctx;
        if !clean {
            ctx.flags.push("DC");
        }
        let received = ctx.request_bytes.load(Ordering::Relaxed);
        let elapsed = ctx.started.elapsed();
        let labels = ctx.labels(status, grpc_status.as_deref());
        metrics.request(&labels, elapsed.as_secs_f64() * 1000.0, received, sent);
        let start_time = time::OffsetDateTime::from(ctx.start_time)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        AccessLog {
            start_time,
            method: ctx.method.as_str(),
            path: &ctx.path,
            protocol: ctx.protocol(),
            response_code: status,
            response_flags: &labels.response_flags,
            bytes_received: received,
            bytes_sent: sent,
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            upstream_host: ctx.endpoint.as_ref().map(|e| e.address.to_string()),
            upstream_cluster: ctx.cluster.as_deref(),
            route_name: ctx.route.as_deref(),
            authority: &ctx.authority,
            downstream_remote_address: ctx.down.remote.to_string(),
            downstream_peer_identity: ctx.down.peer_identity.as_ref().map(ToString::to_string),
            upstream_peer_identity: ctx
                .endpoint
                .as_ref()
                .and_then(|e| e.identity.as_ref())
                .map(ToString::to_string),
            request_id: &ctx.request_id,
            traceparent: &ctx.traceparent,
            rbac_policy: ctx.rbac_policy.as_deref(),
            attempts: ctx.attempts,
        }
        .emit();
    });
    Response::from_parts(parts, boxed(body))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_but_grpc_trailers_and_upgrades_stay() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-app", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-private").is_none() && h.get("keep-alive").is_none());
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-app"], "1");
        let mut h = HeaderMap::new();
        h.insert("connection", "upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
    }
}
