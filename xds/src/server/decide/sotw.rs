//! What a state-of-the-world response for one type should carry.
//!
//! Listeners and clusters, and every wildcard subscription, get the complete set the client wants (absence
//! means deletion); other types get only the resources the client has not been sent at their current version
//! (new names included, so a re-subscribed name is sent again). Nothing is sent when nothing changed, except
//! that the first answer to a type the snapshot declares is always sent (possibly empty) so the client's
//! initial fetch completes.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Subscription;
use crate::Resource;
use crate::type_url::{CLUSTER, LISTENER};

/// Name → version of the resources a client was sent.
pub(crate) type SentVersions = BTreeMap<String, String>;

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    /// The resources of the response to send, or `None` for no response.
    pub(crate) send: Option<Vec<Arc<Resource>>>,
    /// What the client has been sent once the response (if any) is out.
    pub(crate) sent: SentVersions,
}

/// Whether responses for this type carry the complete set.
pub(crate) fn full_state(type_url: &str, sub: &Subscription) -> bool {
    sub.is_wildcard() || type_url == LISTENER || type_url == CLUSTER
}

/// Decides the response for `type_url` given the subscription, the snapshot's resources of that type
/// (`None` when the snapshot does not declare the type), what the client was sent, and whether the type
/// has been answered on this stream.
pub(crate) fn decide(
    type_url: &str,
    sub: &Subscription,
    resources: Option<&BTreeMap<String, Arc<Resource>>>,
    sent: &SentVersions,
    answered: bool,
) -> Decision {
    let want: Vec<&Arc<Resource>> = resources
        .into_iter()
        .flat_map(|m| m.values())
        .filter(|r| sub.covers(&r.name))
        .collect();
    let want_versions: SentVersions = want
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    let first = !answered && resources.is_some();

    if full_state(type_url, sub) {
        let changed = want_versions != *sent || first;
        let send = changed.then(|| want.into_iter().cloned().collect());
        return Decision {
            send,
            sent: want_versions,
        };
    }
    let fresh: Vec<Arc<Resource>> = want
        .into_iter()
        .filter(|r| sent.get(&r.name) != Some(&r.version))
        .cloned()
        .collect();
    let send = (!fresh.is_empty()).then_some(fresh);
    Decision {
        send,
        sent: want_versions,
    }
}

#[cfg(test)]
mod tests;
