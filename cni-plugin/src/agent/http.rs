//! `pluginevent.sock`: the HTTP/1.1 server (hyper, unix socket) the CNI plugin calls. See [`crate::event`].

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use super::Agent;
use crate::event::{CmdAddRequest, PATH_CMDADD, PATH_READYZ};

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

pub struct PluginEventServer {
    listener: UnixListener,
    path: PathBuf,
}

impl PluginEventServer {
    /// Binds now (removing a stale socket file), so start-up fails early.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(Self {
            listener: UnixListener::bind(path)?,
            path: path.into(),
        })
    }

    pub async fn run(self, agent: Arc<Agent>) {
        tracing::info!(path = %self.path.display(), "plugin event server listening");
        loop {
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::error!(error = %e, "plugin event accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let agent = agent.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(agent.clone(), req));
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!(error = %e, "plugin event connection");
                }
            });
        }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.into())));
    *resp.status_mut() = status;
    resp
}

async fn handle(
    agent: Arc<Agent>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, PATH_READYZ) => {
            if agent.ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "no ztunnel connection\n")
            }
        }
        (&Method::POST, PATH_CMDADD) => cmd_add(agent, req).await,
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    })
}

async fn cmd_add(agent: Arc<Agent>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("body: {e}\n")),
    };
    let add: CmdAddRequest = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("body: {e}\n")),
    };
    let span =
        tracing::info_span!("cmdadd", pod = %format!("{}/{}", add.pod_namespace, add.pod_name));
    match tracing::Instrument::instrument(agent.cni_add(add), span).await {
        Ok(None) => text(StatusCode::OK, "enrolled\n"),
        Ok(Some(reason)) => text(StatusCode::OK, format!("not enrolled: {reason}\n")),
        Err(e) => {
            tracing::warn!(error = %e, "CNI ADD failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
        }
    }
}
