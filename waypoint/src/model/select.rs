//! Route selection: which virtual host serves a request (destination address first, then
//! Envoy's domain matching on the authority), which of its routes matches, and which weighted
//! cluster a draw picks. Pure lookups over a [`RouteTable`]; linear scans (tables are small).

mod matching;

use std::net::SocketAddr;

use super::{RequestView, Route, RouteTable, VirtualHost, WeightedCluster};

pub use matching::{SCHEME, header_value, is_grpc, path_only, query_param};

/// The virtual host for a request. A virtual host listing the original destination
/// (`ip:port`, `[ip]:port` or `ip`, in that order of preference) wins, as Istio matches the
/// destination VIP first. Otherwise Envoy's domain matching on the lower-cased `authority`:
/// exact (with the port, then without it), the longest suffix wildcard (`*.foo`, `*foo`), the
/// longest prefix wildcard (`foo*`) (wildcards match at least one character; each tried on the
/// authority with, then without, its port), then `*`. Ties go to the earlier virtual host.
pub fn virtual_host<'a>(
    table: &'a RouteTable,
    destination: Option<SocketAddr>,
    authority: &str,
) -> Option<&'a VirtualHost> {
    if let Some(vh) = destination.and_then(|d| by_destination(table, d)) {
        return Some(vh);
    }
    by_authority(table, &authority.to_ascii_lowercase())
}

fn with_domain<'a>(table: &'a RouteTable, domain: &str) -> Option<&'a VirtualHost> {
    table
        .virtual_hosts
        .iter()
        .find(|vh| vh.domains.iter().any(|d| d == domain))
}

fn by_destination(table: &RouteTable, d: SocketAddr) -> Option<&VirtualHost> {
    let ip = d.ip().to_string();
    let port = d.port();
    let mut forms = vec![format!("{ip}:{port}")];
    if d.is_ipv6() {
        forms.insert(0, format!("[{ip}]:{port}"));
        forms.push(format!("[{ip}]"));
    }
    forms.push(ip);
    forms.iter().find_map(|f| with_domain(table, f))
}

/// The host without a trailing `:port` (digits), if it has one; `[v6]:port` keeps the brackets.
fn strip_port(host: &str) -> Option<&str> {
    let (bare, port) = host.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // An unbracketed IPv6 literal has colons but no port.
    if bare.contains(':') && !bare.ends_with(']') {
        return None;
    }
    Some(bare)
}

/// The virtual host whose wildcard domain matches `host` with the longest fixed part.
fn best_wildcard<'a>(
    table: &'a RouteTable,
    host: &str,
    fixed: fn(&str) -> Option<&str>,
    fits: fn(&str, &str) -> bool,
) -> Option<&'a VirtualHost> {
    let mut best: Option<(usize, &VirtualHost)> = None;
    for vh in &table.virtual_hosts {
        for d in &vh.domains {
            let Some(part) = fixed(d) else { continue };
            if host.len() > part.len()
                && fits(host, part)
                && best.is_none_or(|(len, _)| part.len() > len)
            {
                best = Some((part.len(), vh));
            }
        }
    }
    best.map(|(_, vh)| vh)
}

/// The fixed part of a suffix wildcard (`*.foo` → `.foo`).
fn suffix(domain: &str) -> Option<&str> {
    domain.strip_prefix('*').filter(|s| !s.is_empty())
}

/// The fixed part of a prefix wildcard (`foo*` → `foo`).
fn prefix(domain: &str) -> Option<&str> {
    domain.strip_suffix('*').filter(|p| !p.is_empty())
}

fn by_authority<'a>(table: &'a RouteTable, host: &str) -> Option<&'a VirtualHost> {
    let bare = strip_port(host);
    let hosts: Vec<&str> = std::iter::once(host).chain(bare).collect();
    hosts
        .iter()
        .find_map(|h| with_domain(table, h))
        .or_else(|| {
            hosts
                .iter()
                .find_map(|h| best_wildcard(table, h, suffix, |h, s| h.ends_with(s)))
        })
        .or_else(|| {
            hosts
                .iter()
                .find_map(|h| best_wildcard(table, h, prefix, |h, p| h.starts_with(p)))
        })
        .or_else(|| with_domain(table, "*"))
}

/// The first route of `vh` whose match holds for `req`.
pub fn route<'a>(vh: &'a VirtualHost, req: &RequestView<'_>) -> Option<&'a Route> {
    vh.routes.iter().find(|r| r.matcher.matches(req))
}

/// The sum of the weights; draw `roll` uniformly in `[0, total_weight)`.
pub fn total_weight(clusters: &[WeightedCluster]) -> u64 {
    clusters.iter().map(|c| u64::from(c.weight)).sum()
}

/// The cluster `roll` falls on (clusters own consecutive ranges as wide as their weights, so a
/// zero-weight cluster is never picked); `None` when `roll >= total_weight`.
pub fn weighted_cluster(clusters: &[WeightedCluster], roll: u64) -> Option<&WeightedCluster> {
    let mut end = 0u64;
    clusters.iter().find(|c| {
        end += u64::from(c.weight);
        roll < end
    })
}

#[cfg(test)]
mod tests;
