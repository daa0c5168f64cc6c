//! What the two session kinds (SotW and delta) have in common: the [`Session`] state machine interface the
//! stream loop drives, the [`Step`] it returns, nonces, and limits. A session does no I/O: it turns a
//! request or a new snapshot into responses plus what the request said about earlier responses.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use serde_json::{Value, json};

use super::decide::{AckLedger, Reply, Subscription};
use super::error::StreamError;
use crate::Snapshot;

/// At most this many type URLs per stream (a stream naming more is ended: it is not a real client).
pub(crate) const MAX_TYPES: usize = 64;

/// The protocol variant of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Sotw,
    Delta,
}

impl StreamKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StreamKind::Sotw => "sotw",
            StreamKind::Delta => "delta",
        }
    }
}

/// One response about to go out, described for logs, metrics and the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Push {
    pub(crate) type_url: String,
    pub(crate) version: String,
    pub(crate) nonce: String,
    pub(crate) resources: usize,
    pub(crate) removed: usize,
}

/// What one request said about the responses of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) type_url: String,
    pub(crate) nonce: String,
    pub(crate) reply: Reply,
}

/// The result of feeding a session one event: responses to send in order, and the request's answer.
#[derive(Debug)]
pub(crate) struct Step<R> {
    pub(crate) responses: Vec<(R, Push)>,
    pub(crate) answer: Option<Answer>,
}

/// The per-stream protocol state machine of one variant.
pub(crate) trait Session: Dump + Sized {
    type Request: Send + 'static;
    type Response: Send + 'static;
    const KIND: StreamKind;

    fn new(snapshot: Arc<Snapshot>) -> Self;
    /// The node of a request (only the first request of a stream needs one).
    fn node(request: &Self::Request) -> Option<&Node>;
    fn on_request(&mut self, request: Self::Request) -> Result<Step<Self::Response>, StreamError>;
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Step<Self::Response>;
}

/// The debug view of a session: type URL → state.
pub(crate) trait Dump: Send + 'static {
    fn dump(&self) -> Value;
}

/// Rejects requests that cannot be served: no type URL, or one type too many.
pub(crate) fn check_type(type_url: &str, known: bool, types: usize) -> Result<(), StreamError> {
    if type_url.is_empty() {
        return Err(StreamError::MissingTypeUrl);
    }
    if !known && types >= MAX_TYPES {
        return Err(StreamError::TooManyTypes { max: MAX_TYPES });
    }
    Ok(())
}

/// Nonces unique per response of a stream, and across streams (a random stream prefix), so an answer
/// carried over from an earlier stream never matches.
#[derive(Debug)]
pub(crate) struct Nonces {
    prefix: u32,
    next: u64,
}

impl Nonces {
    pub(crate) fn new() -> Self {
        Nonces {
            prefix: rand::random(),
            next: 0,
        }
    }

    pub(crate) fn next(&mut self) -> String {
        self.next += 1;
        format!("{:08x}-{}", self.prefix, self.next)
    }
}

#[cfg(test)]
pub(crate) mod testing;

/// The dump of one type: subscription, last sent, last ACKed, last NACK, and how many resources the client
/// was sent / holds.
pub(crate) fn dump_type(sub: &Subscription, ledger: &AckLedger, resources: usize) -> Value {
    json!({
        "wildcard": sub.is_wildcard(),
        "names": sub.names(),
        "resources": resources,
        "last_sent": ledger.last_sent.as_ref().map(|s| json!({"version": s.version, "nonce": s.nonce})),
        "last_acked_version": ledger.acked_version,
        "last_nack": ledger.last_nack.as_ref().map(|n| json!({
            "version": n.version,
            "rejected_version": n.rejected_version,
            "nonce": n.nonce,
            "message": n.message,
        })),
    })
}
