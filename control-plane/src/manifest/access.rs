//! Typed reads of the `k8s-openapi` objects' optional fields, with Kubernetes' defaults: no labels is empty
//! labels, the service account is `default`, the restart policy `Always`, one replica, protocol TCP, a pod is
//! ready unless a `Ready` condition says `False`. Port numbers read as `u16` once `rules` checked their range
//! (every parsed object has been checked); a value out of range reads as 0.
//!
//! Selector, target port and cluster IP semantics are `semantics`'s; this module only reads fields.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::types::{
    ContainerPort, Deployment, ObjectMeta, OwnerReference, Pod, PodSpec, Service, ServicePort,
};

/// Labels, annotations, selectors.
pub type Labels = BTreeMap<String, String>;

static NO_LABELS: Labels = BTreeMap::new();
static NO_META: LazyLock<ObjectMeta> = LazyLock::new(ObjectMeta::default);
static NO_POD_SPEC: LazyLock<PodSpec> = LazyLock::new(PodSpec::default);

/// A port's protocol; the mesh carries TCP and UDP (SCTP is refused by `rules`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    /// Reads a `protocol` field (absent: TCP); the error is the message for that field.
    pub fn parse(value: Option<&str>) -> Result<Protocol, String> {
        match value {
            None | Some("TCP") => Ok(Protocol::Tcp),
            Some("UDP") => Ok(Protocol::Udp),
            Some(other) => Err(format!("{other:?} is not supported; use TCP or UDP")),
        }
    }
}

/// A pod's `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// Reads `spec.restartPolicy` (absent: `Always`); the error is the message for that field.
    pub fn parse(value: Option<&str>) -> Result<RestartPolicy, String> {
        match value {
            None | Some("Always") => Ok(RestartPolicy::Always),
            Some("OnFailure") => Ok(RestartPolicy::OnFailure),
            Some("Never") => Ok(RestartPolicy::Never),
            Some(other) => Err(format!("{other:?} is not one of Always, OnFailure, Never")),
        }
    }
}

/// A port number as the mesh uses it: 0 when out of range (which `rules` refuses).
fn port_number(n: i32) -> u16 {
    u16::try_from(n).unwrap_or(0)
}

/// `metadata` fields.
pub trait MetaExt {
    /// `metadata.name` (empty when unset, which `rules` refuses for an object).
    fn name(&self) -> &str;
    fn labels(&self) -> &Labels;
    fn annotations(&self) -> &Labels;
    fn owner_references(&self) -> &[OwnerReference];
}

impl MetaExt for ObjectMeta {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    fn labels(&self) -> &Labels {
        self.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    fn annotations(&self) -> &Labels {
        self.annotations.as_ref().unwrap_or(&NO_LABELS)
    }

    fn owner_references(&self) -> &[OwnerReference] {
        self.owner_references.as_deref().unwrap_or_default()
    }
}

/// A container or Service port: its number and protocol.
pub trait PortExt {
    fn number(&self) -> u16;
    fn proto(&self) -> Protocol;
}

impl PortExt for ContainerPort {
    fn number(&self) -> u16 {
        port_number(self.container_port)
    }

    fn proto(&self) -> Protocol {
        Protocol::parse(self.protocol.as_deref()).unwrap_or_default()
    }
}

impl PortExt for ServicePort {
    fn number(&self) -> u16 {
        port_number(self.port)
    }

    fn proto(&self) -> Protocol {
        Protocol::parse(self.protocol.as_deref()).unwrap_or_default()
    }
}

/// `spec` of a pod (or of a pod template).
pub trait PodSpecExt {
    /// `serviceAccountName`, else the deprecated `serviceAccount`, else `default`.
    fn service_account(&self) -> &str;
    fn restart(&self) -> RestartPolicy;
    /// Every container's ports.
    fn container_ports(&self) -> impl Iterator<Item = &ContainerPort>;
}

impl PodSpecExt for PodSpec {
    fn service_account(&self) -> &str {
        (self.service_account_name.as_deref())
            .or(self.service_account.as_deref())
            .unwrap_or("default")
    }

    fn restart(&self) -> RestartPolicy {
        RestartPolicy::parse(self.restart_policy.as_deref()).unwrap_or_default()
    }

    fn container_ports(&self) -> impl Iterator<Item = &ContainerPort> {
        self.containers
            .iter()
            .flat_map(|c| c.ports.as_deref().unwrap_or_default())
    }
}

pub trait PodExt {
    /// `spec` (empty when absent, which `rules` refuses).
    fn pod_spec(&self) -> &PodSpec;
    /// `status.podIP`, when it is an IPv4 address.
    fn pod_ip(&self) -> Option<Ipv4Addr>;
    /// `false` only when a `Ready` condition says `False`: a pod without conditions is ready.
    fn is_ready(&self) -> bool;
}

impl PodExt for Pod {
    fn pod_spec(&self) -> &PodSpec {
        self.spec.as_ref().unwrap_or(&NO_POD_SPEC)
    }

    fn pod_ip(&self) -> Option<Ipv4Addr> {
        self.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
    }

    fn is_ready(&self) -> bool {
        let conditions = self.status.as_ref().and_then(|s| s.conditions.as_deref());
        !conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False")
    }
}

pub trait ServiceExt {
    fn ports(&self) -> &[ServicePort];
    /// `spec.selector`: `None` for a Service without one (its endpoints are not the mesh's to pick).
    fn selector(&self) -> Option<&Labels>;
    fn cluster_ip(&self) -> Option<&str>;
}

impl ServiceExt for Service {
    fn ports(&self) -> &[ServicePort] {
        self.spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default()
    }

    fn selector(&self) -> Option<&Labels> {
        self.spec.as_ref()?.selector.as_ref()
    }

    fn cluster_ip(&self) -> Option<&str> {
        self.spec.as_ref()?.cluster_ip.as_deref()
    }
}

pub trait DeploymentExt {
    /// `spec.replicas` (default 1; a negative count, which `rules` refuses, reads as 0).
    fn replicas(&self) -> u32;
    /// `spec.selector.matchLabels`.
    fn match_labels(&self) -> &Labels;
    /// `spec.template.metadata`.
    fn template_meta(&self) -> &ObjectMeta;
    /// `spec.template.spec`.
    fn template_spec(&self) -> &PodSpec;
}

impl DeploymentExt for Deployment {
    fn replicas(&self) -> u32 {
        let n = self.spec.as_ref().map_or(Some(1), |s| s.replicas);
        u32::try_from(n.unwrap_or(1)).unwrap_or(0)
    }

    fn match_labels(&self) -> &Labels {
        self.spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref())
            .unwrap_or(&NO_LABELS)
    }

    fn template_meta(&self) -> &ObjectMeta {
        self.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .unwrap_or(&NO_META)
    }

    fn template_spec(&self) -> &PodSpec {
        self.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .unwrap_or(&NO_POD_SPEC)
    }
}
