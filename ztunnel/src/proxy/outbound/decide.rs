//! The outbound decision (spec §3.1) as a pure function: original destination + source
//! workload + the current snapshot → where and how to connect. No I/O; table-tested.
//!
//! Order: reserved loopback → address lookup (workload IP before Service VIP) → the Service's
//! waypoint (before endpoint selection) → passthrough Service → endpoint selection
//! ([`select`]) → the workload's waypoint (workload-IP destinations only) → destination IP →
//! protocol. Nothing found is passthrough (plain TCP to the original destination).
//!
//! Not supported, by design for now:
//! * multi-network: a chosen workload or waypoint on another network would need double HBONE
//!   through its `network_gateway` (spec §2.5); it is [`DecideError::RemoteNetwork`];
//! * hostname-only workloads (no IP) would need a DNS lookup of `Workload.hostname`; they are
//!   [`DecideError::NoAddress`];
//! * `weighted_waypoints`, CIDR VIPs and the Service's `ip_families` filter.

mod select;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hbone::Identity;
use rand::Rng;

use crate::model::{GatewayAddress, GatewayDestination, Protocol, Service, Workload};
use crate::proxy::INBOUND_HBONE_PORT;
use crate::state::Snapshot;

/// Ports applications cannot use (spec §1).
pub const RESERVED_PORTS: [u16; 3] = [15001, 15006, 15008];

/// How to reach the chosen upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// HBONE: TCP+mTLS to `hbone_addr` (ip:15008 or the waypoint's HBONE port), CONNECT
    /// `authority`, accepting a server certificate for any of `identities`.
    Hbone {
        hbone_addr: SocketAddr,
        authority: SocketAddr,
        identities: Vec<Identity>,
    },
    /// Plain TCP to `addr` from the pod netns (a non-HBONE workload, or passthrough).
    Tcp { addr: SocketAddr },
}

/// The decision for one outbound connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub upstream: Upstream,
    /// The workload the bytes go to (the waypoint's workload when via a waypoint).
    pub dst_workload: Option<Arc<Workload>>,
    /// The Service the client targeted (by VIP), if any.
    pub service: Option<Arc<Service>>,
    /// Sent to a waypoint rather than to the destination.
    pub via_waypoint: bool,
    /// Not a mesh destination: plain TCP to the original destination.
    pub passthrough: bool,
}

/// Why no connection can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("loopback destination {0} on a reserved port")]
    ReservedLoopback(SocketAddr),
    #[error("no healthy upstream for service {service}")]
    NoHealthyUpstream { service: String },
    #[error("waypoint {waypoint} of {owner} cannot be resolved")]
    WaypointUnresolved { waypoint: String, owner: String },
    #[error("workload {uid} has no address of a usable family")]
    NoAddress { uid: String },
    #[error(
        "workload {uid} is on network {network:?}; multi-network (double HBONE) is not supported"
    )]
    RemoteNetwork { uid: String, network: String },
    #[error("workload {uid}: {reason}")]
    BadWorkload { uid: String, reason: String },
}

/// Decides where a connection from `source` to `dst` goes (spec §3.1 steps 3–9).
///
/// `network` is this tunnel's network; `rng` drives the load-balancing picks.
pub fn decide(
    snap: &Snapshot,
    source: &Workload,
    dst: SocketAddr,
    network: &str,
    rng: &mut impl Rng,
) -> Result<Plan, DecideError> {
    if dst.ip().to_canonical().is_loopback() && RESERVED_PORTS.contains(&dst.port()) {
        return Err(DecideError::ReservedLoopback(dst));
    }
    let cx = Ctx {
        snap,
        source,
        dst,
        network,
    };
    if let Some(w) = snap.workload_by_ip(network, dst.ip()) {
        return cx.for_workload(w, rng);
    }
    if let Some(svc) = snap.service_by_vip(network, dst.ip(), &source.namespace) {
        return cx.for_service(svc, rng);
    }
    Ok(passthrough(dst, None))
}

/// Plain TCP to the original destination.
fn passthrough(dst: SocketAddr, service: Option<&Arc<Service>>) -> Plan {
    Plan {
        upstream: Upstream::Tcp { addr: dst },
        dst_workload: None,
        service: service.cloned(),
        via_waypoint: false,
        passthrough: true,
    }
}

/// What every step of one decision looks at.
struct Ctx<'a> {
    snap: &'a Snapshot,
    source: &'a Workload,
    dst: SocketAddr,
    network: &'a str,
}

/// A resolved waypoint: the workloads that may serve it and the Service fronting them, if any.
struct Waypoint {
    service: Option<Arc<Service>>,
    workloads: Vec<Arc<Workload>>,
    /// The IP the GatewayAddress named, when it named a workload IP.
    ip: Option<IpAddr>,
}

impl Ctx<'_> {
    /// `dst` is a workload IP: its waypoint unless the source is that waypoint, else the
    /// workload itself on `dst.port()`.
    fn for_workload(&self, w: &Arc<Workload>, rng: &mut impl Rng) -> Result<Plan, DecideError> {
        if let Some(gw) = &w.waypoint
            && let Some(plan) = self.via_waypoint(gw, &w.uid, None, rng)?
        {
            return Ok(plan);
        }
        self.direct(w, self.dst.port(), None)
    }

    /// `dst` is a Service VIP.
    fn for_service(&self, svc: &Arc<Service>, rng: &mut impl Rng) -> Result<Plan, DecideError> {
        if let Some(gw) = &svc.waypoint
            && let Some(plan) = self.via_waypoint(gw, &svc.key().to_string(), Some(svc), rng)?
        {
            return Ok(plan);
        }
        if svc.is_passthrough() {
            return Ok(passthrough(self.dst, Some(svc)));
        }
        let (w, port) = select::service_endpoint(self.snap, self.source, svc, self.dst.port(), rng)
            .ok_or_else(|| DecideError::NoHealthyUpstream {
                service: svc.key().to_string(),
            })?;
        self.direct(&w, port, Some(svc))
    }

    /// HBONE to `gw` with authority `dst`; `Ok(None)` when the source is that waypoint
    /// (traffic leaving the waypoint must not loop back into it).
    fn via_waypoint(
        &self,
        gw: &GatewayAddress,
        owner: &str,
        service: Option<&Arc<Service>>,
        rng: &mut impl Rng,
    ) -> Result<Option<Plan>, DecideError> {
        let unresolved = || DecideError::WaypointUnresolved {
            waypoint: gw.destination.to_string(),
            owner: owner.to_owned(),
        };
        let wp = self.resolve_waypoint(gw).ok_or_else(unresolved)?;
        if wp
            .workloads
            .iter()
            .any(|w| is_same_workload(self.source, w))
        {
            return Ok(None);
        }
        let w = select::waypoint_workload(self.source, wp.service.as_deref(), &wp.workloads, rng)
            .ok_or_else(unresolved)?;
        self.check_network(&w)?;
        let ip = pick_ip(&w, wp.ip.unwrap_or(self.dst.ip())).ok_or_else(|| no_address(&w))?;
        let identities = identities(&w, wp.service.as_deref())?;
        Ok(Some(Plan {
            upstream: Upstream::Hbone {
                hbone_addr: SocketAddr::new(ip, gw.hbone_mtls_port),
                authority: self.dst,
                identities,
            },
            dst_workload: Some(w),
            service: service.cloned(),
            via_waypoint: true,
            passthrough: false,
        }))
    }

    /// A GatewayAddress → its candidate workloads. An address is a workload IP, else a VIP;
    /// a hostname is a Service key, else the workloads with that `hostname`.
    fn resolve_waypoint(&self, gw: &GatewayAddress) -> Option<Waypoint> {
        let of_service = |s: &Arc<Service>| Waypoint {
            service: Some(s.clone()),
            workloads: self.snap.endpoints(&s.key()).to_vec(),
            ip: None,
        };
        match &gw.destination {
            GatewayDestination::Address(na) => {
                if let Some(w) = self.snap.workload_by_ip(&na.network, na.address) {
                    return Some(Waypoint {
                        service: None,
                        workloads: vec![w.clone()],
                        ip: Some(na.address),
                    });
                }
                self.snap
                    .service_by_vip(&na.network, na.address, &self.source.namespace)
                    .map(of_service)
            }
            GatewayDestination::Hostname(key) => {
                if let Some(s) = self.snap.service(key) {
                    return Some(of_service(s));
                }
                let workloads: Vec<_> = self
                    .snap
                    .workloads_by_hostname(&key.hostname)
                    .cloned()
                    .collect();
                (!workloads.is_empty()).then_some(Waypoint {
                    service: None,
                    workloads,
                    ip: None,
                })
            }
        }
    }

    /// Straight to `w` on `target_port` (HBONE or plain TCP per its protocol).
    fn direct(
        &self,
        w: &Arc<Workload>,
        target_port: u16,
        service: Option<&Arc<Service>>,
    ) -> Result<Plan, DecideError> {
        self.check_network(w)?;
        let ip = pick_ip(w, self.dst.ip()).ok_or_else(|| no_address(w))?;
        let upstream = match w.protocol {
            Protocol::Hbone => Upstream::Hbone {
                hbone_addr: SocketAddr::new(ip, INBOUND_HBONE_PORT),
                authority: SocketAddr::new(ip, target_port),
                identities: identities(w, service.map(Arc::as_ref))?,
            },
            Protocol::Tcp => Upstream::Tcp {
                addr: SocketAddr::new(ip, target_port),
            },
        };
        Ok(Plan {
            upstream,
            dst_workload: Some(w.clone()),
            service: service.cloned(),
            via_waypoint: false,
            passthrough: false,
        })
    }

    /// Multi-network (double HBONE through the network gateway) is not supported.
    fn check_network(&self, w: &Workload) -> Result<(), DecideError> {
        if w.network == self.network {
            return Ok(());
        }
        Err(DecideError::RemoteNetwork {
            uid: w.uid.clone(),
            network: w.network.clone(),
        })
    }
}

fn no_address(w: &Workload) -> DecideError {
    DecideError::NoAddress { uid: w.uid.clone() }
}

/// "Is the waypoint": the same workload, or the same identity with an IP in common.
fn is_same_workload(source: &Workload, w: &Workload) -> bool {
    if source.uid == w.uid {
        return true;
    }
    let same_identity = source.trust_domain == w.trust_domain
        && source.namespace == w.namespace
        && source.service_account == w.service_account;
    same_identity
        && source
            .workload_ips
            .iter()
            .any(|ip| w.workload_ips.contains(ip))
}

/// `want` if the workload owns it, else its first IP of `want`'s family, else its first IP.
fn pick_ip(w: &Workload, want: IpAddr) -> Option<IpAddr> {
    let ips = &w.workload_ips;
    if ips.contains(&want) {
        return Some(want);
    }
    ips.iter()
        .find(|ip| ip.is_ipv4() == want.is_ipv4())
        .or_else(|| ips.first())
        .copied()
}

/// The workload's identity, then the Service's SANs that are SPIFFE identities (others are
/// skipped: a certificate can only be verified against an identity).
fn identities(w: &Workload, service: Option<&Service>) -> Result<Vec<Identity>, DecideError> {
    let id = w.identity().map_err(|e| DecideError::BadWorkload {
        uid: w.uid.clone(),
        reason: e.to_string(),
    })?;
    let mut ids = vec![id];
    for san in service.map_or(&[][..], |s| s.subject_alt_names.as_slice()) {
        match san.parse::<Identity>() {
            Ok(i) if !ids.contains(&i) => ids.push(i),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(san, error = %e, "skipping service SAN that is not a SPIFFE identity")
            }
        }
    }
    Ok(ids)
}
