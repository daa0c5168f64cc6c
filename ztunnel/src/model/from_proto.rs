//! `istio.workload.Address` and `istio.security.Authorization` protos → domain types, with
//! validation (spec §4). Every rejection is a [`ModelError::Invalid`] naming the field.
//!
//! Owns only the translation at the xDS boundary: whatever is accepted here can be written in
//! the local-config / config_dump shape and read back unchanged. Does not own the xDS stream
//! (ACK/NACK) nor the store that indexes the results.
//!
//! Not supported yet, rejected with a clear error: CIDR VIPs (a `NetworkAddress.length` shorter
//! than the address). Dropped because the domain types have no place for them: Service
//! `weighted_waypoints` (`waypoint` still holds the primary), `ingress_use_waypoint`, port
//! `app_protocol` and `extensions`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use proto::istio::security as xsec;
use proto::istio::workload as xds;

use super::{
    AppTunnelProtocol, ApplicationTunnel, Authorization, DEFAULT_SERVICE_ACCOUNT,
    DEFAULT_TRUST_DOMAIN, GatewayAddress, GatewayDestination, HealthStatus, IpFamilies,
    LoadBalancer, LoadBalancerHealthPolicy, LoadBalancerMode, LoadBalancerScope, Locality, Match,
    ModelError, NamespacedHostname, NetworkAddress, NetworkMode, PolicyAction, PolicyScope,
    PortMap, Protocol, Service, ServiceAccountMatch, StringMatch, Workload, ip_from_bytes,
    service::Visibility,
};

/// One decoded `istio.workload.Address`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "short-lived: consumers move the value into the store right away"
)]
pub enum AddressResource {
    Workload(Workload),
    Service(Service),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ModelError {
    ModelError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A proto3 enum value, or an error naming `field` for values this build does not know.
fn known<E: TryFrom<i32>>(field: &'static str, v: i32) -> Result<E, ModelError> {
    E::try_from(v).map_err(|_| invalid(field, format!("unknown enum value {v}")))
}

fn port(field: &'static str, v: u32) -> Result<u16, ModelError> {
    u16::try_from(v).map_err(|_| invalid(field, format!("port {v} is above 65535")))
}

fn ip(field: &'static str, b: &[u8]) -> Result<IpAddr, ModelError> {
    ip_from_bytes(b).map_err(|e| invalid(field, e.to_string()))
}

fn non_empty(field: &'static str, s: &str) -> Result<(), ModelError> {
    if s.is_empty() {
        Err(invalid(field, "must not be empty"))
    } else {
        Ok(())
    }
}

fn or_default(s: String, default: &str) -> String {
    if s.is_empty() { default.to_owned() } else { s }
}

/// A `namespace/hostname` pair that survives printing and parsing back.
fn hostname(
    field: &'static str,
    namespace: &str,
    host: &str,
) -> Result<NamespacedHostname, ModelError> {
    let want = NamespacedHostname::new(namespace, host);
    match want.to_string().parse::<NamespacedHostname>() {
        Ok(got) if got == want => Ok(want),
        _ => Err(invalid(
            field,
            format!("{want:?}: namespace and hostname must be non-empty and contain no '/'"),
        )),
    }
}

fn network_address(
    field: &'static str,
    a: &xds::NetworkAddress,
) -> Result<NetworkAddress, ModelError> {
    let address = ip(field, &a.address)?;
    let width = if address.is_ipv4() { 32 } else { 128 };
    match a.length {
        None => {}
        Some(l) if l == width => {}
        Some(l) if l < width => {
            return Err(invalid(
                field,
                format!("{address}/{l}: CIDR VIPs are not supported yet (only /{width})"),
            ));
        }
        Some(l) => {
            return Err(invalid(
                field,
                format!("{address}/{l}: prefix longer than /{width}"),
            ));
        }
    }
    Ok(NetworkAddress::new(&a.network, address))
}

fn gateway(field: &'static str, g: xds::GatewayAddress) -> Result<GatewayAddress, ModelError> {
    use xds::gateway_address::Destination;
    let destination = match g.destination {
        None => {
            return Err(invalid(
                field,
                "destination: neither hostname nor address is set",
            ));
        }
        Some(Destination::Hostname(h)) => {
            let h = hostname(field, &h.namespace, &h.hostname)?;
            // A hostname that looks like an IP would read back as an address.
            if h.hostname.parse::<IpAddr>().is_ok() {
                return Err(invalid(
                    field,
                    format!("hostname {:?} is an IP address", h.hostname),
                ));
            }
            GatewayDestination::Hostname(h)
        }
        Some(Destination::Address(a)) => GatewayDestination::Address(network_address(field, &a)?),
    };
    Ok(GatewayAddress {
        destination,
        hbone_mtls_port: port(field, g.hbone_mtls_port)?,
    })
}

fn workload_protocol(v: i32) -> Result<Protocol, ModelError> {
    match known("workload.tunnel_protocol", v)? {
        xds::TunnelProtocol::None => Ok(Protocol::Tcp),
        xds::TunnelProtocol::Hbone => Ok(Protocol::Hbone),
        xds::TunnelProtocol::LegacyIstioMtls => Err(invalid(
            "workload.tunnel_protocol",
            "LEGACY_ISTIO_MTLS is not supported by node tunnels",
        )),
    }
}

fn workload_type(v: i32) -> Result<String, ModelError> {
    let t: xds::WorkloadType = known("workload.workload_type", v)?;
    Ok(t.as_str_name().to_ascii_lowercase())
}

fn application_tunnel(t: xds::ApplicationTunnel) -> Result<ApplicationTunnel, ModelError> {
    use xds::application_tunnel::Protocol as P;
    let protocol = match known("workload.application_tunnel.protocol", t.protocol)? {
        P::None => AppTunnelProtocol::None,
        P::Proxy => AppTunnelProtocol::Proxy,
    };
    let port = match port("workload.application_tunnel.port", t.port)? {
        0 => None,
        p => Some(p),
    };
    Ok(ApplicationTunnel { protocol, port })
}

fn workload_services(
    services: std::collections::HashMap<String, xds::PortList>,
) -> Result<BTreeMap<NamespacedHostname, PortMap>, ModelError> {
    let mut out = BTreeMap::new();
    for (key, list) in services {
        let name = key.parse::<NamespacedHostname>().map_err(|_| {
            invalid(
                "workload.services",
                format!("key {key:?}: expected \"<namespace>/<hostname>\""),
            )
        })?;
        let ports = port_map("workload.services", list.ports)?;
        out.insert(name, ports);
    }
    Ok(out)
}

fn port_map(field: &'static str, ports: Vec<xds::Port>) -> Result<PortMap, ModelError> {
    ports
        .into_iter()
        .map(|p| Ok((port(field, p.service_port)?, port(field, p.target_port)?)))
        .collect()
}

impl TryFrom<xds::Workload> for Workload {
    type Error = ModelError;

    fn try_from(w: xds::Workload) -> Result<Self, Self::Error> {
        non_empty("workload.uid", &w.uid)?;
        let workload_ips = w
            .addresses
            .iter()
            .map(|a| ip("workload.addresses", a))
            .collect::<Result<_, _>>()?;
        let out = Workload {
            uid: w.uid,
            name: w.name,
            namespace: w.namespace,
            workload_ips,
            hostname: w.hostname,
            network: w.network,
            protocol: workload_protocol(w.tunnel_protocol)?,
            trust_domain: or_default(w.trust_domain, DEFAULT_TRUST_DOMAIN),
            service_account: or_default(w.service_account, DEFAULT_SERVICE_ACCOUNT),
            waypoint: w
                .waypoint
                .map(|g| gateway("workload.waypoint", g))
                .transpose()?,
            network_gateway: w
                .network_gateway
                .map(|g| gateway("workload.network_gateway", g))
                .transpose()?,
            node: w.node,
            canonical_name: w.canonical_name,
            canonical_revision: w.canonical_revision,
            workload_type: workload_type(w.workload_type)?,
            workload_name: w.workload_name,
            native_tunnel: w.native_tunnel,
            application_tunnel: w.application_tunnel.map(application_tunnel).transpose()?,
            services: workload_services(w.services)?,
            authorization_policies: w.authorization_policies,
            status: match known("workload.status", w.status)? {
                xds::WorkloadStatus::Healthy => HealthStatus::Healthy,
                xds::WorkloadStatus::Unhealthy => HealthStatus::Unhealthy,
            },
            cluster_id: or_default(w.cluster_id, "Kubernetes"),
            locality: w
                .locality
                .map(|l| Locality {
                    region: l.region,
                    zone: l.zone,
                    subzone: l.subzone,
                })
                .unwrap_or_default(),
            network_mode: match known("workload.network_mode", w.network_mode)? {
                xds::NetworkMode::Standard => NetworkMode::Standard,
                xds::NetworkMode::HostNetwork => NetworkMode::HostNetwork,
            },
            capacity: w.capacity.unwrap_or(1),
        };
        out.identity().map_err(|e| {
            invalid(
                "workload identity (trust_domain/namespace/service_account)",
                e.to_string(),
            )
        })?;
        Ok(out)
    }
}

fn load_balancer(lb: xds::LoadBalancing) -> Result<LoadBalancer, ModelError> {
    use xds::load_balancing::{HealthPolicy, Mode, Scope};
    const PREF: &str = "service.load_balancing.routing_preference";
    let routing_preferences = lb
        .routing_preference
        .iter()
        .map(|v| match known(PREF, *v)? {
            Scope::UnspecifiedScope => Err(invalid(PREF, "UNSPECIFIED_SCOPE is not a scope")),
            Scope::Region => Ok(LoadBalancerScope::Region),
            Scope::Zone => Ok(LoadBalancerScope::Zone),
            Scope::Subzone => Ok(LoadBalancerScope::Subzone),
            Scope::Node => Ok(LoadBalancerScope::Node),
            Scope::Cluster => Ok(LoadBalancerScope::Cluster),
            Scope::Network => Ok(LoadBalancerScope::Network),
        })
        .collect::<Result<_, _>>()?;
    Ok(LoadBalancer {
        routing_preferences,
        mode: match known("service.load_balancing.mode", lb.mode)? {
            Mode::UnspecifiedMode => LoadBalancerMode::Standard,
            Mode::Strict => LoadBalancerMode::Strict,
            Mode::Failover => LoadBalancerMode::Failover,
            Mode::Passthrough => LoadBalancerMode::Passthrough,
        },
        health_policy: match known("service.load_balancing.health_policy", lb.health_policy)? {
            HealthPolicy::OnlyHealthy => LoadBalancerHealthPolicy::OnlyHealthy,
            HealthPolicy::AllowAll => LoadBalancerHealthPolicy::AllowAll,
        },
    })
}

impl TryFrom<xds::Service> for Service {
    type Error = ModelError;

    fn try_from(s: xds::Service) -> Result<Self, Self::Error> {
        hostname("service namespace/hostname", &s.namespace, &s.hostname)?;
        Ok(Service {
            vips: s
                .addresses
                .iter()
                .map(|a| network_address("service.addresses", a))
                .collect::<Result<_, _>>()?,
            ports: port_map("service.ports", s.ports)?,
            waypoint: s
                .waypoint
                .map(|g| gateway("service.waypoint", g))
                .transpose()?,
            load_balancer: s.load_balancing.map(load_balancer).transpose()?,
            ip_families: match known("service.ip_families", s.ip_families)? {
                xds::IpFamilies::Automatic => IpFamilies::Automatic,
                xds::IpFamilies::Ipv4Only => IpFamilies::Ipv4Only,
                xds::IpFamilies::Ipv6Only => IpFamilies::Ipv6Only,
                xds::IpFamilies::Dual => IpFamilies::Dual,
            },
            visibility: match known("service.visibility", s.visibility)? {
                xds::Visibility::Public => Visibility::Public,
                xds::Visibility::Namespace => Visibility::Namespace,
            },
            name: s.name,
            namespace: s.namespace,
            hostname: s.hostname,
            subject_alt_names: s.subject_alt_names,
            canonical: s.canonical,
        })
    }
}

impl TryFrom<xds::Address> for AddressResource {
    type Error = ModelError;

    fn try_from(a: xds::Address) -> Result<Self, Self::Error> {
        match a.r#type {
            Some(xds::address::Type::Workload(w)) => Ok(AddressResource::Workload(w.try_into()?)),
            Some(xds::address::Type::Service(s)) => Ok(AddressResource::Service(s.try_into()?)),
            None => Err(invalid(
                "address.type",
                "neither workload nor service is set",
            )),
        }
    }
}

impl TryFrom<xsec::Authorization> for Authorization {
    type Error = ModelError;

    fn try_from(a: xsec::Authorization) -> Result<Self, Self::Error> {
        non_empty("authorization.name", &a.name)?;
        non_empty("authorization.namespace", &a.namespace)?;
        let rules = a
            .rules
            .into_iter()
            .enumerate()
            .map(|(r, rule)| {
                rule.clauses
                    .into_iter()
                    .enumerate()
                    .map(|(c, clause)| {
                        clause
                            .matches
                            .into_iter()
                            .enumerate()
                            .map(|(m, x)| {
                                policy_match(x).map_err(|(what, why)| {
                                    invalid(
                                        "authorization.rules",
                                        format!(
                                            "rules[{r}].clauses[{c}].matches[{m}].{what}: {why}"
                                        ),
                                    )
                                })
                            })
                            .collect::<Result<_, _>>()
                    })
                    .collect::<Result<_, _>>()
            })
            .collect::<Result<_, _>>()?;
        Ok(Authorization {
            scope: match known("authorization.scope", a.scope)? {
                xsec::Scope::Global => PolicyScope::Global,
                xsec::Scope::Namespace => PolicyScope::Namespace,
                xsec::Scope::WorkloadSelector => PolicyScope::WorkloadSelector,
            },
            action: match known("authorization.action", a.action)? {
                xsec::Action::Allow => PolicyAction::Allow,
                xsec::Action::Deny => PolicyAction::Deny,
            },
            name: a.name,
            namespace: a.namespace,
            dry_run: a.dry_run,
            rules,
        })
    }
}

/// A failure inside one Match: (which list and entry, why).
type MatchError = (String, String);

fn policy_match(m: xsec::Match) -> Result<Match, MatchError> {
    Ok(Match {
        namespaces: strings("namespaces", m.namespaces)?,
        not_namespaces: strings("not_namespaces", m.not_namespaces)?,
        principals: strings("principals", m.principals)?,
        not_principals: strings("not_principals", m.not_principals)?,
        service_accounts: accounts(m.service_accounts),
        not_service_accounts: accounts(m.not_service_accounts),
        source_ips: nets("source_ips", m.source_ips)?,
        not_source_ips: nets("not_source_ips", m.not_source_ips)?,
        destination_ips: nets("destination_ips", m.destination_ips)?,
        not_destination_ips: nets("not_destination_ips", m.not_destination_ips)?,
        destination_ports: ports("destination_ports", m.destination_ports)?,
        not_destination_ports: ports("not_destination_ports", m.not_destination_ports)?,
    })
}

fn strings(list: &str, v: Vec<xsec::StringMatch>) -> Result<Vec<StringMatch>, MatchError> {
    use xsec::string_match::MatchType;
    v.into_iter()
        .enumerate()
        .map(|(i, s)| match s.match_type {
            Some(MatchType::Exact(s)) => Ok(StringMatch::Exact(s)),
            Some(MatchType::Prefix(s)) => Ok(StringMatch::Prefix(s)),
            Some(MatchType::Suffix(s)) => Ok(StringMatch::Suffix(s)),
            Some(MatchType::Presence(())) => Ok(StringMatch::Presence()),
            None => Err((
                format!("{list}[{i}]"),
                "match_type: none of exact/prefix/suffix/presence is set".into(),
            )),
        })
        .collect()
}

fn accounts(v: Vec<xsec::ServiceAccountMatch>) -> Vec<ServiceAccountMatch> {
    v.into_iter()
        .map(|s| ServiceAccountMatch {
            namespace: s.namespace,
            service_account: s.service_account,
        })
        .collect()
}

fn nets(list: &str, v: Vec<xsec::Address>) -> Result<Vec<IpNet>, MatchError> {
    v.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let at = || format!("{list}[{i}]");
            let addr = ip_from_bytes(&a.address).map_err(|e| (at(), e.to_string()))?;
            let len = u8::try_from(a.length).ok();
            len.and_then(|l| IpNet::new(addr, l).ok()).ok_or_else(|| {
                let width = if addr.is_ipv4() { 32 } else { 128 };
                (
                    at(),
                    format!("{addr}/{}: prefix longer than /{width}", a.length),
                )
            })
        })
        .collect()
}

fn ports(list: &str, v: Vec<u32>) -> Result<Vec<u16>, MatchError> {
    v.into_iter()
        .enumerate()
        .map(|(i, p)| {
            u16::try_from(p)
                .map_err(|_| (format!("{list}[{i}]"), format!("port {p} is above 65535")))
        })
        .collect()
}

#[cfg(test)]
mod tests;
