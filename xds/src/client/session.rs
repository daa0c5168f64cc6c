//! The client's protocol state, without I/O: what to request on (re)connect, how to apply a
//! response and what to answer, how to change subscriptions. Table-tested.
//!
//! Per type it keeps the subscription, the resources held (name → version; SotW resources get a
//! digest of their bytes as version, so unchanged ones are not handed to the handler again),
//! the last accepted SotW version and the last nonce of the current stream.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;
use sha2::{Digest, Sha256};

use super::Handler;
use super::names;
use crate::type_url;

/// `google.rpc.Code.INVALID_ARGUMENT`, the code of our NACKs.
const INVALID_ARGUMENT: i32 = 3;

/// What a type is subscribed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Names {
    Wildcard,
    Named(BTreeSet<String>),
}

/// One resource handed to a handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub name: String,
    pub version: String,
    pub body: Any,
}

/// One response's worth of changes for a handler.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub updated: Vec<Update>,
    pub removed: Vec<String>,
}

/// A resource the handler (or the client) refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub name: String,
    pub reason: String,
}

impl Rejected {
    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejected {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

/// What applying a response did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub updated: usize,
    pub removed: usize,
    /// The NACK message (`name: reason; …`) when something was rejected.
    pub nack: Option<String>,
}

#[derive(Debug)]
struct TypeState {
    names: Names,
    held: BTreeMap<String, String>,
    sotw_version: String,
    nonce: String,
}

/// The state of every subscribed type.
#[derive(Debug)]
pub struct Session {
    order: Vec<String>,
    types: BTreeMap<String, TypeState>,
}

impl Session {
    pub fn new(subscriptions: Vec<(String, Names)>) -> Self {
        let order = subscriptions.iter().map(|(t, _)| t.clone()).collect();
        let types = subscriptions
            .into_iter()
            .map(|(t, names)| {
                (
                    t,
                    TypeState {
                        names,
                        held: BTreeMap::new(),
                        sotw_version: String::new(),
                        nonce: String::new(),
                    },
                )
            })
            .collect();
        Session { order, types }
    }

    /// A new stream: nonces of the old one mean nothing.
    pub fn reconnected(&mut self) {
        for t in self.types.values_mut() {
            t.nonce.clear();
        }
    }

    /// How many resources of `type_url` are held.
    pub fn held_count(&self, type_url: &str) -> usize {
        self.types.get(type_url).map_or(0, |t| t.held.len())
    }

    /// Resources held of `type_url` (name → version).
    pub fn held(&self, type_url: &str) -> BTreeMap<String, String> {
        self.types
            .get(type_url)
            .map(|t| t.held.clone())
            .unwrap_or_default()
    }

    /// The first request of each type on a (re)connected delta stream, carrying what is held.
    pub fn initial_delta(&self) -> Vec<DeltaDiscoveryRequest> {
        self.ordered()
            .map(|(type_url, t)| DeltaDiscoveryRequest {
                type_url: type_url.to_owned(),
                resource_names_subscribe: match &t.names {
                    Names::Wildcard => Vec::new(),
                    Names::Named(n) => n.iter().cloned().collect(),
                },
                initial_resource_versions: t
                    .held
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>(),
                ..Default::default()
            })
            .collect()
    }

    /// The first request of each type on a (re)connected SotW stream, carrying the last
    /// accepted version.
    pub fn initial_sotw(&self) -> Vec<DiscoveryRequest> {
        self.ordered()
            .map(|(type_url, t)| DiscoveryRequest {
                type_url: type_url.to_owned(),
                version_info: t.sotw_version.clone(),
                resource_names: sotw_names(&t.names, false),
                ..Default::default()
            })
            .collect()
    }

    fn ordered(&self) -> impl Iterator<Item = (&str, &TypeState)> {
        self.order
            .iter()
            .filter_map(|t| self.types.get(t).map(|s| (t.as_str(), s)))
    }

    /// Applies a delta response through `handler`; returns the ACK/NACK to send.
    pub fn on_delta_response(
        &mut self,
        resp: DeltaDiscoveryResponse,
        handler: &mut dyn Handler,
    ) -> (DeltaDiscoveryRequest, Outcome) {
        let type_url = resp.type_url.clone();
        let mut rejected = Vec::new();
        let mut changes = Changes::default();
        let mut seen = BTreeSet::new();
        let state = self
            .types
            .entry(type_url.clone())
            .or_insert_with(|| TypeState {
                names: Names::Wildcard,
                held: BTreeMap::new(),
                sotw_version: String::new(),
                nonce: String::new(),
            });
        state.nonce = resp.nonce.clone();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &resp.resources {
            *counts.entry(r.name.as_str()).or_default() += 1;
        }
        let duplicates: BTreeSet<String> = counts
            .into_iter()
            .filter(|(_, c)| *c > 1)
            .map(|(n, _)| n.to_owned())
            .collect();
        for name in &duplicates {
            rejected.push(Rejected::new(name, "duplicate name in one response"));
        }
        for r in resp.resources {
            seen.insert(r.name.clone());
            if duplicates.contains(&r.name) {
                continue;
            }
            match r.resource {
                Some(body) if body.type_url == type_url => changes.updated.push(Update {
                    name: r.name,
                    version: r.version,
                    body,
                }),
                Some(body) => rejected.push(Rejected::new(
                    &r.name,
                    format!("type {} in a {type_url} response", body.type_url),
                )),
                // A TTL heartbeat for a resource held: nothing to do.
                None if state.held.contains_key(&r.name) => {}
                None => rejected.push(Rejected::new(&r.name, "no resource body")),
            }
        }
        changes.removed = resp
            .removed_resources
            .into_iter()
            .filter(|n| !seen.contains(n))
            .collect();
        let outcome = apply(state, changes, rejected, handler);
        let ack = DeltaDiscoveryRequest {
            type_url,
            response_nonce: resp.nonce,
            error_detail: nack_status(&outcome),
            ..Default::default()
        };
        (ack, outcome)
    }

    /// Applies a SotW response through `handler`; returns the ACK/NACK to send.
    pub fn on_sotw_response(
        &mut self,
        resp: DiscoveryResponse,
        handler: &mut dyn Handler,
    ) -> (DiscoveryRequest, Outcome) {
        let type_url = resp.type_url.clone();
        let state = self
            .types
            .entry(type_url.clone())
            .or_insert_with(|| TypeState {
                names: Names::Wildcard,
                held: BTreeMap::new(),
                sotw_version: String::new(),
                nonce: String::new(),
            });
        state.nonce = resp.nonce.clone();
        let mut rejected = Vec::new();
        let mut named = Vec::new();
        for (i, body) in resp.resources.into_iter().enumerate() {
            let body = match names::unwrap(body) {
                Ok(b) => b,
                Err(e) => {
                    rejected.push(Rejected::new(format!("resources[{i}]"), e));
                    continue;
                }
            };
            if body.type_url != type_url {
                rejected.push(Rejected::new(
                    format!("resources[{i}]"),
                    format!("type {} in a {type_url} response", body.type_url),
                ));
                continue;
            }
            match handler.resource_name(&body) {
                Ok(name) => named.push((name, body)),
                Err(e) => rejected.push(Rejected::new(format!("resources[{i}]"), e)),
            }
        }
        let mut present = BTreeSet::new();
        let duplicates: BTreeSet<String> = named
            .iter()
            .filter(|(n, _)| !present.insert(n.clone()))
            .map(|(n, _)| n.clone())
            .collect();
        for name in &duplicates {
            rejected.push(Rejected::new(name, "duplicate name in one response"));
        }
        let mut changes = Changes::default();
        for (name, body) in named {
            if duplicates.contains(&name) {
                continue;
            }
            let version = digest(&body.value);
            if state.held.get(&name) != Some(&version) {
                changes.updated.push(Update {
                    name,
                    version,
                    body,
                });
            }
        }
        // Absence means deletion for wildcard subscriptions and for listeners and clusters.
        let full_state = state.names == Names::Wildcard
            || type_url == type_url::LISTENER
            || type_url == type_url::CLUSTER;
        if full_state {
            let rejected_names: BTreeSet<&str> = rejected.iter().map(|r| r.name.as_str()).collect();
            changes.removed = state
                .held
                .keys()
                .filter(|n| !present.contains(*n) && !rejected_names.contains(n.as_str()))
                .cloned()
                .collect();
        }
        let outcome = apply(state, changes, rejected, handler);
        if outcome.nack.is_none() {
            state.sotw_version = resp.version_info;
        }
        let ack = DiscoveryRequest {
            version_info: state.sotw_version.clone(),
            resource_names: sotw_names(&state.names, false),
            type_url,
            response_nonce: resp.nonce,
            error_detail: nack_status(&outcome),
            ..Default::default()
        };
        (ack, outcome)
    }

    /// Changes a delta subscription; resources no longer subscribed are dropped locally.
    pub fn resubscribe_delta(
        &mut self,
        type_url: &str,
        names: Names,
        handler: &mut dyn Handler,
    ) -> Option<(DeltaDiscoveryRequest, Outcome)> {
        let state = self.types.get_mut(type_url)?;
        if state.names == names {
            return None;
        }
        let (subscribe, unsubscribe) = match (&state.names, &names) {
            (Names::Named(old), Names::Named(new)) => (
                new.difference(old).cloned().collect(),
                old.difference(new).cloned().collect(),
            ),
            (Names::Wildcard, Names::Named(new)) => {
                (new.iter().cloned().collect(), vec!["*".to_owned()])
            }
            (Names::Named(old), Names::Wildcard) => {
                (vec!["*".to_owned()], old.iter().cloned().collect())
            }
            (Names::Wildcard, Names::Wildcard) => return None,
        };
        let outcome = drop_unsubscribed(state, names, handler);
        Some((
            DeltaDiscoveryRequest {
                type_url: type_url.to_owned(),
                resource_names_subscribe: subscribe,
                resource_names_unsubscribe: unsubscribe,
                ..Default::default()
            },
            outcome,
        ))
    }

    /// Changes a SotW subscription: the full list again, with the current version and nonce.
    pub fn resubscribe_sotw(
        &mut self,
        type_url: &str,
        names: Names,
        handler: &mut dyn Handler,
    ) -> Option<(DiscoveryRequest, Outcome)> {
        let state = self.types.get_mut(type_url)?;
        if state.names == names {
            return None;
        }
        let outcome = drop_unsubscribed(state, names, handler);
        Some((
            DiscoveryRequest {
                version_info: state.sotw_version.clone(),
                resource_names: sotw_names(&state.names, true),
                type_url: type_url.to_owned(),
                response_nonce: state.nonce.clone(),
                ..Default::default()
            },
            outcome,
        ))
    }
}

/// SotW names: wildcard is the empty list at first, and `*` once a type has been named.
fn sotw_names(names: &Names, explicit_wildcard: bool) -> Vec<String> {
    match names {
        Names::Wildcard if explicit_wildcard => vec!["*".to_owned()],
        Names::Wildcard => Vec::new(),
        Names::Named(n) => n.iter().cloned().collect(),
    }
}

fn drop_unsubscribed(state: &mut TypeState, names: Names, handler: &mut dyn Handler) -> Outcome {
    let removed: Vec<String> = match &names {
        Names::Wildcard => Vec::new(),
        Names::Named(keep) => state
            .held
            .keys()
            .filter(|n| !keep.contains(*n))
            .cloned()
            .collect(),
    };
    state.names = names;
    if removed.is_empty() {
        return Outcome::default();
    }
    apply(
        state,
        Changes {
            updated: Vec::new(),
            removed,
        },
        Vec::new(),
        handler,
    )
}

/// Hands `changes` to the handler and records what was accepted.
fn apply(
    state: &mut TypeState,
    changes: Changes,
    mut rejected: Vec<Rejected>,
    handler: &mut dyn Handler,
) -> Outcome {
    let offered: Vec<(String, String)> = changes
        .updated
        .iter()
        .map(|u| (u.name.clone(), u.version.clone()))
        .collect();
    let removed = changes.removed.clone();
    if !changes.updated.is_empty() || !changes.removed.is_empty() {
        rejected.extend(handler.apply(changes));
    }
    let refused: BTreeSet<&str> = rejected.iter().map(|r| r.name.as_str()).collect();
    let mut updated = 0;
    for (name, version) in offered {
        if !refused.contains(name.as_str()) {
            state.held.insert(name, version);
            updated += 1;
        }
    }
    for name in &removed {
        state.held.remove(name);
    }
    let nack = (!rejected.is_empty()).then(|| {
        rejected
            .iter()
            .map(|r| format!("{}: {}", r.name, r.reason))
            .collect::<Vec<_>>()
            .join("; ")
    });
    Outcome {
        updated,
        removed: removed.len(),
        nack,
    }
}

fn nack_status(outcome: &Outcome) -> Option<Status> {
    outcome.nack.as_ref().map(|message| Status {
        code: INVALID_ARGUMENT,
        message: message.clone(),
        details: Vec::new(),
    })
}

fn digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
