//! The upstream phase of a forwarding route: pick the weighted cluster, rewrite the request,
//! then attempt endpoints (load balancer + hash policy, retries with jittered back-off on a
//! replayable body, per-try and route timeouts), mirror, and shape the response.
//!
//! Circuit breakers: each attempt holds a slot of the cluster's `max_requests` until its
//! response body ends (none free: 503 `UO`), and each retry a slot of `max_retries` (none free:
//! no retry, the last answer stands, `UO`). Every attempt's outcome feeds the cluster's outlier
//! detector.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use rand::Rng;

use super::local::LocalReply;
use super::{Proxy, RequestContext, strip_hop_by_hop};
use crate::body::{Observed, ProxyBody, boxed, full};
use crate::model::action::{self, AttemptOutcome};
use crate::model::{Forward, Route, VirtualHost, WeightedCluster, select};
use crate::runtime::Resource;
use crate::state::State;
use crate::upstream::{Target, UpstreamError};

/// Request bodies up to this size are buffered so a retry or a mirror can replay them
/// (Envoy's default per-request buffer limit is of this order).
const REPLAY_LIMIT: u64 = 64 << 10;
/// The bound of a mirrored request when its route has no timeout (Envoy's default route
/// timeout).
const MIRROR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The parts of the upstream request that every attempt shares.
struct Prepared {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    version: Version,
}

impl Prepared {
    fn build(&self, body: ProxyBody) -> Request<ProxyBody> {
        let mut r = Request::new(body);
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.headers_mut() = self.headers.clone();
        *r.version_mut() = self.version;
        r
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        && headers.contains_key(http::header::UPGRADE)
}

fn pick_cluster(fwd: &Forward) -> Option<&WeightedCluster> {
    let total = select::total_weight(&fwd.clusters);
    if total == 0 {
        return None;
    }
    select::weighted_cluster(&fwd.clusters, rand::rng().random_range(0..total))
}

pub(super) async fn forward(
    proxy: &Arc<Proxy>,
    state: &State,
    ctx: &mut RequestContext,
    vh: &VirtualHost,
    route: &Route,
    fwd: &Forward,
    req: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, LocalReply> {
    let wc = pick_cluster(fwd).ok_or(LocalReply::NoCluster)?;
    ctx.cluster = Some(wc.name.clone());
    let cs = state
        .clusters
        .get(&wc.name)
        .cloned()
        .ok_or(LocalReply::NoCluster)?;
    let (mut parts, body) = req.into_parts();
    let upgrade = parts.version < Version::HTTP_2 && is_upgrade(&parts.headers);
    let on_down = if upgrade {
        parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
    } else {
        None
    };
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let path =
        action::rewrite_path(fwd, &route.matcher, &ctx.path).unwrap_or_else(|| ctx.path.clone());
    let host = fwd
        .host_rewrite
        .clone()
        .unwrap_or_else(|| ctx.authority.clone());
    let h = &mut parts.headers;
    action::apply_headers(&vh.request_headers, h);
    action::apply_headers(&route.request_headers, h);
    action::apply_headers(&wc.request_headers, h);
    ctx.tracing_headers(h);
    let hash = action::hash_key(&fwd.hash_policy, &ctx.view(h), &ctx.down.view());
    // HTTP/2 upstream when the cluster says so, or for gRPC; otherwise HTTP/1.1 (an h2c client
    // of an HTTP/1.1-only app must still reach it).
    let http2 = cs.cluster.http2 || ctx.grpc;
    let (uri, version) = if http2 {
        h.remove(http::header::HOST);
        (format!("http://{host}{path}"), Version::HTTP_2)
    } else {
        if let Ok(v) = HeaderValue::from_str(&host) {
            h.insert(http::header::HOST, v);
        }
        (path, Version::HTTP_11)
    };
    let prepared = Prepared {
        method: parts.method.clone(),
        uri: uri
            .parse()
            .map_err(|e| LocalReply::BadRequest(format!("host {host:?}: {e}")))?,
        headers: parts.headers,
        version,
    };
    let wants_replay = fwd.retry.is_some() || !fwd.mirrors.is_empty();
    let fits = body.size_hint().upper().is_some_and(|n| n <= REPLAY_LIMIT);
    let (replay, mut once) = if wants_replay && fits && !upgrade {
        // `fits`: hyper enforces the announced length, so the upper bound holds.
        match body.collect().await {
            Ok(b) => (Some(b.to_bytes()), None),
            Err(e) => return Err(LocalReply::BadRequest(format!("request body: {e}"))),
        }
    } else {
        (None, Some(body))
    };
    if let Some(bytes) = &replay {
        mirror(proxy, state, fwd, &prepared, &host, bytes, ctx.down.remote);
    }
    // The endpoint awaiting headers, for outlier detection when the route timeout cuts it off.
    // (An atomic, not a Cell: the request future must stay Send.)
    let in_flight = AtomicUsize::new(usize::MAX);
    let attempts = async {
        let retry = fwd.retry.as_ref().filter(|_| replay.is_some());
        let max = 1 + retry.map_or(0, |r| r.num_retries);
        let limits = cs.cluster.circuit_breakers;
        let mut tried: Vec<usize> = Vec::new();
        let mut retry_slot = None;
        loop {
            ctx.attempts += 1;
            let i = cs
                .pick(hash.as_ref().map(|h| h.hash), &tried)
                .ok_or(LocalReply::NoHealthyUpstream)?;
            tried.push(i);
            in_flight.store(i, Ordering::Relaxed);
            let ep = &cs.endpoints[i];
            ctx.endpoint = Some(ep.clone());
            let request_slot = cs
                .runtime
                .try_acquire(Resource::Requests, limits.max_requests)
                .ok_or(LocalReply::Overflow)?;
            let active = cs.start(i);
            let body = match (&replay, once.take()) {
                (Some(b), _) => full(b.clone()),
                (None, Some(b)) => b,
                (None, None) => {
                    return Err(LocalReply::UpstreamFailure {
                        reason: "request body already sent".into(),
                        flag: "UR",
                    });
                }
            };
            let target = Target {
                endpoint: ep,
                http2,
                cluster: &cs,
                client: ctx.down.remote,
            };
            let send = async {
                proxy
                    .upstream
                    .send(target, prepared.build(body))
                    .await
                    .map_err(AttemptError::Upstream)
            };
            let per_try = retry.and_then(|r| r.per_try_timeout);
            let result = match per_try {
                Some(t) => tokio::time::timeout(t, send)
                    .await
                    .unwrap_or(Err(AttemptError::Timeout)),
                None => send.await,
            };
            let outcome = match &result {
                Ok(r) => AttemptOutcome::Status(r.status().as_u16()),
                Err(AttemptError::Timeout) => AttemptOutcome::Timeout,
                Err(AttemptError::Upstream(e)) if e.is_connect_failure() => {
                    AttemptOutcome::ConnectFailure
                }
                Err(AttemptError::Upstream(_)) => AttemptOutcome::Reset,
            };
            in_flight.store(usize::MAX, Ordering::Relaxed);
            if let Err(AttemptError::Upstream(UpstreamError::Overflow { .. })) = &result {
                return Err(LocalReply::Overflow);
            }
            if let Some(o) = &cs.cluster.outlier {
                cs.runtime
                    .record(o, &cs.endpoints, i, &outcome, &cs.cluster.name);
            }
            // Envoy never retries an answer that says the upstream is overloaded.
            let overloaded =
                matches!(&result, Ok(r) if r.headers().contains_key("x-envoy-overloaded"));
            let mut retriable =
                !overloaded && retry.is_some_and(|r| action::retriable(r, &outcome));
            if retriable && ctx.attempts < max {
                // The previous retry's slot goes back first (Envoy's resetRetry).
                drop(retry_slot.take());
                retry_slot = cs
                    .runtime
                    .try_acquire(Resource::Retries, limits.max_retries);
                if retry_slot.is_none() {
                    // Envoy's retry overflow: no retry, the answer stands.
                    ctx.flags.push("UO");
                    retriable = false;
                }
            }
            if retriable && ctx.attempts < max {
                // Nothing of the failed attempt is held through the back-off.
                drop((result, request_slot, active));
                if let Some(r) = retry {
                    let unit: f64 = rand::rng().random();
                    tokio::time::sleep(action::backoff(r, ctx.attempts - 1, unit)).await;
                }
                tracing::debug!(attempt = ctx.attempts, ?outcome, "retrying");
                continue;
            }
            if retriable && max > 1 {
                // Envoy's URX: the retry budget ran out on a retriable outcome.
                ctx.flags.push("URX");
            }
            return match result {
                // The request counts against max_requests until its response body ends.
                Ok(r) => Ok(r.map(|b| {
                    boxed(Observed::new(b, move |_, _| {
                        drop((request_slot, active));
                    }))
                })),
                Err(AttemptError::Timeout) => Err(LocalReply::Timeout),
                Err(AttemptError::Upstream(e)) => Err(LocalReply::UpstreamFailure {
                    reason: e.to_string(),
                    flag: e.response_flag(),
                }),
            };
        }
    };
    let resp = match fwd.timeout {
        Some(t) => match tokio::time::timeout(t, attempts).await {
            Ok(r) => r?,
            Err(_) => {
                // As Envoy's onResponseTimeout: a timeout for the endpoint that never answered.
                let i = in_flight.load(Ordering::Relaxed);
                if let (true, Some(o)) = (i != usize::MAX, &cs.cluster.outlier) {
                    cs.runtime.record(
                        o,
                        &cs.endpoints,
                        i,
                        &AttemptOutcome::Timeout,
                        &cs.cluster.name,
                    );
                }
                return Err(LocalReply::Timeout);
            }
        },
        None => attempts.await?,
    };
    Ok(respond(
        resp,
        vh,
        route,
        wc,
        hash.and_then(|h| h.set_cookie),
        on_down,
    ))
}

/// A per-try timeout or an upstream failure.
#[derive(Debug)]
enum AttemptError {
    Timeout,
    Upstream(UpstreamError),
}

/// Sends a copy of the request to each mirror cluster (responses ignored), Host `<host>-shadow`
/// (port kept), in the primary's HTTP version unless the mirror cluster asks for HTTP/2.
fn mirror(
    proxy: &Arc<Proxy>,
    state: &State,
    fwd: &Forward,
    p: &Prepared,
    host: &str,
    body: &Bytes,
    client: std::net::SocketAddr,
) {
    for m in &fwd.mirrors {
        if !m.share.hit(rand::rng().random_range(0..1_000_000)) {
            continue;
        }
        let Some(cs) = state.clusters.get(&m.cluster).cloned() else {
            continue;
        };
        let Some(i) = cs.pick(None, &[]) else {
            continue;
        };
        let limit = cs.cluster.circuit_breakers.max_requests;
        let Some(slot) = cs.runtime.try_acquire(Resource::Requests, limit) else {
            tracing::debug!(cluster = %m.cluster, "mirror skipped: max requests");
            continue;
        };
        let mut req = p.build(full(body.clone()));
        let shadow = match host.rsplit_once(':') {
            Some((name, port)) => format!("{name}-shadow:{port}"),
            None => format!("{host}-shadow"),
        };
        let http2 = cs.cluster.http2 || p.version == Version::HTTP_2;
        if http2 {
            let path = p.uri.path_and_query().map_or("/", |pq| pq.as_str());
            match format!("http://{shadow}{path}").parse() {
                Ok(uri) => *req.uri_mut() = uri,
                Err(_) => continue,
            }
            *req.version_mut() = Version::HTTP_2;
            req.headers_mut().remove(http::header::HOST);
        } else if let Ok(v) = HeaderValue::from_str(&shadow) {
            req.headers_mut().insert(http::header::HOST, v);
        }
        let upstream = proxy.upstream.clone();
        let timeout = fwd.timeout.unwrap_or(MIRROR_TIMEOUT);
        tokio::spawn(async move {
            let ep = cs.endpoints[i].clone();
            let target = Target {
                endpoint: &ep,
                http2,
                cluster: &cs,
                client,
            };
            // Bounded like the primary (Envoy's shadow requests follow the route timeout).
            let shadow = async {
                if let Ok(r) = upstream.send(target, req).await {
                    let _ = r.into_body().collect().await;
                }
            };
            if tokio::time::timeout(timeout, shadow).await.is_err() {
                tracing::debug!(cluster = %cs.cluster.name, "mirror timed out");
            }
            drop(slot);
        });
    }
}

/// The respond phase: hop-by-hop headers out, response header changes, hash cookie; an
/// upgrade (101) splices both connections.
fn respond(
    resp: Response<ProxyBody>,
    vh: &VirtualHost,
    route: &Route,
    wc: &WeightedCluster,
    set_cookie: Option<HeaderValue>,
    on_down: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ProxyBody> {
    let mut resp = resp;
    let switching = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    if switching && let Some(down) = on_down {
        let up = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match (down.await, up.await) {
                (Ok(d), Ok(u)) => {
                    let (mut d, mut u) = (TokioIo::new(d), TokioIo::new(u));
                    let _ = tokio::io::copy_bidirectional(&mut d, &mut u).await;
                }
                (d, u) => tracing::debug!(
                    downstream = d.is_ok(),
                    upstream = u.is_ok(),
                    "upgrade did not complete"
                ),
            }
        });
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, switching);
    action::apply_headers(&wc.response_headers, &mut parts.headers);
    action::apply_headers(&route.response_headers, &mut parts.headers);
    action::apply_headers(&vh.response_headers, &mut parts.headers);
    if let Some(c) = set_cookie {
        parts.headers.append(http::header::SET_COOKIE, c);
    }
    Response::from_parts(parts, body)
}
