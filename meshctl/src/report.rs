//! Builds the status report of a running mesh from its plan, its pods and their containers.

use crate::daemon::Mesh;
use crate::manifest::{PodSpecExt, PortExt};
use crate::plan::{self, DesiredService};
use crate::pods::{self, RunningPod};
use crate::status::*;
use crate::supervisor;

/// The label that puts a namespace or pod in the ambient mesh (`ambient`) or keeps it out (`none`).
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";

/// The pods a Service selects, in name order.
pub fn endpoints_of<'a>(
    svc: &'a DesiredService,
    pods: impl Iterator<Item = &'a RunningPod> + 'a,
) -> impl Iterator<Item = &'a RunningPod> + 'a {
    pods.filter(move |p| {
        p.desired.namespace == svc.namespace
            && svc
                .selector
                .as_ref()
                .is_some_and(|s| plan::selects(s, &p.desired.labels))
    })
}

pub fn build(mesh: &Mesh) -> StatusReport {
    let td = &mesh.cluster.trust_domain;
    let enrolled: std::collections::BTreeSet<String> = mesh
        .cluster
        .nodes
        .iter()
        .flat_map(|n| crate::node_agents::enrolled(&mesh.paths, &n.name))
        .collect();
    let pods = mesh
        .pods
        .values()
        .map(|p| {
            let d = &p.desired;
            let containers = mesh.supervisor.statuses(&d.key()).unwrap_or_default();
            let phase = supervisor::phase(&containers).to_string();
            let ready = phase == "Running"
                && containers
                    .iter()
                    .all(|c| matches!(c.state, supervisor::ContainerState::Running { .. }))
                && pods::ready(p);
            let ns_labels = mesh.plan.namespaces.get(&d.namespace);
            let dataplane_mode = d
                .labels
                .get(DATAPLANE_MODE_LABEL)
                .or_else(|| ns_labels.and_then(|l| l.get(DATAPLANE_MODE_LABEL)))
                .cloned();
            PodStatus {
                name: d.name.clone(),
                namespace: d.namespace.clone(),
                ip: p.ip,
                node: d.node.clone(),
                service_account: d.spec.service_account().to_string(),
                identity: format!(
                    "spiffe://{td}/ns/{}/sa/{}",
                    d.namespace,
                    d.spec.service_account()
                ),
                dataplane_mode,
                enrolled: enrolled.contains(&format!("{}/{}", d.namespace, d.name)),
                phase,
                ready,
                containers,
                netns: p.netns.clone(),
                owner: d.owner.clone(),
                waypoint: d.waypoint.clone(),
            }
        })
        .collect();
    let services = mesh
        .plan
        .services
        .values()
        .map(|svc| ServiceStatus {
            name: svc.name.clone(),
            namespace: svc.namespace.clone(),
            cluster_ip: svc.cluster_ip,
            ports: svc
                .ports
                .iter()
                .map(|p| ServicePortStatus {
                    name: p.name.clone(),
                    port: p.number(),
                    protocol: p.proto().as_str().into(),
                    app_protocol: p.app_protocol.clone(),
                })
                .collect(),
            endpoints: endpoints_of(svc, mesh.pods.values())
                .map(|p| EndpointStatus {
                    name: p.desired.name.clone(),
                    ip: p.ip,
                    node: p.desired.node.clone(),
                    ports: svc
                        .ports
                        .iter()
                        .filter_map(|sp| {
                            plan::target_port(sp, &p.desired.spec).map(|t| EndpointPort {
                                port: sp.number(),
                                target_port: t,
                            })
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    StatusReport {
        mesh: mesh.paths.name.clone(),
        daemon: DaemonStatus {
            pid: std::process::id() as i32,
            running: true,
        },
        pod_cidr: mesh.cluster.pod_cidr.to_string(),
        service_cidr: mesh.cluster.service_cidr.to_string(),
        nodes: mesh
            .cluster
            .nodes
            .iter()
            .map(|n| NodeStatus {
                name: n.name.clone(),
                ip: n.ip,
                pod_cidr: n.pod_cidr.to_string(),
                netns: mesh.paths.node_netns(&n.name),
            })
            .collect(),
        pods,
        services,
        waypoints: crate::waypoints::statuses(&mesh.plan),
        components: {
            let mut c = Vec::new();
            if let Some(cp) = &mesh.control_plane {
                c.push(cp.status(&mesh.supervisor));
            }
            c.extend(crate::node_agents::statuses(
                &mesh.paths,
                &mesh.cluster,
                &mesh.supervisor,
            ));
            c
        },
    }
}
