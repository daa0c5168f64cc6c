//! CONNECT `:authority`: `IP:port` (IPv6 bracketed) or `hostname:port`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::HeaderError;

/// Longest authority accepted: a 253-byte DNS name plus `:65535`.
const MAX_LEN: usize = 253 + 6;

/// A parsed CONNECT target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Authority {
    /// `ip:port` — a pod or VIP address.
    Addr(SocketAddr),
    /// `hostname:port` — a Service FQDN (double HBONE); lower-cased.
    Host {
        /// DNS name, lower-case, no trailing dot.
        host: String,
        /// Service port.
        port: u16,
    },
}

impl Authority {
    /// The port of either form.
    pub fn port(&self) -> u16 {
        match self {
            Authority::Addr(a) => a.port(),
            Authority::Host { port, .. } => *port,
        }
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Authority::Addr(a) => write!(f, "{a}"),
            Authority::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

fn valid_hostname(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

/// Parses a CONNECT authority strictly: no userinfo, no path, a non-zero decimal port.
pub fn parse_authority(value: &str) -> Result<Authority, HeaderError> {
    let err = |why| HeaderError::Authority {
        value: value.chars().take(64).collect(),
        why,
    };
    if value.is_empty() || value.len() > MAX_LEN {
        return Err(err("empty or too long"));
    }
    if let Some(rest) = value.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or_else(|| err("bracketed host without port"))?;
        let ip: Ipv6Addr = ip.parse().map_err(|_| err("bad IPv6 address"))?;
        let port = parse_port(port).ok_or_else(|| err("bad port"))?;
        return Ok(Authority::Addr(SocketAddr::new(IpAddr::V6(ip), port)));
    }
    let (host, port) = value.rsplit_once(':').ok_or_else(|| err("missing port"))?;
    let port = parse_port(port).ok_or_else(|| err("bad port"))?;
    if host.contains(':') {
        return Err(err("IPv6 address must be bracketed"));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Authority::Addr(SocketAddr::new(IpAddr::V4(ip), port)));
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(err("malformed IPv4 address"));
    }
    if !valid_hostname(host) {
        return Err(err("bad hostname"));
    }
    Ok(Authority::Host {
        host: host.to_ascii_lowercase(),
        port,
    })
}
