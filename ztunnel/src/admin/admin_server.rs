//! The admin server (default `127.0.0.1:15000`): `/` index, `/config_dump`, `/logging`, `/quitquitquit`;
//! `/debug/pprof/*` answers 501 (profiling is not implemented).
//!
//! Owns: these routes, their methods, status codes and content types.
//! Does not own: the dump's content ([`ConfigDumpSource`]), level-change semantics
//! ([`crate::telemetry::logging`]) or what happens on quit (whoever watches the `quit` sender).

use std::net::SocketAddr;
use std::sync::Arc;

use http::request::Parts;
use http::{Method, Response, StatusCode};
use tokio::sync::watch;

use super::AdminError;
use super::http::{Body, Listener, not_found, require_method, respond, text};
use crate::telemetry::logging::{LevelChange, LogLevelControl, LoggingError};

/// Supplies the `/config_dump` document (spec §10: one JSON object, camelCase keys).
pub trait ConfigDumpSource: Send + Sync {
    /// The current dump.
    fn config_dump(&self) -> serde_json::Value;
}

/// What the admin endpoints act on.
#[derive(Clone)]
pub struct AdminState {
    /// Source of `/config_dump`.
    pub config_dump: Arc<dyn ConfigDumpSource>,
    /// The log filter `/logging` changes.
    pub log_control: LogLevelControl,
    /// Set to `true` by `POST /quitquitquit`; the caller turns that into a graceful shutdown.
    pub quit: watch::Sender<bool>,
}

/// The admin listener.
pub struct AdminServer {
    listener: Listener,
    state: AdminState,
}

impl AdminServer {
    /// Binds `addr` (use [`super::DEFAULT_ADMIN_ADDR`] for the standard port).
    pub async fn bind(addr: SocketAddr, state: AdminState) -> Result<Self, AdminError> {
        Ok(Self {
            listener: Listener::bind("admin", addr).await?,
            state,
        })
    }

    /// The bound address (useful when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let state = self.state;
        self.listener
            .serve(move |parts| route(&state, parts), shutdown)
            .await;
    }
}

const INDEX: &str = "<!DOCTYPE html>\n<html><head><title>ztunnel admin</title></head><body>\n<h1>ztunnel admin</h1>\n<ul>\n\
<li><a href=\"/config_dump\">/config_dump</a>: workloads, services, policies, certificates (JSON)</li>\n\
<li>/logging (POST): show or change log levels: <code>?level=info</code>, <code>?level=mod:debug</code>, \
<code>?reset</code></li>\n\
<li>/quitquitquit (POST): graceful shutdown</li>\n</ul>\n</body></html>\n";

fn route(state: &AdminState, parts: &Parts) -> Response<Body> {
    let path = parts.uri.path();
    match path {
        "/" => require_method(parts, Method::GET)
            .unwrap_or_else(|| respond(StatusCode::OK, "text/html; charset=utf-8", INDEX)),
        "/config_dump" => require_method(parts, Method::GET).unwrap_or_else(|| config_dump(state)),
        "/logging" => require_method(parts, Method::POST).unwrap_or_else(|| logging(state, parts)),
        "/quitquitquit" => require_method(parts, Method::POST).unwrap_or_else(|| quit(state)),
        _ if path == "/debug/pprof" || path.starts_with("/debug/pprof/") => text(
            StatusCode::NOT_IMPLEMENTED,
            "profiling (/debug/pprof) is not implemented by this tunnel\n",
        ),
        _ => not_found(parts),
    }
}

fn config_dump(state: &AdminState) -> Response<Body> {
    match serde_json::to_string_pretty(&state.config_dump.config_dump()) {
        Ok(mut body) => {
            body.push('\n');
            respond(StatusCode::OK, "application/json", body)
        }
        Err(error) => {
            tracing::error!(%error, "cannot serialize config dump");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot serialize config dump: {error}\n"),
            )
        }
    }
}

fn logging(state: &AdminState, parts: &Parts) -> Response<Body> {
    let result = LevelChange::from_query(parts.uri.query()).and_then(|change| match change {
        None => Ok(state.log_control.current()),
        Some(change) => {
            let filter = state.log_control.apply(&change)?;
            tracing::info!(filter = %filter, "log level changed");
            Ok(filter)
        }
    });
    match result {
        Ok(filter) => text(StatusCode::OK, format!("current log level is {filter}\n")),
        Err(error @ LoggingError::Reload { .. }) => {
            tracing::error!(%error, "cannot change log level");
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n"))
        }
        Err(error) => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
    }
}

fn quit(state: &AdminState) -> Response<Body> {
    tracing::info!("shutdown requested through /quitquitquit");
    state.quit.send_replace(true);
    text(StatusCode::OK, "shutting down\n")
}
