//! The node tunnels' snapshot (spec §4): every pod as an `istio.workload.Workload` (name: its
//! uid), every Service as an `istio.workload.Service` (name: `namespace/hostname`), both wrapped
//! in `istio.workload.Address`; and every L4 policy as an `istio.security.Authorization` (name:
//! `namespace/name`). Rules are istiod's, as in meshctl's local translation: HBONE only for
//! enrolled pods (or native-tunnel pods), canonical name/revision from the usual labels, owner
//! from `ownerReferences`, per-endpoint target ports, UNHEALTHY when `Ready` is `False`.

use std::collections::HashMap;

use proto::istio::workload as xw;
use xds::{Snapshot, type_url};

use super::authorization::to_proto;
use super::canonical;
use super::mesh::{Mesh, OwnerKind, PodView, ServiceView, WaypointRef, target_port};
use crate::authz::Translated;
use crate::manifest::{IntOrString, PodSpecExt, PortExt, ServicePort};

/// Every `istio.workload.Address` and `istio.security.Authorization`.
pub(super) fn snapshot(mesh: &Mesh<'_>, policies: &Translated) -> Snapshot {
    let mut snap = Snapshot::new();
    snap.declare(type_url::ADDRESS);
    snap.declare(type_url::AUTHORIZATION);
    for pod in &mesh.pods {
        let w = workload(mesh, pod, policies);
        let name = w.uid.clone();
        snap.add(
            type_url::ADDRESS,
            name,
            &canonical::address(&address(xw::address::Type::Workload(w))),
        );
    }
    for svc in &mesh.services {
        let s = service(svc);
        let name = format!("{}/{}", s.namespace, s.hostname);
        snap.add(
            type_url::ADDRESS,
            name,
            &address(xw::address::Type::Service(s)),
        );
    }
    for p in &policies.policies {
        snap.add(type_url::AUTHORIZATION, p.key(), &to_proto(p));
    }
    snap
}

fn address(t: xw::address::Type) -> xw::Address {
    xw::Address { r#type: Some(t) }
}

/// `{namespace, <gateway>.<namespace>.svc.cluster.local}` on port 15008, as istiod sets it.
pub(super) fn gateway_address(wp: &WaypointRef) -> xw::GatewayAddress {
    xw::GatewayAddress {
        hbone_mtls_port: u32::from(crate::manifest::gateway::HBONE_PORT),
        destination: Some(xw::gateway_address::Destination::Hostname(
            xw::NamespacedHostname {
                namespace: wp.namespace.clone(),
                hostname: wp.hostname(),
            },
        )),
    }
}

/// `appProtocol`, else the port name's prefix (`http-…`, `grpc-…`), as Istio infers protocols.
fn app_protocol(p: &ServicePort) -> xw::AppProtocol {
    let name = p.name.as_deref().unwrap_or_default();
    let proto = p
        .app_protocol
        .as_deref()
        .unwrap_or_else(|| name.split('-').next().unwrap_or_default());
    match proto.to_ascii_lowercase().as_str() {
        "http" => xw::AppProtocol::Http11,
        "http2" | "h2c" | "kubernetes.io/h2c" => xw::AppProtocol::Http2,
        "grpc" => xw::AppProtocol::Grpc,
        _ => xw::AppProtocol::Unknown,
    }
}

fn service(svc: &ServiceView<'_>) -> xw::Service {
    xw::Service {
        name: svc.name.clone(),
        namespace: svc.namespace.clone(),
        hostname: svc.hostname.clone(),
        addresses: svc
            .vip
            .map(|ip| xw::NetworkAddress {
                network: String::new(),
                address: ip.octets().to_vec(),
                length: None,
            })
            .into_iter()
            .collect(),
        ports: svc
            .ports
            .iter()
            .map(|p| xw::Port {
                service_port: u32::from(p.number()),
                target_port: match &p.target_port {
                    None => u32::from(p.number()),
                    Some(IntOrString::Int(t)) => u32::try_from(*t).unwrap_or(0),
                    Some(IntOrString::String(_)) => 0,
                },
                app_protocol: app_protocol(p) as i32,
            })
            .collect(),
        waypoint: svc.waypoint.as_ref().map(gateway_address),
        ..xw::Service::default()
    }
}

fn label<'p>(pod: &'p PodView<'_>, keys: &[&str]) -> Option<&'p String> {
    keys.iter().find_map(|k| pod.labels.get(*k))
}

fn workload(mesh: &Mesh<'_>, pod: &PodView<'_>, policies: &Translated) -> xw::Workload {
    let native = mesh.native_tunnel(pod);
    let hbone = native || mesh.ambient(pod);
    let mut services = HashMap::new();
    for svc in &mesh.services {
        // Per pair, not by scanning the mesh's pods (that made 10,000 pods take 13 s).
        if !Mesh::selects(svc, pod) {
            continue;
        }
        let ports = svc
            .ports
            .iter()
            .filter_map(|p| {
                target_port(p, pod.spec).map(|t| xw::Port {
                    service_port: u32::from(p.number()),
                    target_port: u32::from(t),
                    app_protocol: app_protocol(p) as i32,
                })
            })
            .collect();
        services.insert(
            format!("{}/{}", svc.namespace, svc.hostname),
            xw::PortList { ports },
        );
    }
    let authorization_policies = policies
        .selectors
        .iter()
        .filter(|(ns, sel, _)| {
            *ns == pod.namespace && sel.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
        })
        .map(|(_, _, key)| key.clone())
        .collect();
    let (kind, owner) = &pod.owner;
    xw::Workload {
        uid: mesh.uid(pod),
        name: pod.name.clone(),
        namespace: pod.namespace.clone(),
        addresses: vec![pod.ip.octets().to_vec()],
        tunnel_protocol: if hbone {
            xw::TunnelProtocol::Hbone
        } else {
            xw::TunnelProtocol::None
        } as i32,
        trust_domain: mesh.options.trust_domain.clone(),
        service_account: pod.spec.service_account().to_owned(),
        waypoint: pod.waypoint.as_ref().map(gateway_address),
        node: pod.node.clone(),
        canonical_name: label(
            pod,
            &[
                "service.istio.io/canonical-name",
                "app.kubernetes.io/name",
                "app",
            ],
        )
        .cloned()
        .unwrap_or_else(|| owner.clone()),
        canonical_revision: label(
            pod,
            &[
                "service.istio.io/canonical-revision",
                "app.kubernetes.io/version",
                "version",
            ],
        )
        .cloned()
        .unwrap_or_else(|| "latest".into()),
        workload_type: match kind {
            OwnerKind::Deployment => xw::WorkloadType::Deployment,
            OwnerKind::Job => xw::WorkloadType::Job,
            OwnerKind::CronJob => xw::WorkloadType::Cronjob,
            OwnerKind::Pod => xw::WorkloadType::Pod,
        } as i32,
        workload_name: owner.clone(),
        native_tunnel: native,
        services,
        authorization_policies,
        status: if pod.ready {
            xw::WorkloadStatus::Healthy
        } else {
            xw::WorkloadStatus::Unhealthy
        } as i32,
        cluster_id: mesh.options.cluster_id.clone(),
        locality: super::locality::locality(&pod.labels, mesh.nodes.get(&pod.node)),
        ..xw::Workload::default()
    }
}

#[cfg(test)]
mod tests;
