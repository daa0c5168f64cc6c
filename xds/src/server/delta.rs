//! The incremental session (`DeltaAggregatedResources`): per type, the subscription, what the client holds
//! and the ACK/NACK ledger; turns requests and snapshots into `DeltaDiscoveryResponse`s. No I/O.
//!
//! Subscription changes are honoured whatever the nonce. On a snapshot change, updates go out type by type
//! in push order, then removals in the reverse order (routes and listeners before endpoints and clusters).
//! After a cluster is sent new or changed, its endpoints are sent again (Envoy warming, see [`warming`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as DeltaResource,
};
use serde_json::Value;

use super::decide::delta::{self, Decision, KnownSet};
use super::decide::{AckLedger, Subscription, WILDCARD, order, warming};
use super::error::StreamError;
use super::session::{
    Answer, Dump, Nonces, Push, Session, Step, StreamKind, check_type, dump_type,
};
use crate::type_url::{CLUSTER, ENDPOINT};
use crate::{Resource, Snapshot};

/// Unanswered delta responses per type that can still be ACKed or NACKed.
const ACK_WINDOW: usize = 16;

#[derive(Debug, Default)]
struct TypeState {
    sub: Subscription,
    known: KnownSet,
    answered: bool,
    ledger: AckLedger,
    /// How many names the client claimed in `initial_resource_versions` (a reconnect).
    initial_versions: usize,
}

impl TypeState {
    /// Applies a request's subscription changes; names (re)subscribed explicitly are forgotten so they are
    /// sent again (the client may have dropped them), as are names unsubscribed (the wildcard may still cover
    /// them, in which case the client must be told it keeps them).
    fn apply(&mut self, first: bool, req: &DeltaDiscoveryRequest) {
        let (subscribe, unsubscribe) = (
            &req.resource_names_subscribe,
            &req.resource_names_unsubscribe,
        );
        self.sub.apply_delta(first, subscribe, unsubscribe);
        if first {
            self.known = KnownSet::from_initial(&req.initial_resource_versions);
            self.initial_versions = req.initial_resource_versions.len();
            return;
        }
        for name in subscribe
            .iter()
            .chain(unsubscribe)
            .filter(|n| *n != WILDCARD)
        {
            self.known.forget(name);
        }
        if unsubscribe.iter().any(|n| n == WILDCARD) {
            let sub = &self.sub;
            self.known.retain(|n| sub.names_explicitly(n));
        }
    }
}

/// One delta stream's protocol state.
#[derive(Debug)]
pub(crate) struct DeltaSession {
    snapshot: Arc<Snapshot>,
    types: BTreeMap<String, TypeState>,
    nonces: Nonces,
    /// Endpoint names to send again: their clusters went out new or changed since.
    rewarm: BTreeSet<String>,
}

impl DeltaSession {
    /// Decides one type's changes; the caller sends and commits them.
    fn decide(&mut self, type_url: &str) -> Option<Decision> {
        let t = self.types.get_mut(type_url)?;
        if type_url == ENDPOINT {
            for name in std::mem::take(&mut self.rewarm) {
                t.known.forget(&name);
            }
        }
        let d = delta::decide(&t.sub, self.snapshot.resources(type_url), &t.known);
        if type_url == CLUSTER {
            self.rewarm.extend(warming::rewarm(&d.updated));
        }
        Some(d)
    }

    /// Decides, sends (if there is anything, or the type's first answer is due) and commits one type.
    fn respond(&mut self, type_url: &str) -> Option<(DeltaDiscoveryResponse, Push)> {
        let d = self.decide(type_url)?;
        let due = !d.is_empty() || self.first_answer_due(type_url);
        let out = due.then(|| self.response(type_url, &d.updated, &d.removed));
        self.commit(type_url, &d);
        out
    }

    /// Whether the type's first answer is due even with nothing in it (the snapshot declares the type).
    fn first_answer_due(&self, type_url: &str) -> bool {
        let answered = self.types.get(type_url).is_some_and(|t| t.answered);
        !answered && self.snapshot.resources(type_url).is_some()
    }

    fn commit(&mut self, type_url: &str, decision: &Decision) {
        if let Some(t) = self.types.get_mut(type_url) {
            t.known.commit(&t.sub, decision);
        }
    }

    /// Builds a response and records it in the type's ledger.
    fn response(
        &mut self,
        type_url: &str,
        updated: &[Arc<Resource>],
        removed: &[String],
    ) -> (DeltaDiscoveryResponse, Push) {
        let version = self.snapshot.type_version(type_url);
        let nonce = self.nonces.next();
        if let Some(t) = self.types.get_mut(type_url) {
            t.answered = true;
            t.ledger.sent(&nonce, &version, ACK_WINDOW);
        }
        let push = Push {
            type_url: type_url.to_owned(),
            version: version.clone(),
            nonce: nonce.clone(),
            resources: updated.len(),
            removed: removed.len(),
        };
        let response = DeltaDiscoveryResponse {
            system_version_info: version,
            resources: updated.iter().map(|r| to_delta(r)).collect(),
            type_url: type_url.to_owned(),
            removed_resources: removed.to_vec(),
            nonce,
            ..Default::default()
        };
        (response, push)
    }
}

fn to_delta(r: &Resource) -> DeltaResource {
    DeltaResource {
        name: r.name.clone(),
        version: r.version.clone(),
        resource: Some(r.body.clone()),
        ..Default::default()
    }
}

impl Session for DeltaSession {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const KIND: StreamKind = StreamKind::Delta;

    fn new(snapshot: Arc<Snapshot>) -> Self {
        DeltaSession {
            snapshot,
            types: BTreeMap::new(),
            nonces: Nonces::new(),
            rewarm: BTreeSet::new(),
        }
    }

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn on_request(
        &mut self,
        req: DeltaDiscoveryRequest,
    ) -> Result<Step<DeltaDiscoveryResponse>, StreamError> {
        let first = !self.types.contains_key(&req.type_url);
        check_type(&req.type_url, !first, self.types.len())?;
        let t = self.types.entry(req.type_url.clone()).or_default();
        let reply = t
            .ledger
            .reply(&req.response_nonce, None, req.error_detail.as_ref());
        t.apply(first, &req);
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

    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Step<DeltaDiscoveryResponse> {
        self.snapshot = snapshot;
        let urls: Vec<String> = order::updates(self.types.keys().map(String::as_str))
            .into_iter()
            .map(str::to_owned)
            .collect();
        // In push order, so a cluster's decision marks its endpoints before they are decided.
        let decisions: Vec<(String, Decision)> = urls
            .into_iter()
            .filter_map(|u| {
                let d = self.decide(&u)?;
                Some((u, d))
            })
            .collect();
        let mut responses = Vec::new();
        for (url, d) in &decisions {
            if !d.updated.is_empty() || (d.removed.is_empty() && self.first_answer_due(url)) {
                responses.push(self.response(url, &d.updated, &[]));
            }
        }
        for (url, d) in decisions.iter().rev() {
            if !d.removed.is_empty() {
                responses.push(self.response(url, &[], &d.removed));
            }
        }
        for (url, d) in &decisions {
            self.commit(url, d);
        }
        Step {
            responses,
            answer: None,
        }
    }
}

impl Dump for DeltaSession {
    fn dump(&self) -> Value {
        let types = self
            .types
            .iter()
            .map(|(url, t)| {
                let mut v = dump_type(&t.sub, &t.ledger, t.known.held());
                v["initial_resource_versions"] = t.initial_versions.into();
                (url.clone(), v)
            })
            .collect::<serde_json::Map<_, _>>();
        Value::Object(types)
    }
}

#[cfg(test)]
mod tests;
