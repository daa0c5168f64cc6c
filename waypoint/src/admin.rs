//! The waypoint's HTTP endpoints: admin on `ADMIN_ADDR` (`/config_dump`, `/stats/prometheus`,
//! `/healthz/ready`, `POST /quitquitquit`), Prometheus on `STATS_ADDR` (`/metrics`,
//! `/stats/prometheus`), readiness on `READINESS_ADDR` (`/healthz/ready`: 200 once listeners and
//! clusters were received and the waypoint's certificate was issued).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{ProxyBody, full};
use crate::config_dump;

/// What the endpoints read.
pub struct AdminState {
    pub registry: Registry,
    pub dump: config_dump::Sources,
    pub ready: watch::Receiver<bool>,
    pub quit: watch::Sender<bool>,
}

/// Which set of endpoints a socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Stats,
    Readiness,
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn route(state: &AdminState, role: Role, req: &Request<Incoming>) -> Response<ProxyBody> {
    let path = req.uri().path();
    match (role, req.method(), path) {
        (_, &Method::GET, "/healthz/ready") => {
            if *state.ready.borrow() {
                text(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready\n".into(),
                )
            }
        }
        (Role::Admin | Role::Stats, &Method::GET, "/stats/prometheus" | "/metrics") => text(
            StatusCode::OK,
            hbone::exposition::PROMETHEUS_TEXT_CONTENT_TYPE,
            crate::telemetry::encode(&state.registry)
                + &crate::cluster_stats::render(&state.dump.store.current()),
        ),
        (Role::Admin, &Method::GET, "/config_dump") => text(
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&config_dump::dump(&state.dump)).unwrap_or_default(),
        ),
        (Role::Admin, &Method::POST, "/quitquitquit") => {
            state.quit.send_replace(true);
            text(StatusCode::OK, "text/plain", "OK\n".into())
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Binds `addr` now (so a port clash fails start-up) and returns the serving future.
pub async fn bind(
    addr: SocketAddr,
    role: Role,
    state: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<impl Future<Output = ()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = crate::io::stopped(&mut shutdown) => return,
            };
            let Ok((tcp, _)) = accepted else { continue };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let r = route(&state, role, &req);
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    })
}
