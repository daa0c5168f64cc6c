//! Waypoints in the plan: each Gateway of class `istio-waypoint` becomes what Istio's deployment
//! controller makes of it: a one-replica Deployment `<gateway>` (so one pod, named like any
//! Deployment's, `<gateway>-<hash>-0`), the service account `<gateway>`, and the Service
//! `<gateway>` (15008 → 15008, selecting the pod by `gateway.networking.k8s.io/gateway-name`)
//! unless the manifests define one. The Service gets its address here, like any Service, and is
//! published with it, so the control plane uses it instead of making its own.
//!
//! The pod is kept out of the node tunnel (`istio.io/dataplane-mode: none`): it speaks HBONE
//! itself. Its container runs `waypoint` with the pod's own facts in its environment (downward
//! API, Gateway name, trust domain, cluster id); what only the running mesh knows (the binary's
//! path, the control plane's address as seen from the pod, the pod's CA token) is added when the
//! pod starts (`pods::Launch`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use cni_plugin::enrollment;

use super::{DesiredPod, DesiredService, desired_pod, digest};
use crate::manifest::gateway::HBONE_PORT;
use crate::manifest::{
    Container, ContainerPort, EnvVar, EnvVarSource, ManifestObject, MetaExt, Object,
    ObjectFieldSelector, PodSpec, Protocol,
};

/// Label on a Gateway's pods (and its Service's selector) naming the Gateway.
pub use crate::manifest::semantics::GATEWAY_NAME_LABEL;
/// The waypoint pod's one container; its command is replaced by the `waypoint` binary at start.
pub const CONTAINER: &str = "waypoint";
/// `GET /healthz/ready` on this port answers 200 once the waypoint has its config and certificate.
pub const READINESS_PORT: u16 = 15021;
/// The cluster id the control plane and the node tunnels use (their default).
const CLUSTER_ID: &str = "Kubernetes";

/// The waypoint Gateways of `objects`: `(object, namespace, name)`.
pub(super) fn gateways(
    objects: &[ManifestObject],
) -> impl Iterator<Item = (&ManifestObject, &str, &str)> {
    objects.iter().filter_map(|obj| match &obj.object {
        Object::Gateway(g) if g.is_waypoint() => Some((
            obj,
            obj.object.namespace().unwrap_or_default(),
            g.metadata.name(),
        )),
        _ => None,
    })
}

/// The pod of waypoint Gateway `namespace/gateway`, as its one-replica Deployment would make it.
pub(super) fn pod(namespace: &str, gateway: &str, trust_domain: &str) -> DesiredPod {
    let mut labels = BTreeMap::from([
        (GATEWAY_NAME_LABEL.to_owned(), gateway.to_owned()),
        // The node agent never captures a pod with this label (`cni_plugin::enrollment::decide`).
        (
            enrollment::DATAPLANE_MODE_LABEL.to_owned(),
            enrollment::DATAPLANE_MODE_NONE.to_owned(),
        ),
    ]);
    let spec = spec(gateway, trust_domain);
    let hash = digest(&serde_json::to_string(&(&labels, &spec)).unwrap_or_default());
    labels.insert("pod-template-hash".into(), hash[..10].to_string());
    let mut pod = desired_pod(
        namespace,
        &format!("{gateway}-{}-0", &hash[..10]),
        &labels,
        &BTreeMap::new(),
        &spec,
        Some(format!("Deployment {namespace}/{gateway}")),
    );
    pod.waypoint = Some(gateway.to_owned());
    pod
}

fn spec(gateway: &str, trust_domain: &str) -> PodSpec {
    let field = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let value = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    };
    PodSpec {
        service_account_name: Some(gateway.to_owned()),
        restart_policy: Some("Always".into()),
        containers: vec![Container {
            name: CONTAINER.into(),
            command: Some(vec!["waypoint".into()]),
            env: Some(vec![
                field("POD_NAME", "metadata.name"),
                field("POD_NAMESPACE", "metadata.namespace"),
                field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
                field("INSTANCE_IP", "status.podIP"),
                value("GATEWAY_NAME", gateway),
                value("TRUST_DOMAIN", trust_domain),
                value("CLUSTER_ID", CLUSTER_ID),
            ]),
            ports: Some(vec![ContainerPort {
                name: Some("mesh".into()),
                container_port: i32::from(HBONE_PORT),
                protocol: Some(Protocol::Tcp.as_str().into()),
                ..ContainerPort::default()
            }]),
            ..Container::default()
        }],
        ..PodSpec::default()
    }
}

/// The Service of waypoint Gateway `namespace/gateway` when the manifests have none.
pub(super) fn service(namespace: &str, gateway: &str, cluster_ip: Ipv4Addr) -> DesiredService {
    let (selector, ports) = crate::manifest::semantics::waypoint_service(gateway);
    DesiredService {
        namespace: namespace.to_owned(),
        name: gateway.to_owned(),
        labels: selector.clone(),
        cluster_ip: Some(cluster_ip),
        selector: Some(selector),
        ports,
    }
}
