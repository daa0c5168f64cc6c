//! What the controller wants the API server to hold (pure): for each Gateway of class `istio-waypoint`, its
//! ServiceAccount, Deployment and Service (owned by the Gateway, as istiod's deployment controller makes them);
//! the mesh root certificate (ConfigMap `istio-ca-root-cert`) in every namespace, as istiod keeps it; and the
//! `status` of waypoint Gateways (`addresses`, `Accepted`/`Programmed`, listeners) and of HTTPRoutes/GRPCRoutes
//! (`parents` with `Accepted`/`ResolvedRefs`).
//!
//! Conditions carry an empty `lastTransitionTime`: the writer fills in the time when it writes, so an unchanged
//! status compares equal and is not written again.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::store::{Entry, Store};
use crate::manifest::gateway::{BackendRef, HBONE_PORT, ParentRef};
use crate::manifest::{ManifestObject, Object, ObjectKey, ServiceExt};

/// `controllerName` of the `istio-waypoint` class and of routes bound to Services, as istiod writes it.
pub const CONTROLLER_NAME: &str = "istio.io/mesh-controller";
/// Label on what the controller makes.
pub const MANAGED_LABEL: &str = "gateway.istio.io/managed";
pub const MANAGED_VALUE: &str = "istio.io-mesh-controller";
const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// The ConfigMap holding the mesh root certificate, in every namespace as istiod's namespace controller keeps it:
/// Istio's charts mount it into ztunnel and waypoint pods (`/var/run/secrets/istio/root-cert.pem`).
pub const ROOT_CERT_CONFIGMAP: &str = "istio-ca-root-cert";
/// Namespaces istiod leaves without the root certificate (its injection-ignored system namespaces).
const NO_ROOT_CERT_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];
/// Readiness port of the waypoint (`/healthz/ready`).
const STATUS_PORT: u16 = 15021;
const STATS_PORT: u16 = 15020;

/// How waypoint Deployments are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The waypoint image.
    pub image: String,
    /// xDS and CA address the waypoint pods use (`https://<control plane service>:15012`).
    pub xds_address: String,
    pub trust_domain: String,
    /// PEM of the mesh root, written to `istio-ca-root-cert` in each waypoint namespace.
    pub root_cert_pem: String,
}

/// The objects to hold (server-side applied) and the statuses to write.
#[derive(Debug, Default, PartialEq)]
pub struct Desired {
    /// Whole objects with `apiVersion`, `kind` and metadata.
    pub objects: Vec<Value>,
    /// `(key, apiVersion, status)`.
    pub statuses: Vec<(ObjectKey, String, Value)>,
}

fn condition(kind: &str, ok: bool, reason: &str, message: &str, generation: i64) -> Value {
    json!({
        "type": kind,
        "status": if ok { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": "",
    })
}

fn owner(key: &ObjectKey, entry: &Entry) -> Value {
    json!([{
        "apiVersion": entry.api_version,
        "kind": "Gateway",
        "name": key.name,
        "uid": entry.uid,
    }])
}

fn meta(name: &str, ns: &str, owner: &Value, gateway: &str) -> Value {
    json!({
        "name": name,
        "namespace": ns,
        "labels": {MANAGED_LABEL: MANAGED_VALUE, GATEWAY_NAME_LABEL: gateway},
        "ownerReferences": owner,
    })
}

/// The ServiceAccount, Deployment and Service of waypoint Gateway `ns/name`.
fn waypoint_objects(key: &ObjectKey, entry: &Entry, s: &Settings) -> [Value; 3] {
    let (ns, name) = (key.namespace.as_str(), key.name.as_str());
    let owner = owner(key, entry);
    let field = |var: &str, path: &str| json!({"name": var, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let value = |var: &str, v: &str| json!({"name": var, "value": v});
    let labels = json!({GATEWAY_NAME_LABEL: name, MANAGED_LABEL: MANAGED_VALUE,
        "istio.io/dataplane-mode": "none"});
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, ns, &owner, name),
        "spec": {
            "selector": {"matchLabels": {GATEWAY_NAME_LABEL: name}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": STATS_PORT.to_string(),
                        "prometheus.io/path": "/stats/prometheus",
                    },
                },
                "spec": {
                    "serviceAccountName": name,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "istio-proxy",
                        "image": s.image,
                        "ports": [
                            {"name": "mesh", "containerPort": HBONE_PORT, "protocol": "TCP"},
                            {"name": "http-envoy-prom", "containerPort": STATS_PORT, "protocol": "TCP"},
                            {"name": "status-port", "containerPort": STATUS_PORT, "protocol": "TCP"},
                        ],
                        "env": [
                            value("XDS_ADDRESS", &s.xds_address),
                            value("CA_ADDRESS", &s.xds_address),
                            value("XDS_ROOT_CA", "/var/run/secrets/istio/root-cert.pem"),
                            value("CA_ROOT_CA", "/var/run/secrets/istio/root-cert.pem"),
                            value("AUTH_TOKEN", "/var/run/secrets/tokens/istio-token"),
                            value("GATEWAY_NAME", name),
                            value("SERVICE_ACCOUNT", name),
                            value("TRUST_DOMAIN", &s.trust_domain),
                            field("POD_NAME", "metadata.name"),
                            field("POD_NAMESPACE", "metadata.namespace"),
                            field("INSTANCE_IP", "status.podIP"),
                        ],
                        "readinessProbe": {
                            "httpGet": {"path": "/healthz/ready", "port": STATUS_PORT},
                            "periodSeconds": 2,
                            "failureThreshold": 4,
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": true,
                            "runAsNonRoot": true,
                            "runAsUser": 1337,
                            "runAsGroup": 1337,
                        },
                        "volumeMounts": [
                            {"name": "istio-token", "mountPath": "/var/run/secrets/tokens"},
                            {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"},
                        ],
                    }],
                    "volumes": [
                        {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
                            "audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
                        {"name": "istiod-ca-cert", "configMap": {"name": ROOT_CERT_CONFIGMAP}},
                    ],
                },
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, ns, &owner, name),
        "spec": {
            "selector": {GATEWAY_NAME_LABEL: name},
            "ports": [
                {"name": "status-port", "port": STATUS_PORT, "targetPort": STATUS_PORT, "protocol": "TCP"},
                {"name": "mesh", "port": HBONE_PORT, "targetPort": HBONE_PORT, "protocol": "TCP"},
            ],
        },
    });
    let account = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(name, ns, &owner, name),
    });
    [account, deployment, service]
}

/// The cluster IP of Service `ns/name`, if the store has one.
fn cluster_ip(store: &Store, ns: &str, name: &str) -> Option<String> {
    let key = ObjectKey {
        kind: "Service".into(),
        namespace: ns.into(),
        name: name.into(),
    };
    match &store.get(&key)?.parsed.as_ref().ok()?.object {
        Object::Service(s) => s
            .cluster_ip()
            .filter(|ip| !ip.is_empty() && *ip != "None")
            .map(str::to_owned),
        _ => None,
    }
}

fn gateway_status(store: &Store, key: &ObjectKey, entry: &Entry, listeners: &[String]) -> Value {
    let g = entry.generation;
    let address = cluster_ip(store, &key.namespace, &key.name);
    let programmed = match &address {
        Some(ip) => condition(
            "Programmed",
            true,
            "Programmed",
            &format!(
                "Resource programmed, assigned to service(s) {}.{}.svc.cluster.local:{HBONE_PORT} ({ip})",
                key.name, key.namespace
            ),
            g,
        ),
        None => condition(
            "Programmed",
            false,
            "AddressNotAssigned",
            "Waiting for the waypoint Service to get an address",
            g,
        ),
    };
    let listener_status: Vec<Value> = listeners
        .iter()
        .map(|l| {
            json!({
                "name": l,
                "supportedKinds": [],
                "attachedRoutes": 0,
                "conditions": [
                    condition("Accepted", true, "Accepted", "No errors found", g),
                    condition("Programmed", address.is_some(), if address.is_some() { "Programmed" } else { "Pending" }, "", g),
                    condition("ResolvedRefs", true, "ResolvedRefs", "No errors found", g),
                ],
            })
        })
        .collect();
    json!({
        "addresses": address.map(|ip| vec![json!({"type": "IPAddress", "value": ip})]).unwrap_or_default(),
        "conditions": [condition("Accepted", true, "Accepted", "Resource accepted", g), programmed],
        "listeners": listener_status,
    })
}

/// Whether `parent` (of a route in `ns`) is something the mesh serves: a Service or a waypoint Gateway.
fn parent_exists(store: &Store, ns: &str, parent: &ParentRef) -> bool {
    let ns = parent.namespace.as_deref().unwrap_or(ns);
    if parent.is_service() {
        return cluster_ip(store, ns, &parent.name).is_some()
            || store
                .get(&ObjectKey {
                    kind: "Service".into(),
                    namespace: ns.into(),
                    name: parent.name.clone(),
                })
                .is_some();
    }
    let gateway = ObjectKey {
        kind: "Gateway".into(),
        namespace: ns.into(),
        name: parent.name.clone(),
    };
    matches!(
        store.get(&gateway).and_then(|e| e.parsed.as_ref().ok()).map(|o| &o.object),
        Some(Object::Gateway(g)) if g.is_waypoint()
    )
}

fn backend_missing<'a>(
    store: &Store,
    ns: &str,
    refs: impl Iterator<Item = &'a BackendRef>,
) -> Vec<String> {
    refs.filter(|b| matches!(b.kind.as_deref(), None | Some("Service")))
        .filter_map(|b| {
            let bns = b.namespace.as_deref().unwrap_or(ns);
            let key = ObjectKey {
                kind: "Service".into(),
                namespace: bns.into(),
                name: b.name.clone(),
            };
            store
                .get(&key)
                .is_none()
                .then(|| format!("{bns}/{}", b.name))
        })
        .collect()
}

fn route_status(store: &Store, obj: &ManifestObject, entry: &Entry) -> Option<Value> {
    let ns = obj.object.namespace().unwrap_or_default();
    let (parents, backends): (&[ParentRef], Vec<&BackendRef>) = match &obj.object {
        Object::HttpRoute(r) => (
            &r.spec.parent_refs,
            r.spec.rules.iter().flat_map(|r| &r.backend_refs).collect(),
        ),
        Object::GrpcRoute(r) => (
            &r.spec.parent_refs,
            r.spec.rules.iter().flat_map(|r| &r.backend_refs).collect(),
        ),
        _ => return None,
    };
    let g = entry.generation;
    let missing = backend_missing(store, ns, backends.into_iter());
    let resolved = if missing.is_empty() {
        condition(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "All references resolved",
            g,
        )
    } else {
        condition(
            "ResolvedRefs",
            false,
            "BackendNotFound",
            &format!("backend(s) not found: {}", missing.join(", ")),
            g,
        )
    };
    let parents: Vec<Value> = parents
        .iter()
        .map(|p| {
            let accepted = if parent_exists(store, ns, p) {
                condition("Accepted", true, "Accepted", "Route was valid", g)
            } else {
                condition("Accepted", false, "NoMatchingParent", "parent not found", g)
            };
            json!({
                "parentRef": serde_json::to_value(p).unwrap_or_default(),
                "controllerName": CONTROLLER_NAME,
                "conditions": [accepted, resolved.clone()],
            })
        })
        .collect();
    Some(json!({"parents": parents}))
}

/// Everything the controller should hold and write, from the objects the API server holds.
pub fn desired(store: &Store, settings: &Settings) -> Desired {
    let mut out = Desired::default();
    // Namespaces that get the root certificate: every namespace, and each one with a waypoint (its Namespace
    // object may not have been seen yet).
    let mut root_cert_namespaces = BTreeMap::new();
    for (key, entry) in store.entries() {
        let Ok(obj) = &entry.parsed else { continue };
        match &obj.object {
            Object::Gateway(g) if g.is_waypoint() => {
                out.objects.extend(waypoint_objects(key, entry, settings));
                root_cert_namespaces.insert(key.namespace.clone(), ());
                let listeners: Vec<String> =
                    g.spec.listeners.iter().map(|l| l.name.clone()).collect();
                out.statuses.push((
                    key.clone(),
                    entry.api_version.clone(),
                    gateway_status(store, key, entry, &listeners),
                ));
            }
            Object::HttpRoute(_) | Object::GrpcRoute(_) => {
                if let Some(status) = route_status(store, obj, entry) {
                    out.statuses
                        .push((key.clone(), entry.api_version.clone(), status));
                }
            }
            Object::Namespace(_) if !NO_ROOT_CERT_NAMESPACES.contains(&key.name.as_str()) => {
                root_cert_namespaces.insert(key.name.clone(), ());
            }
            _ => {}
        }
    }
    for ns in root_cert_namespaces.keys() {
        out.objects.push(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": ROOT_CERT_CONFIGMAP, "namespace": ns,
                "labels": {MANAGED_LABEL: MANAGED_VALUE}},
            "data": {"root-cert.pem": settings.root_cert_pem},
        }));
    }
    out
}

#[cfg(test)]
mod tests;
