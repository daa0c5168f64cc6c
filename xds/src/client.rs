//! The ADS client: one `StreamAggregatedResources` (SotW) or `DeltaAggregatedResources` stream to
//! a server, any set of type URLs, each handed to a typed [`Handler`].
//!
//! Owns the stream: connect with backoff (10 ms doubling to 15 s, reset once a stream delivered a
//! response), the node on the first request only, `initial_resource_versions` on reconnect (delta)
//! or the last accepted version (SotW), ACK/NACK of each response, subscription changes. A
//! rejected resource is named in the NACK's `error_detail` (`name: reason; …`) while the valid
//! ones of the same response are applied and the last good config of the rejected ones stays.
//! The protocol decisions live in [`session`] (pure); this file moves messages.

mod backoff;
mod endpoint;
pub mod names;
pub mod session;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, Endpoint};

pub use endpoint::{EndpointError, endpoint};
pub use session::{Changes, Names, Rejected, Update};

/// Largest message accepted from the server (istiod-sized pushes).
pub const MAX_MESSAGE_SIZE: usize = 200 * 1024 * 1024;

/// State of the world or incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sotw,
    Delta,
}

/// Receives the resources of one type. Converts protos to domain types at the boundary: a
/// resource that fails to decode or validate is returned as [`Rejected`] and is not applied.
pub trait Handler: Send + 'static {
    /// Applies one response's changes; returns the resources it rejected.
    fn apply(&mut self, changes: Changes) -> Vec<Rejected>;

    /// The name of a SotW resource (SotW responses carry bare `Any`s). The default knows the
    /// Envoy and Istio types; see [`names::resource_name`].
    fn resource_name(&self, body: &Any) -> Result<String, String> {
        names::resource_name(body)
    }
}

/// One subscribed type.
pub struct TypeSubscription {
    pub type_url: String,
    pub names: Names,
    pub handler: Box<dyn Handler>,
}

impl TypeSubscription {
    pub fn wildcard(type_url: &str, handler: impl Handler) -> Self {
        TypeSubscription {
            type_url: type_url.to_owned(),
            names: Names::Wildcard,
            handler: Box::new(handler),
        }
    }

    pub fn named(type_url: &str, names: BTreeSet<String>, handler: impl Handler) -> Self {
        TypeSubscription {
            type_url: type_url.to_owned(),
            names: Names::Named(names),
            handler: Box::new(handler),
        }
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server, with TLS configured on the endpoint when it is not plaintext.
    pub endpoint: Endpoint,
    pub node: Node,
    pub mode: Mode,
    /// Read before each connection: `authorization: Bearer <token>`.
    pub token_file: Option<PathBuf>,
    /// Extra call metadata (`clusterid`, `XDS_HEADER_*`).
    pub metadata: Vec<(String, String)>,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl ClientConfig {
    pub fn new(endpoint: Endpoint, node: Node, mode: Mode) -> Self {
        ClientConfig {
            endpoint,
            node,
            mode,
            token_file: None,
            metadata: Vec::new(),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(15),
        }
    }
}

/// What the client has done so far, for readiness and debugging.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientStatus {
    pub connected: bool,
    /// Types whose response was ACKed at least once since start.
    pub acked: BTreeSet<String>,
    /// Per type: the last NACK's `error_detail` message.
    pub last_nack: BTreeMap<String, String>,
    /// Per type: how many resources are held.
    pub held: BTreeMap<String, usize>,
    /// The last stream error, if any.
    pub last_error: Option<String>,
}

/// Changes a running client's subscriptions and reports its status.
#[derive(Debug, Clone)]
pub struct ClientHandle {
    commands: mpsc::UnboundedSender<(String, Names)>,
    status: watch::Receiver<ClientStatus>,
}

impl ClientHandle {
    /// Replaces the subscription of `type_url` (a type the client was built with).
    pub fn subscribe(&self, type_url: &str, names: Names) {
        let _ = self.commands.send((type_url.to_owned(), names));
    }

    pub fn status(&self) -> watch::Receiver<ClientStatus> {
        self.status.clone()
    }
}

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("connecting to {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("reading the token file {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid call metadata {name}: {reason}")]
    Metadata { name: String, reason: String },
    #[error("stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("the server closed the stream")]
    Closed,
    #[error("protocol: {0}")]
    Protocol(String),
}

impl StreamError {
    /// Ends after which the next attempt starts at the initial backoff (spec §4).
    fn benign(&self) -> bool {
        match self {
            StreamError::Status(s) => match s.code() {
                tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => {
                    true
                }
                tonic::Code::Unavailable => {
                    let m = s.message();
                    m.contains("transport is closing") || m.contains("received prior goaway")
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// An ADS client; [`AdsClient::run`] drives it until shutdown.
pub struct AdsClient {
    config: ClientConfig,
    session: session::Session,
    handlers: BTreeMap<String, Box<dyn Handler>>,
    commands: mpsc::UnboundedReceiver<(String, Names)>,
    status: watch::Sender<ClientStatus>,
}

impl AdsClient {
    /// A client for `types` (subscribed in the order given).
    pub fn new(config: ClientConfig, types: Vec<TypeSubscription>) -> (Self, ClientHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(ClientStatus::default());
        let mut subs = Vec::new();
        let mut handlers = BTreeMap::new();
        for t in types {
            subs.push((t.type_url.clone(), t.names));
            handlers.insert(t.type_url, t.handler);
        }
        let session = session::Session::new(subs);
        (
            AdsClient {
                config,
                session,
                handlers,
                commands: rx,
                status: status_tx,
            },
            ClientHandle {
                commands: tx,
                status: status_rx,
            },
        )
    }

    /// Connects, follows the server and reconnects until `shutdown` becomes true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff =
            backoff::Backoff::new(self.config.initial_backoff, self.config.max_backoff);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let mut got_response = false;
            let result = tokio::select! {
                r = self.stream_once(&mut got_response) => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            self.status.send_modify(|s| s.connected = false);
            let delay = match &result {
                Err(e) if e.benign() || got_response => backoff.reset_and_next(),
                _ => backoff.next(),
            };
            match result {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(target: "xds", error = %e, retry_in = ?delay, "xDS stream ended");
                    self.status
                        .send_modify(|s| s.last_error = Some(e.to_string()));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    async fn stream_once(&mut self, got_response: &mut bool) -> Result<(), StreamError> {
        let channel =
            self.config
                .endpoint
                .connect()
                .await
                .map_err(|source| StreamError::Connect {
                    address: self.config.endpoint.uri().to_string(),
                    source,
                })?;
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let metadata = self.call_metadata()?;
        self.session.reconnected();
        match self.config.mode {
            Mode::Delta => {
                self.drive::<Delta>(&mut client, metadata, got_response)
                    .await
            }
            Mode::Sotw => {
                self.drive::<Sotw>(&mut client, metadata, got_response)
                    .await
            }
        }
    }

    fn call_metadata(&self) -> Result<Vec<(AsciiMetadataKey, AsciiMetadataValue)>, StreamError> {
        let mut pairs = self.config.metadata.clone();
        if let Some(path) = &self.config.token_file {
            let token = std::fs::read_to_string(path).map_err(|source| StreamError::Token {
                path: path.display().to_string(),
                source,
            })?;
            pairs.push((
                "authorization".to_owned(),
                format!("Bearer {}", token.trim()),
            ));
        }
        pairs
            .into_iter()
            .map(|(k, v)| {
                let bad = |reason: String| StreamError::Metadata {
                    name: k.clone(),
                    reason,
                };
                let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                    .map_err(|e| bad(e.to_string()))?;
                let value =
                    AsciiMetadataValue::try_from(v.as_str()).map_err(|e| bad(e.to_string()))?;
                Ok((key, value))
            })
            .collect()
    }

    fn record(&self, type_url: &str, outcome: &session::Outcome) {
        let held = self.session.held_count(type_url);
        self.status.send_modify(|s| {
            match &outcome.nack {
                None => {
                    s.acked.insert(type_url.to_owned());
                }
                Some(message) => {
                    s.last_nack.insert(type_url.to_owned(), message.clone());
                }
            }
            s.held.insert(type_url.to_owned(), held);
        });
    }

    /// One stream of either flavour: initial requests (node on the first only), then responses
    /// answered with ACK/NACK and subscription changes, until the stream ends.
    async fn drive<F: Flavor>(
        &mut self,
        client: &mut AggregatedDiscoveryServiceClient<Channel>,
        metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
        got_response: &mut bool,
    ) -> Result<(), StreamError> {
        let (tx, rx) = mpsc::unbounded_channel::<F::Req>();
        for (i, mut req) in F::initial(&self.session).into_iter().enumerate() {
            if i == 0 {
                F::set_node(&mut req, &self.config.node);
            }
            let _ = tx.send(req);
        }
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
        for (k, v) in metadata {
            request.metadata_mut().insert(k, v);
        }
        let mut responses = F::open(client, request).await?.into_inner();
        self.status.send_modify(|s| s.connected = true);
        loop {
            tokio::select! {
                msg = responses.message() => {
                    let Some(resp) = msg? else {
                        return Err(StreamError::Closed);
                    };
                    *got_response = true;
                    let type_url = F::type_url(&resp).to_owned();
                    let Some(handler) = self.handlers.get_mut(&type_url) else {
                        return Err(StreamError::Protocol(format!("response for unsubscribed type {type_url}")));
                    };
                    let (ack, outcome) = F::on_response(&mut self.session, resp, handler.as_mut());
                    log_outcome(&type_url, &outcome);
                    self.record(&type_url, &outcome);
                    let _ = tx.send(ack);
                }
                Some((type_url, names)) = self.commands.recv() => {
                    let Some(handler) = self.handlers.get_mut(&type_url) else { continue };
                    if let Some((req, outcome)) = F::resubscribe(&mut self.session, &type_url, names, handler.as_mut()) {
                        self.record(&type_url, &outcome);
                        let _ = tx.send(req);
                    }
                }
            }
        }
    }
}

type Responses<T> = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>;
type Requests<T> = tonic::Request<UnboundedReceiverStream<T>>;

/// What differs between SotW and delta streams: message types, the method, and which session
/// step handles them.
trait Flavor {
    type Req: Send + 'static;
    type Resp: Send + 'static;
    fn initial(session: &session::Session) -> Vec<Self::Req>;
    fn set_node(req: &mut Self::Req, node: &Node);
    async fn open(
        client: &mut AggregatedDiscoveryServiceClient<Channel>,
        request: Requests<Self::Req>,
    ) -> Responses<Self::Resp>;
    fn type_url(resp: &Self::Resp) -> &str;
    fn on_response(
        session: &mut session::Session,
        resp: Self::Resp,
        handler: &mut dyn Handler,
    ) -> (Self::Req, session::Outcome);
    fn resubscribe(
        session: &mut session::Session,
        type_url: &str,
        names: Names,
        handler: &mut dyn Handler,
    ) -> Option<(Self::Req, session::Outcome)>;
}

struct Delta;

impl Flavor for Delta {
    type Req = DeltaDiscoveryRequest;
    type Resp = DeltaDiscoveryResponse;
    fn initial(session: &session::Session) -> Vec<Self::Req> {
        session.initial_delta()
    }
    fn set_node(req: &mut Self::Req, node: &Node) {
        req.node = Some(node.clone());
    }
    async fn open(
        client: &mut AggregatedDiscoveryServiceClient<Channel>,
        request: Requests<Self::Req>,
    ) -> Responses<Self::Resp> {
        client.delta_aggregated_resources(request).await
    }
    fn type_url(resp: &Self::Resp) -> &str {
        &resp.type_url
    }
    fn on_response(
        session: &mut session::Session,
        resp: Self::Resp,
        handler: &mut dyn Handler,
    ) -> (Self::Req, session::Outcome) {
        session.on_delta_response(resp, handler)
    }
    fn resubscribe(
        session: &mut session::Session,
        type_url: &str,
        names: Names,
        handler: &mut dyn Handler,
    ) -> Option<(Self::Req, session::Outcome)> {
        session.resubscribe_delta(type_url, names, handler)
    }
}

struct Sotw;

impl Flavor for Sotw {
    type Req = DiscoveryRequest;
    type Resp = DiscoveryResponse;
    fn initial(session: &session::Session) -> Vec<Self::Req> {
        session.initial_sotw()
    }
    fn set_node(req: &mut Self::Req, node: &Node) {
        req.node = Some(node.clone());
    }
    async fn open(
        client: &mut AggregatedDiscoveryServiceClient<Channel>,
        request: Requests<Self::Req>,
    ) -> Responses<Self::Resp> {
        client.stream_aggregated_resources(request).await
    }
    fn type_url(resp: &Self::Resp) -> &str {
        &resp.type_url
    }
    fn on_response(
        session: &mut session::Session,
        resp: Self::Resp,
        handler: &mut dyn Handler,
    ) -> (Self::Req, session::Outcome) {
        session.on_sotw_response(resp, handler)
    }
    fn resubscribe(
        session: &mut session::Session,
        type_url: &str,
        names: Names,
        handler: &mut dyn Handler,
    ) -> Option<(Self::Req, session::Outcome)> {
        session.resubscribe_sotw(type_url, names, handler)
    }
}

fn log_outcome(type_url: &str, outcome: &session::Outcome) {
    match &outcome.nack {
        None => tracing::debug!(
            target: "xds", type_url, updated = outcome.updated, removed = outcome.removed, "ACK"
        ),
        Some(message) => tracing::warn!(
            target: "xds", type_url, updated = outcome.updated, removed = outcome.removed,
            rejected = %message, "NACK: some resources were rejected; the last good ones stay"
        ),
    }
}
