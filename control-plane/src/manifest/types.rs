//! The core Kubernetes kinds, from `k8s-openapi` (the Kubernetes ecosystem's generated types): every field as
//! the API server serves it, unknown fields ignored, so a Pod exactly as the API server returns it (image only,
//! `status`, `managedFields`) reads as it is. And the local mesh's own `Cluster` document.
//!
//! Their fields are mostly optional, as in the API; `access` reads them with Kubernetes' defaults, and `rules`
//! checks what Kubernetes would refuse at admission (ports out of range, unknown protocols, missing specs).

use kube::CustomResource;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
pub use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, Namespace, Node, ObjectFieldSelector, Pod,
    PodCondition, PodSpec, PodStatus, PodTemplateSpec, Service, ServiceAccount, ServicePort,
    ServiceSpec,
};
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference,
};
pub use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The local mesh's own document (`apiVersion: meshctl.dev/v1alpha1`, `kind: Cluster`): the nodes and address
/// ranges. Every field is optional (so is `spec`); `meshctl up --nodes N` overrides `nodes`. Not an API
/// object: no CRD is generated for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, CustomResource)]
#[kube(
    group = "meshctl.dev",
    version = "v1alpha1",
    kind = "Cluster",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u32>,
    #[serde(default, rename = "podCIDR", skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<ipnet::Ipv4Net>,
    #[serde(
        default,
        rename = "nodeCIDRMaskSize",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_cidr_mask_size: Option<u8>,
    #[serde(
        default,
        rename = "serviceCIDR",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_cidr: Option<ipnet::Ipv4Net>,
    #[serde(
        default,
        rename = "underlayCIDR",
        skip_serializing_if = "Option::is_none"
    )]
    pub underlay_cidr: Option<ipnet::Ipv4Net>,
}
