//! What an incremental (delta) response for one type should carry, given what the client is known to have.
//!
//! Updated: every covered resource whose version differs from the client's. Removed: every resource the client
//! has that the server no longer has, and every explicitly subscribed name the server does not have and has not
//! yet reported (so the client need not wait for its does-not-exist timeout).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::Subscription;
use crate::Resource;

/// What the server believes the client holds for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Known {
    /// The client has this version.
    Version(String),
    /// The client was told the name does not exist.
    Absent,
}

/// Name → what the client holds, for one type. Holds only names the client is subscribed to (by name or
/// wildcard); the session drops entries when they are unsubscribed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KnownSet(BTreeMap<String, Known>);

impl KnownSet {
    /// The versions a reconnecting client claims (`initial_resource_versions`).
    pub(crate) fn from_initial(initial: &HashMap<String, String>) -> Self {
        KnownSet(
            initial
                .iter()
                .map(|(n, v)| (n.clone(), Known::Version(v.clone())))
                .collect(),
        )
    }

    /// Forgets `name`: it will be sent again (or reported absent again) if still covered.
    pub(crate) fn forget(&mut self, name: &str) {
        self.0.remove(name);
    }

    /// Keeps only the names `keep` accepts.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.0.retain(|n, _| keep(n));
    }

    /// Number of resources the client holds.
    pub(crate) fn held(&self) -> usize {
        self.0
            .values()
            .filter(|k| matches!(k, Known::Version(_)))
            .count()
    }

    /// Records a decision as delivered.
    pub(crate) fn commit(&mut self, sub: &Subscription, decision: &Decision) {
        for r in &decision.updated {
            self.0
                .insert(r.name.clone(), Known::Version(r.version.clone()));
        }
        for name in &decision.removed {
            if sub.names_explicitly(name) {
                self.0.insert(name.clone(), Known::Absent);
            } else {
                self.0.remove(name);
            }
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Decision {
    pub(crate) updated: Vec<Arc<Resource>>,
    pub(crate) removed: Vec<String>,
}

impl Decision {
    pub(crate) fn is_empty(&self) -> bool {
        self.updated.is_empty() && self.removed.is_empty()
    }
}

/// Decides the changes to send for one type. `resources` is `None` when the snapshot does not declare the type.
pub(crate) fn decide(
    sub: &Subscription,
    resources: Option<&BTreeMap<String, Arc<Resource>>>,
    known: &KnownSet,
) -> Decision {
    let empty = BTreeMap::new();
    let resources = resources.unwrap_or(&empty);
    let updated = resources
        .values()
        .filter(|r| sub.covers(&r.name))
        .filter(|r| !matches!(known.0.get(&r.name), Some(Known::Version(v)) if *v == r.version))
        .cloned()
        .collect();
    let mut removed: Vec<String> = known
        .0
        .iter()
        .filter(|(name, k)| matches!(k, Known::Version(_)) && !resources.contains_key(*name))
        .map(|(name, _)| name.clone())
        .collect();
    removed.extend(
        sub.names()
            .iter()
            .filter(|name| !resources.contains_key(*name) && !known.0.contains_key(*name))
            .cloned(),
    );
    removed.sort();
    removed.dedup();
    Decision { updated, removed }
}

#[cfg(test)]
mod tests;
