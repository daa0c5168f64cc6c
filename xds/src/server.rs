//! The ADS server: serves any set of type URLs from a [`SnapshotSource`] over both
//! `StreamAggregatedResources` (state of the world) and `DeltaAggregatedResources` (incremental).
//!
//! Owns: per-stream client identity (the first request's node), per-type subscriptions, versions and
//! nonces, ACK/NACK tracking (metrics, a debug [`AdsServer::dump`], an [`AdsServer::events`] feed) and
//! the push order (clusters → endpoints → listeners → routes → others; removals last), including
//! re-sending an EDS cluster's endpoints after the cluster changes (Envoy warming needs them). Does not
//! own what resources mean (beyond that one name) or which client sees which snapshot (the
//! [`SnapshotSource`] decides).
//!
//! Layout: `decide` holds the pure decisions (table-tested); `sotw` and `delta` are the per-stream
//! state machines (no I/O); `stream` moves messages; `registry` and `metrics` are the observability.

mod decide;
mod delta;
mod error;
mod metrics;
mod registry;
mod session;
mod sotw;
mod stream;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

pub use error::ServeError;

use crate::SnapshotSource;
use delta::DeltaSession;
use metrics::Metrics;
use registry::Clients;
use sotw::SotwSession;
use stream::Responses;

/// The largest message the service decodes or encodes (200 MiB: large meshes make large snapshots).
pub const MAX_MESSAGE_SIZE: usize = 200 * 1024 * 1024;

/// ACK/NACK events kept for slow [`AdsServer::events`] receivers before they start missing some.
const EVENT_BUFFER: usize = 4096;

/// A client's answer to a response: an ACK (`nack` is `None`) or a NACK (`nack` is the client's error
/// message). `version` is the version the client now runs: the one applied on ACK, the one kept on NACK
/// (SotW `version_info`; in delta, the last version of that type it ACKed on the stream, or "").
/// `nonce` names the response answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AckEvent {
    pub node_id: String,
    pub type_url: String,
    pub version: String,
    pub nonce: String,
    pub nack: Option<String>,
}

/// The ADS server. Cheap to clone; clones share clients, metrics and events.
#[derive(Clone)]
pub struct AdsServer {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn SnapshotSource>,
    clients: Arc<Clients>,
    metrics: Metrics,
    events: broadcast::Sender<AckEvent>,
    closing: watch::Sender<bool>,
    next_stream: AtomicU64,
}

impl std::fmt::Debug for AdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsServer").finish_non_exhaustive()
    }
}

impl AdsServer {
    /// A server whose clients see the snapshots `source` picks for their node.
    pub fn new(source: Arc<dyn SnapshotSource>) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        AdsServer {
            inner: Arc::new(Inner {
                source,
                clients: Arc::default(),
                metrics: Metrics::default(),
                events,
                closing: watch::Sender::new(false),
                next_stream: AtomicU64::new(1),
            }),
        }
    }

    /// The tonic service, ready for `tonic::transport::Server::builder().add_service(..)`; messages up to
    /// [`MAX_MESSAGE_SIZE`] both ways.
    pub fn service(&self) -> AggregatedDiscoveryServiceServer<AdsServer> {
        AggregatedDiscoveryServiceServer::new(self.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// Registers `xds_connected_clients`, `xds_pushes_total{type}`, `xds_acks_total{type}` and
    /// `xds_nacks_total{type}` (`type` is `cluster`, `endpoint`, `listener`, `route`, `secret`, `address`,
    /// `authorization` or `other`).
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.inner.metrics.register(registry);
    }

    /// Every connected client: `{"clients": [{node_id, stream: "sotw"|"delta", stream_id, peer, types:
    /// {type_url: {wildcard, names, resources, last_sent: {version, nonce}, last_acked_version, last_nack:
    /// {version, rejected_version, nonce, message}}}}]}`.
    pub fn dump(&self) -> serde_json::Value {
        self.inner.clients.dump()
    }

    /// A feed of every ACK and NACK from now on.
    pub fn events(&self) -> broadcast::Receiver<AckEvent> {
        self.inner.events.subscribe()
    }

    /// Ends every stream, open or opened later, with `unavailable` (clients then reconnect elsewhere).
    /// Graceful shutdown needs this: ADS streams never end on their own.
    pub fn close_streams(&self) {
        self.inner.closing.send_replace(true);
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = Responses<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Responses<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        stream::open::<SotwSession>(&self.inner, request).await
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        stream::open::<DeltaSession>(&self.inner, request).await
    }
}

/// Serves `server` on `listener` until `shutdown` resolves, then closes every stream and waits for the
/// connections to finish.
pub async fn serve(
    server: AdsServer,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().ok();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = server.service();
    let signal = async move {
        shutdown.await;
        tracing::info!(addr = ?addr, "xDS server shutting down");
        server.close_streams();
    };
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, signal)
        .await
        .map_err(|source| ServeError::Transport { addr, source })
}
