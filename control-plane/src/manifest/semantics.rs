//! Kubernetes semantics the control plane's translation and the local mesh's planner both need, in one place:
//! label selectors, Service target ports (numbers or container port names), `spec.clusterIP` values, address
//! allocation from a range, and the Service a waypoint Gateway gets when nobody made one.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::access::{PodSpecExt, PortExt, Protocol};
use super::gateway::HBONE_PORT;
use super::{IntOrString, PodSpec, ServicePort};

/// Label on a Gateway's pods naming the Gateway.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// Whether `selector` selects an object with `labels` (every selector label matches; an empty selector
/// selects everything, as Kubernetes' equality-based selectors do).
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The container port named `name` for `protocol` in `spec`.
pub fn named_port(spec: &PodSpec, name: &str, protocol: Protocol) -> Option<u16> {
    spec.container_ports()
        .find(|p| p.name.as_deref() == Some(name) && p.proto() == protocol)
        .map(PortExt::number)
}

/// The port a Service port reaches on a pod: `targetPort` (number or container port name), else `port`.
/// `None` when the pod has no container port of that name.
pub fn target_port(port: &ServicePort, pod: &PodSpec) -> Option<u16> {
    match &port.target_port {
        None => Some(port.number()),
        Some(IntOrString::Int(p)) => u16::try_from(*p).ok(),
        Some(IntOrString::String(name)) => named_port(pod, name, port.proto()),
    }
}

/// What a Service's `spec.clusterIP` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterIp {
    /// `None`: a headless Service.
    Headless,
    /// Absent or empty: the cluster allocates one.
    Allocate,
    Ip(Ipv4Addr),
}

/// Reads `spec.clusterIP`; the error is the message for that field.
pub fn cluster_ip(value: Option<&str>) -> Result<ClusterIp, String> {
    match value {
        Some("None") => Ok(ClusterIp::Headless),
        None | Some("") => Ok(ClusterIp::Allocate),
        Some(text) => text
            .parse()
            .map(ClusterIp::Ip)
            .map_err(|_| format!("{text:?} is not an IPv4 address")),
    }
}

/// The lowest address of `net` from its `first`-th host on (below the broadcast) for which `taken` is false.
pub fn lowest_free(
    net: Ipv4Net,
    first: u32,
    taken: impl Fn(&Ipv4Addr) -> bool,
) -> Option<Ipv4Addr> {
    let start = u32::from(net.network()).checked_add(first)?;
    let end = u32::from(net.broadcast());
    (start..end).map(Ipv4Addr::from).find(|ip| !taken(ip))
}

/// The first Service address handed out in a service CIDR (`.10`, as kube-apiserver's allocator starts low).
pub const FIRST_SERVICE_OFFSET: u32 = 10;

/// The selector and ports of the Service a waypoint Gateway gets when none exists (as Istio's deployment
/// controller makes it): its pods, HBONE on 15008.
pub fn waypoint_service(gateway: &str) -> (BTreeMap<String, String>, Vec<ServicePort>) {
    (
        BTreeMap::from([(GATEWAY_NAME_LABEL.to_owned(), gateway.to_owned())]),
        vec![ServicePort {
            name: Some("mesh".into()),
            port: i32::from(HBONE_PORT),
            target_port: Some(IntOrString::Int(i32::from(HBONE_PORT))),
            protocol: Some(Protocol::Tcp.as_str().into()),
            ..ServicePort::default()
        }],
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::manifest::{Container, ContainerPort};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn selectors_match_every_label() {
        let pod = labels(&[("app", "web"), ("version", "v1")]);
        assert!(selects(&labels(&[("app", "web")]), &pod));
        assert!(!selects(
            &labels(&[("app", "web"), ("version", "v2")]),
            &pod
        ));
        assert!(selects(&labels(&[]), &pod));
    }

    #[test]
    fn target_ports_by_number_name_or_default() {
        let spec = PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                }]),
                ..Container::default()
            }],
            ..PodSpec::default()
        };
        let port = |target: Option<IntOrString>, protocol: Option<&str>| ServicePort {
            port: 80,
            target_port: target,
            protocol: protocol.map(str::to_owned),
            ..ServicePort::default()
        };
        assert_eq!(target_port(&port(None, None), &spec), Some(80));
        assert_eq!(
            target_port(&port(Some(IntOrString::Int(9)), Some("TCP")), &spec),
            Some(9)
        );
        let named = Some(IntOrString::String("http".into()));
        assert_eq!(target_port(&port(named.clone(), None), &spec), Some(8080));
        assert_eq!(target_port(&port(named, Some("UDP")), &spec), None);
    }

    #[test]
    fn cluster_ips_and_allocation() {
        assert_eq!(cluster_ip(Some("None")), Ok(ClusterIp::Headless));
        assert_eq!(cluster_ip(Some("")), Ok(ClusterIp::Allocate));
        assert_eq!(cluster_ip(None), Ok(ClusterIp::Allocate));
        assert_eq!(
            cluster_ip(Some("10.96.0.7")),
            Ok(ClusterIp::Ip(Ipv4Addr::new(10, 96, 0, 7)))
        );
        assert!(
            cluster_ip(Some("fd00::1"))
                .unwrap_err()
                .contains("not an IPv4 address")
        );
        let net: Ipv4Net = "10.96.0.0/29".parse().unwrap();
        assert_eq!(
            lowest_free(net, 2, |ip| ip.octets()[3] == 2),
            Some(Ipv4Addr::new(10, 96, 0, 3))
        );
        assert_eq!(
            lowest_free(net, 2, |_| true),
            None,
            "the broadcast is never handed out"
        );
        assert_eq!(
            lowest_free(net, 10, |_| false),
            None,
            "past the end of the range"
        );
    }
}
