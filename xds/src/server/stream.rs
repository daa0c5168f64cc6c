//! The I/O of one ADS stream: reads the first request (node → snapshot watch), then feeds requests and
//! snapshot changes to the stream's [`Session`] and sends what it returns, recording ACKs, NACKs and pushes
//! in metrics, events and logs. Ends when the client goes away, on a bad request, or when the server closes
//! its streams.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, warn};

use super::decide::Reply;
use super::error::StreamError;
use super::registry::{ClientInfo, lock};
use super::session::{Answer, Push, Session, Step};
use super::{AckEvent, Inner};
use crate::Snapshot;

/// Responses buffered per stream before the session waits for the client to read.
const RESPONSE_BUFFER: usize = 16;

/// The response stream handed to tonic.
pub(crate) type Responses<R> = ReceiverStream<Result<R, Status>>;

/// Opens a stream: validates the first request, picks the client's snapshots and starts the stream task.
pub(crate) async fn open<S: Session>(
    inner: &Arc<Inner>,
    request: Request<Streaming<S::Request>>,
) -> Result<Response<Responses<S::Response>>, Status> {
    let peer = request.remote_addr();
    let mut requests = request.into_inner();
    let first = requests
        .message()
        .await?
        .ok_or(StreamError::NoFirstRequest)?;
    let Some(node) = S::node(&first).filter(|n| !n.id.is_empty()) else {
        debug!(peer = ?peer, stream = S::KIND.as_str(), "refusing a stream without a node id");
        return Err(StreamError::MissingNode.into());
    };
    let node_id = node.id.clone();
    let mut snapshots = inner.source.watch(node)?;
    let snapshot = snapshots.borrow_and_update().clone();
    let session = Arc::new(Mutex::new(S::new(snapshot)));
    let id = inner
        .next_stream
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let info = ClientInfo {
        node_id: node_id.clone(),
        kind: S::KIND,
        peer,
    };
    let registration = inner.clients.add(id, info, session.clone(), &inner.metrics);
    let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
    let span = tracing::info_span!("xds_stream", node = %node_id, stream = S::KIND.as_str(), stream_id = id);
    let task = StreamTask {
        inner: inner.clone(),
        node_id,
        session,
        tx,
    };
    tokio::spawn(
        async move {
            info!(peer = ?peer, "xDS stream opened");
            task.run(first, requests, snapshots).await;
            drop(registration);
            info!("xDS stream closed");
        }
        .instrument(span),
    );
    Ok(Response::new(ReceiverStream::new(rx)))
}

struct StreamTask<S: Session> {
    inner: Arc<Inner>,
    node_id: String,
    session: Arc<Mutex<S>>,
    tx: mpsc::Sender<Result<S::Response, Status>>,
}

impl<S: Session> StreamTask<S> {
    async fn run(
        &self,
        first: S::Request,
        mut requests: Streaming<S::Request>,
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
    ) {
        let closing = until_closed(self.inner.closing.subscribe());
        tokio::pin!(closing);
        let mut step = self.on_request(first);
        let mut source_open = true;
        loop {
            match step {
                Ok(s) => {
                    if !self.deliver(s).await {
                        return;
                    }
                }
                Err(e) => {
                    debug!(error = %e, "ending the stream");
                    let _ = self.tx.send(Err(e.into())).await;
                    return;
                }
            }
            step = tokio::select! {
                () = &mut closing => {
                    let _ = self.tx.send(Err(Status::unavailable("the xDS server is shutting down"))).await;
                    return;
                }
                () = self.tx.closed() => return,
                msg = requests.message() => match msg {
                    Ok(Some(req)) => self.on_request(req),
                    Ok(None) => return,
                    Err(status) => {
                        debug!(code = ?status.code(), message = status.message(), "stream error from the client");
                        return;
                    }
                },
                changed = snapshots.changed(), if source_open => {
                    if changed.is_err() {
                        debug!("the snapshot source is gone; serving the last snapshot");
                        source_open = false;
                        Ok(Step { responses: Vec::new(), answer: None })
                    } else {
                        let snapshot = snapshots.borrow_and_update().clone();
                        Ok(self.on_snapshot(snapshot))
                    }
                }
            };
        }
    }

    fn on_request(&self, request: S::Request) -> Result<Step<S::Response>, StreamError> {
        lock(&self.session).on_request(request)
    }

    fn on_snapshot(&self, snapshot: Arc<Snapshot>) -> Step<S::Response> {
        lock(&self.session).on_snapshot(snapshot)
    }

    /// Records the step's answer and sends its responses; false when the client is gone.
    async fn deliver(&self, step: Step<S::Response>) -> bool {
        if let Some(answer) = step.answer {
            self.record_answer(answer);
        }
        for (response, push) in step.responses {
            self.record_push(&push);
            if self.tx.send(Ok(response)).await.is_err() {
                return false;
            }
        }
        true
    }

    fn record_push(&self, push: &Push) {
        self.inner.metrics.pushed(&push.type_url);
        debug!(
            type_url = %push.type_url,
            version = %push.version,
            nonce = %push.nonce,
            resources = push.resources,
            removed = push.removed,
            "push"
        );
    }

    fn record_answer(&self, answer: Answer) {
        let Answer {
            type_url,
            nonce,
            reply,
        } = answer;
        let (version, nack) = match reply {
            Reply::Request => {
                debug!(type_url = %type_url, nonce = %nonce, "request");
                return;
            }
            Reply::Stale => {
                debug!(type_url = %type_url, nonce = %nonce, "request with a stale nonce: not an ACK/NACK");
                return;
            }
            Reply::Ack { version } => {
                self.inner.metrics.acked(&type_url);
                debug!(type_url = %type_url, version = %version, nonce = %nonce, "ACK");
                (version, None)
            }
            Reply::Nack(n) => {
                self.inner.metrics.nacked(&type_url);
                warn!(
                    type_url = %type_url,
                    version = %n.version,
                    rejected_version = %n.rejected_version,
                    nonce = %nonce,
                    error = %n.message,
                    "NACK: the client rejected a response"
                );
                (n.version, Some(n.message))
            }
        };
        let event = AckEvent {
            node_id: self.node_id.clone(),
            type_url,
            version,
            nonce,
            nack,
        };
        // No receiver is fine: nobody is watching.
        let _ = self.inner.events.send(event);
    }
}

/// Resolves once the server closes its streams.
async fn until_closed(mut closing: watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}
