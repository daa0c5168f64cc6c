//! Envoy's HTTP RBAC filter (`envoy.filters.http.rbac`): the typed policy and its evaluation
//! on one request. Built by `from_proto` from `RBAC` (listener filter) and `RBACPerRoute`
//! (per virtual host / route override); rule kinds the waypoint cannot evaluate are rejected
//! there, so nothing here allows by default.
//!
//! Semantics: no `rules` → allowed (only the shadow rules are evaluated and reported); ALLOW →
//! allowed iff some policy matches; DENY → denied iff some policy matches; LOG → allowed. A
//! policy matches when one of its permissions and one of its principals match. Policies are
//! kept in name order, as Envoy holds them, so the reported policy is the first matching name.

use ipnet::IpNet;

use super::select::path_only;
use super::{ConnectionView, HeaderMatch, RequestView, StringMatch};

/// One RBAC filter configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RbacFilter {
    /// Enforced rules; `None` lets every request through.
    pub rules: Option<RbacRules>,
    /// Dry-run rules: evaluated and reported, never enforced.
    pub shadow_rules: Option<RbacRules>,
    /// `shadow_rules_stat_prefix` (Istio: `istio_dry_run_allow_` / `istio_dry_run_deny_`).
    pub shadow_rules_stat_prefix: String,
}

impl RbacFilter {
    /// The filter switched off: an `RBACPerRoute` without `rbac`, or a filter marked
    /// `disabled` on the listener. Allows everything and reports nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Whether this is [`RbacFilter::disabled`] (neither enforced nor shadow rules).
    pub fn is_disabled(&self) -> bool {
        self.rules.is_none() && self.shadow_rules.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacAction {
    Allow,
    Deny,
    Log,
}

/// An action and its named policies (in name order).
#[derive(Debug, Clone, PartialEq)]
pub struct RbacRules {
    pub action: RbacAction,
    pub policies: Vec<RbacPolicy>,
}

/// Matches when any permission and any principal match (both lists are non-empty).
#[derive(Debug, Clone, PartialEq)]
pub struct RbacPolicy {
    pub name: String,
    pub permissions: Vec<Permission>,
    pub principals: Vec<Principal>,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Permission {
    Any,
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    /// A request header (pseudo-headers as in route matching).
    Header(HeaderMatch),
    /// The path without the query.
    UrlPath(StringMatch),
    /// The original destination IP.
    DestinationIp(IpNet),
    DestinationPort(u16),
    /// `[start, end)`.
    DestinationPortRange {
        start: u32,
        end: u32,
    },
    /// TLS SNI: the waypoint's HTTP streams have none, so this never matches.
    RequestedServerName(StringMatch),
    /// Dynamic metadata (`metadata`, `sourced_metadata`): none here, so this never matches.
    Metadata,
}

/// Who asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    Any,
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
    /// The peer's SPIFFE URI; `None` = any authenticated peer. No peer identity never matches.
    Authenticated(Option<StringMatch>),
    /// `direct_remote_ip`, `remote_ip` and the deprecated `source_ip` all compare
    /// [`ConnectionView::remote_ip`] (the waypoint does not trust `x-forwarded-for`).
    /// IPv4-mapped IPv6 addresses compare as IPv4.
    RemoteIp(IpNet),
    Header(HeaderMatch),
    UrlPath(StringMatch),
    /// Dynamic metadata: none here, so this never matches.
    Metadata,
}

/// The verdict of one filter.
#[derive(Debug, Clone, PartialEq)]
pub struct RbacDecision {
    pub allowed: bool,
    /// The policy that decided (the matching policy for DENY/LOG/allowing ALLOW).
    pub policy: Option<String>,
    /// The dry-run verdict, when the filter has shadow rules.
    pub shadow: Option<ShadowDecision>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShadowDecision {
    pub allowed: bool,
    pub policy: Option<String>,
}

/// Evaluates `filter` on one request.
pub fn evaluate(
    filter: &RbacFilter,
    req: &RequestView<'_>,
    conn: &ConnectionView<'_>,
) -> RbacDecision {
    let (allowed, policy) = filter
        .rules
        .as_ref()
        .map_or((true, None), |r| verdict(r, req, conn));
    let shadow = filter.shadow_rules.as_ref().map(|r| {
        let (allowed, policy) = verdict(r, req, conn);
        ShadowDecision { allowed, policy }
    });
    RbacDecision {
        allowed,
        policy,
        shadow,
    }
}

fn verdict(
    rules: &RbacRules,
    req: &RequestView<'_>,
    conn: &ConnectionView<'_>,
) -> (bool, Option<String>) {
    let matched = rules
        .policies
        .iter()
        .find(|p| p.matches(req, conn))
        .map(|p| p.name.clone());
    let allowed = match rules.action {
        RbacAction::Allow => matched.is_some(),
        RbacAction::Deny => matched.is_none(),
        RbacAction::Log => true,
    };
    (allowed, matched)
}

impl RbacPolicy {
    pub fn matches(&self, req: &RequestView<'_>, conn: &ConnectionView<'_>) -> bool {
        self.permissions.iter().any(|p| p.matches(req, conn))
            && self.principals.iter().any(|p| p.matches(req, conn))
    }
}

impl Permission {
    pub fn matches(&self, req: &RequestView<'_>, conn: &ConnectionView<'_>) -> bool {
        match self {
            Permission::Any => true,
            Permission::And(all) => all.iter().all(|p| p.matches(req, conn)),
            Permission::Or(any) => any.iter().any(|p| p.matches(req, conn)),
            Permission::Not(p) => !p.matches(req, conn),
            Permission::Header(h) => h.matches(req),
            Permission::UrlPath(m) => m.matches(path_only(req.path_and_query)),
            Permission::DestinationIp(net) => net.contains(&conn.destination.ip().to_canonical()),
            Permission::DestinationPort(port) => conn.destination.port() == *port,
            Permission::DestinationPortRange { start, end } => {
                (*start..*end).contains(&u32::from(conn.destination.port()))
            }
            Permission::RequestedServerName(_) | Permission::Metadata => false,
        }
    }
}

impl Principal {
    pub fn matches(&self, req: &RequestView<'_>, conn: &ConnectionView<'_>) -> bool {
        match self {
            Principal::Any => true,
            Principal::And(all) => all.iter().all(|p| p.matches(req, conn)),
            Principal::Or(any) => any.iter().any(|p| p.matches(req, conn)),
            Principal::Not(p) => !p.matches(req, conn),
            Principal::Authenticated(name) => match (conn.peer_identity, name) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(id), Some(m)) => m.matches(&id.to_uri()),
            },
            Principal::RemoteIp(net) => net.contains(&conn.remote_ip.to_canonical()),
            Principal::Header(h) => h.matches(req),
            Principal::UrlPath(m) => m.matches(path_only(req.path_and_query)),
            Principal::Metadata => false,
        }
    }
}

#[cfg(test)]
mod tests;
