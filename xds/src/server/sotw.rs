//! The state-of-the-world session (`StreamAggregatedResources`): per type, the subscription, what the client
//! was sent and the ACK/NACK ledger; turns requests and snapshots into `DiscoveryResponse`s. No I/O.
//!
//! A request with a stale nonce is neither ACK nor NACK, but its resource names still replace the
//! subscription (requests supersede each other), so a newly named resource is sent even then. After a
//! cluster is sent new or changed, its endpoints are sent again (Envoy warming, see [`warming`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use serde_json::Value;

use super::decide::sotw::{self, SentVersions};
use super::decide::{AckLedger, Subscription, order, warming};
use super::error::StreamError;
use super::session::{
    Answer, Dump, Nonces, Push, Session, Step, StreamKind, check_type, dump_type,
};
use crate::Snapshot;
use crate::type_url::{CLUSTER, ENDPOINT};

#[derive(Debug, Default)]
struct TypeState {
    sub: Subscription,
    sent: SentVersions,
    answered: bool,
    ledger: AckLedger,
}

/// One SotW stream's protocol state.
#[derive(Debug)]
pub(crate) struct SotwSession {
    snapshot: Arc<Snapshot>,
    types: BTreeMap<String, TypeState>,
    nonces: Nonces,
    /// Endpoint names to send again: their clusters went out new or changed since.
    rewarm: BTreeSet<String>,
}

impl SotwSession {
    /// The response for one type, if [`sotw::decide`] says there is one.
    fn respond(&mut self, type_url: &str) -> Option<(DiscoveryResponse, Push)> {
        let t = self.types.get_mut(type_url)?;
        if type_url == ENDPOINT {
            for name in std::mem::take(&mut self.rewarm) {
                t.sent.remove(&name);
            }
        }
        let d = sotw::decide(
            type_url,
            &t.sub,
            self.snapshot.resources(type_url),
            &t.sent,
            t.answered,
        );
        let before = std::mem::replace(&mut t.sent, d.sent);
        let resources = d.send?;
        if type_url == CLUSTER {
            let changed = resources
                .iter()
                .filter(|r| before.get(&r.name) != Some(&r.version));
            self.rewarm.extend(warming::rewarm(changed));
        }
        let version = self.snapshot.type_version(type_url);
        let nonce = self.nonces.next();
        t.answered = true;
        t.ledger.sent(&nonce, &version, 1);
        let push = Push {
            type_url: type_url.to_owned(),
            version: version.clone(),
            nonce: nonce.clone(),
            resources: resources.len(),
            removed: 0,
        };
        let response = DiscoveryResponse {
            version_info: version,
            resources: resources.iter().map(|r| r.body.clone()).collect(),
            type_url: type_url.to_owned(),
            nonce,
            ..Default::default()
        };
        Some((response, push))
    }
}

impl Session for SotwSession {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const KIND: StreamKind = StreamKind::Sotw;

    fn new(snapshot: Arc<Snapshot>) -> Self {
        SotwSession {
            snapshot,
            types: BTreeMap::new(),
            nonces: Nonces::new(),
            rewarm: BTreeSet::new(),
        }
    }

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn on_request(
        &mut self,
        req: DiscoveryRequest,
    ) -> Result<Step<DiscoveryResponse>, StreamError> {
        check_type(
            &req.type_url,
            self.types.contains_key(&req.type_url),
            self.types.len(),
        )?;
        let t = self.types.entry(req.type_url.clone()).or_default();
        let reply = t.ledger.reply(
            &req.response_nonce,
            Some(&req.version_info),
            req.error_detail.as_ref(),
        );
        t.sub.apply_sotw(&req.resource_names);
        let mut responses: Vec<_> = self.respond(&req.type_url).into_iter().collect();
        if req.type_url == CLUSTER && !self.rewarm.is_empty() {
            responses.extend(self.respond(ENDPOINT));
        }
        let answer = Answer {
            type_url: req.type_url,
            nonce: req.response_nonce,
            reply,
        };
        Ok(Step {
            responses,
            answer: Some(answer),
        })
    }

    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Step<DiscoveryResponse> {
        self.snapshot = snapshot;
        let types: Vec<String> = order::updates(self.types.keys().map(String::as_str))
            .into_iter()
            .map(str::to_owned)
            .collect();
        let responses = types.iter().filter_map(|t| self.respond(t)).collect();
        Step {
            responses,
            answer: None,
        }
    }
}

impl Dump for SotwSession {
    fn dump(&self) -> Value {
        let types = self
            .types
            .iter()
            .map(|(url, t)| (url.clone(), dump_type(&t.sub, &t.ledger, t.sent.len())))
            .collect::<serde_json::Map<_, _>>();
        Value::Object(types)
    }
}

#[cfg(test)]
mod tests;
