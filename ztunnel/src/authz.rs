//! L4 authorization (spec §5): which policies apply to a destination workload, and the
//! allow/deny verdict for one connection.
//!
//! Pure and synchronous: no I/O, no state, no clock. The caller (the inbound proxy) looks the
//! policies up in its snapshot with [`applicable`], builds a [`ConnectionInfo`] from the accepted
//! connection and acts on the [`Verdict`] of [`evaluate`]. Does not own the policy store
//! ([`crate::state`]), the policy types ([`crate::model::policy`]) nor access logging of the
//! verdict; decisions themselves are logged at debug level with target `authz`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use hbone::Identity;
use ipnet::IpNet;

use crate::model::{
    Authorization, Match, PolicyAction, PolicyScope, ServiceAccountMatch, StringMatch, Workload,
};

/// The facts about one connection that L4 policy can look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The peer's TCP address (the waypoint's IP when traffic came through one).
    pub src_ip: IpAddr,
    /// The peer certificate identity; `None` for plaintext (15006) connections.
    pub src_identity: Option<Identity>,
    /// The local (destination workload) IP.
    pub dst_ip: IpAddr,
    /// The target (container) port, after service-port translation.
    pub dst_port: u16,
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny {
        /// `ns/name` of the matching DENY policy; `None` when ALLOW policies exist and none
        /// matched.
        policy: Option<String>,
    },
}

impl Verdict {
    pub fn is_allow(&self) -> bool {
        matches!(self, Verdict::Allow)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Allow => f.write_str("allow"),
            Verdict::Deny { policy: Some(p) } => write!(f, "denied by policy {p}"),
            Verdict::Deny { policy: None } => f.write_str("no ALLOW policy matched"),
        }
    }
}

/// The policies that apply to destination workload `w` (spec §5.1): NAMESPACE-scope policies of
/// `w.namespace`, every GLOBAL policy, and each key in `w.authorization_policies`. Unknown keys
/// are skipped with a warning. `all` is keyed by `ns/name`; each policy appears at most once.
pub fn applicable<'a>(
    all: &'a BTreeMap<String, Arc<Authorization>>,
    w: &Workload,
) -> Vec<&'a Arc<Authorization>> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for (key, p) in all {
        let by_scope = match p.scope {
            PolicyScope::Global => true,
            PolicyScope::Namespace => p.namespace == w.namespace,
            PolicyScope::WorkloadSelector => false,
        };
        if by_scope && seen.insert(key.as_str()) {
            out.push(p);
        }
    }
    for key in &w.authorization_policies {
        match all.get_key_value(key.as_str()) {
            Some((k, p)) => {
                if seen.insert(k.as_str()) {
                    out.push(p);
                }
            }
            None => tracing::warn!(
                target: "authz",
                policy = %key,
                workload.uid = %w.uid,
                "workload references an unknown authorization policy; skipped"
            ),
        }
    }
    out
}

/// The verdict for `conn` under `policies` (spec §5.2):
/// 1. any matching DENY → deny; 2. no ALLOW policies → allow; 3. any matching ALLOW → allow,
///    otherwise deny. Dry-run policies are evaluated and logged but never change the verdict.
pub fn evaluate<'a>(
    policies: impl IntoIterator<Item = &'a Authorization>,
    conn: &ConnectionInfo,
) -> Verdict {
    let peer = Peer::new(conn);
    let mut have_allow = false;
    let mut allowed_by: Option<&Authorization> = None;
    let mut denied_by: Option<&Authorization> = None;
    for p in policies {
        if p.dry_run {
            // Evaluated even once the verdict is known, so every dry-run result is logged.
            let matched = policy_matches(p, &peer);
            tracing::debug!(
                target: "authz",
                policy = %p,
                action = ?p.action,
                matched,
                src.addr = %conn.src_ip,
                src.identity = ?conn.src_identity,
                dst.addr = %conn.dst_ip,
                dst.port = conn.dst_port,
                "dry-run policy evaluated; verdict unaffected"
            );
            continue;
        }
        if denied_by.is_some() {
            continue;
        }
        match p.action {
            PolicyAction::Deny => {
                if policy_matches(p, &peer) {
                    denied_by = Some(p);
                }
            }
            PolicyAction::Allow => {
                have_allow = true;
                if allowed_by.is_none() && policy_matches(p, &peer) {
                    allowed_by = Some(p);
                }
            }
        }
    }
    if let Some(p) = denied_by {
        log_decision(conn, "deny", Some(p));
        return Verdict::Deny {
            policy: Some(p.key()),
        };
    }
    if !have_allow {
        log_decision(conn, "allow", None);
        return Verdict::Allow;
    }
    match allowed_by {
        Some(p) => {
            log_decision(conn, "allow", Some(p));
            Verdict::Allow
        }
        None => {
            log_decision(conn, "deny", None);
            Verdict::Deny { policy: None }
        }
    }
}

fn log_decision(conn: &ConnectionInfo, verdict: &str, policy: Option<&Authorization>) {
    tracing::debug!(
        target: "authz",
        verdict,
        policy = policy.map(tracing::field::display),
        src.addr = %conn.src_ip,
        src.identity = ?conn.src_identity,
        dst.addr = %conn.dst_ip,
        dst.port = conn.dst_port,
        "authorization decision"
    );
}

/// What the matchers compare, computed once per connection.
struct Peer<'c> {
    /// Identity without `spiffe://`.
    principal: Option<String>,
    identity: Option<&'c Identity>,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    dst_port: u16,
}

impl<'c> Peer<'c> {
    fn new(conn: &'c ConnectionInfo) -> Self {
        let identity = conn.src_identity.as_ref();
        Peer {
            principal: identity.map(|id| {
                format!(
                    "{}/ns/{}/sa/{}",
                    id.trust_domain(),
                    id.namespace(),
                    id.service_account()
                )
            }),
            identity,
            // A v4 peer on a dual-stack socket shows up as ::ffff:a.b.c.d.
            src_ip: conn.src_ip.to_canonical(),
            dst_ip: conn.dst_ip.to_canonical(),
            dst_port: conn.dst_port,
        }
    }

    fn namespace(&self) -> &str {
        self.identity.map_or("", |id| id.namespace())
    }
}

/// OR over rules; zero rules never match.
fn policy_matches(p: &Authorization, peer: &Peer<'_>) -> bool {
    p.rules.iter().any(|rule| {
        // AND over clauses (zero clauses match); OR over matches within a clause (zero
        // matches match).
        rule.iter()
            .all(|clause| clause.is_empty() || clause.iter().any(|m| match_matches(m, peer)))
    })
}

/// AND over the set categories; an all-empty match never matches.
fn match_matches(m: &Match, peer: &Peer<'_>) -> bool {
    if is_empty(m) {
        return false;
    }
    let ns = peer.namespace();
    let principal = peer.principal.as_deref();
    let sa = |s: &ServiceAccountMatch| {
        peer.identity.is_some_and(|id| {
            id.namespace() == s.namespace && id.service_account() == s.service_account
        })
    };
    let principal_is = |s: &StringMatch| principal.is_some_and(|p| s.matches(p));
    let contains = |ip: IpAddr| move |net: &IpNet| net.contains(&ip);

    list(&m.namespaces, &m.not_namespaces, |s| s.matches(ns))
        && list(&m.principals, &m.not_principals, principal_is)
        && list(&m.service_accounts, &m.not_service_accounts, sa)
        && list(&m.source_ips, &m.not_source_ips, contains(peer.src_ip))
        && list(
            &m.destination_ips,
            &m.not_destination_ips,
            contains(peer.dst_ip),
        )
        && list(&m.destination_ports, &m.not_destination_ports, |p| {
            *p == peer.dst_port
        })
}

/// A positive list passes if some entry matches, a negated list if none does; an empty list
/// passes.
fn list<T>(positive: &[T], negated: &[T], f: impl Fn(&T) -> bool) -> bool {
    (positive.is_empty() || positive.iter().any(&f)) && !negated.iter().any(&f)
}

fn is_empty(m: &Match) -> bool {
    *m == Match::default()
}

#[cfg(test)]
mod tests;
