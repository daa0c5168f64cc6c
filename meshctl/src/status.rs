//! What `meshctl status` reports, as JSON (every object carries its `name` and its addresses under keys that say
//! so) and as tables for a person.

use std::fmt::Write;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::supervisor::ContainerStatus;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub mesh: String,
    pub daemon: DaemonStatus,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: String,
    pub nodes: Vec<NodeStatus>,
    pub pods: Vec<PodStatus>,
    pub services: Vec<ServiceStatus>,
    pub waypoints: Vec<WaypointStatus>,
    /// Every mesh component (ztunnel, node agent, control plane, waypoints) with its health and addresses.
    pub components: Vec<ComponentStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonStatus {
    pub pid: i32,
    pub running: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub name: String,
    pub ip: Ipv4Addr,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,
    pub netns: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub name: String,
    pub namespace: String,
    pub ip: Ipv4Addr,
    pub node: String,
    pub service_account: String,
    pub identity: String,
    /// The `istio.io/dataplane-mode` that applies (pod label, else namespace label), if any.
    pub dataplane_mode: Option<String>,
    /// Whether the mesh data plane has taken the pod in (requires a running node tunnel).
    pub enrolled: bool,
    pub phase: String,
    pub ready: bool,
    pub containers: Vec<ContainerStatus>,
    pub netns: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The Gateway whose waypoint this pod is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    pub name: String,
    pub namespace: String,
    /// `None` for a headless Service.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<ServicePortStatus>,
    pub endpoints: Vec<EndpointStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePortStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    /// The pod's name.
    pub name: String,
    pub ip: Ipv4Addr,
    pub node: String,
    /// Service port → the pod's port.
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    pub port: u16,
    pub target_port: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointStatus {
    pub name: String,
    pub namespace: String,
    pub ip: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    pub name: String,
    pub kind: String,
    pub node: Option<String>,
    pub healthy: bool,
    pub admin_address: Option<String>,
    pub metrics_address: Option<String>,
}

impl StatusReport {
    /// Tables for a person.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let daemon = if self.daemon.running {
            format!("running (pid {})", self.daemon.pid)
        } else {
            "NOT RUNNING".into()
        };
        let _ = writeln!(
            s,
            "mesh {}: daemon {daemon}; pods {}, services {}",
            self.mesh, self.pod_cidr, self.service_cidr
        );
        let _ = writeln!(s, "\nNODE        IP              POD CIDR");
        for n in &self.nodes {
            let _ = writeln!(s, "{:<11} {:<15} {}", n.name, n.ip.to_string(), n.pod_cidr);
        }
        let _ = writeln!(
            s,
            "\nPOD                                 NODE     IP            STATUS                READY ENROLLED IDENTITY"
        );
        for p in &self.pods {
            let _ = writeln!(
                s,
                "{:<35} {:<8} {:<13} {:<21} {:<5} {:<8} {}",
                format!("{}/{}", p.namespace, p.name),
                p.node,
                p.ip.to_string(),
                pod_status_text(p),
                p.ready,
                p.enrolled,
                p.identity
            );
        }
        let _ = writeln!(
            s,
            "\nSERVICE                   CLUSTER-IP     PORTS          ENDPOINTS"
        );
        for svc in &self.services {
            let ports: Vec<String> = svc
                .ports
                .iter()
                .map(|p| format!("{}/{}", p.port, p.protocol))
                .collect();
            let eps: Vec<String> = svc
                .endpoints
                .iter()
                .flat_map(|e| {
                    e.ports
                        .iter()
                        .map(move |p| format!("{}:{}", e.ip, p.target_port))
                })
                .collect();
            let vip = svc
                .cluster_ip
                .map(|i| i.to_string())
                .unwrap_or_else(|| "None".into());
            let eps = if eps.is_empty() {
                "<none>".to_string()
            } else {
                eps.join(",")
            };
            let _ = writeln!(
                s,
                "{:<25} {:<14} {:<14} {eps}",
                format!("{}/{}", svc.namespace, svc.name),
                vip,
                ports.join(",")
            );
        }
        if !self.waypoints.is_empty() {
            let _ = writeln!(s, "\nWAYPOINT                  SERVICE-IP");
            for w in &self.waypoints {
                let ip = w.ip.map_or_else(|| "None".to_owned(), |i| i.to_string());
                let _ = writeln!(s, "{:<25} {ip}", format!("{}/{}", w.namespace, w.name));
            }
        }
        if self.components.is_empty() {
            let _ = writeln!(s, "\nmesh components: none running yet");
        } else {
            let _ = writeln!(
                s,
                "\nCOMPONENT            NODE     HEALTHY ADMIN                 METRICS"
            );
            for c in &self.components {
                let _ = writeln!(
                    s,
                    "{:<20} {:<8} {:<7} {:<21} {}",
                    c.name,
                    c.node.as_deref().unwrap_or("-"),
                    c.healthy,
                    c.admin_address.as_deref().unwrap_or("-"),
                    c.metrics_address.as_deref().unwrap_or("-")
                );
            }
        }
        s
    }
}

/// `Running`, `Completed`, `Error (exit 3)`, `CrashLoopBackOff (exit 1, 4 restarts)`, as kubectl shows them.
pub fn pod_status_text(p: &PodStatus) -> String {
    use crate::supervisor::ContainerState;
    for c in &p.containers {
        match &c.state {
            ContainerState::Waiting { reason } if reason == "CrashLoopBackOff" => {
                return format!(
                    "CrashLoopBackOff (exit {}, {} restarts)",
                    c.last_exit_code.unwrap_or_default(),
                    c.restart_count
                );
            }
            ContainerState::Terminated { exit_code, .. } if *exit_code != 0 => {
                return format!(
                    "{} (exit {exit_code})",
                    if p.phase == "Failed" {
                        "Failed"
                    } else {
                        "Error"
                    }
                );
            }
            _ => {}
        }
    }
    match p.phase.as_str() {
        "Succeeded" => "Completed".into(),
        other => other.into(),
    }
}
