//! The watches: one kube-runtime `watcher` (list, then watch; re-list on expiry; exponential back-off on
//! errors) per kind the translation reads, each turning events into [`Change`]s for the store.
//!
//! A kind whose resource the API server does not serve (its CRD is not installed) counts as empty and is
//! looked for again every [`ABSENT_RETRY`], so installing a CRD later needs no restart.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::store::Change;

/// How often a kind whose resource is missing is looked for again.
const ABSENT_RETRY: Duration = Duration::from_secs(10);

/// A kind the control plane reads from the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub kind: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
}

impl Kind {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }
}

const fn kind(
    kind: &'static str,
    group: &'static str,
    version: &'static str,
    plural: &'static str,
) -> Kind {
    Kind {
        kind,
        group,
        version,
        plural,
    }
}

/// Every kind the translation reads. Deployments are not among them: their pods come from the API.
pub const KINDS: &[Kind] = &[
    kind("Namespace", "", "v1", "namespaces"),
    kind("Node", "", "v1", "nodes"),
    kind("ServiceAccount", "", "v1", "serviceaccounts"),
    kind("Pod", "", "v1", "pods"),
    kind("Service", "", "v1", "services"),
    kind(
        "AuthorizationPolicy",
        "security.istio.io",
        "v1",
        "authorizationpolicies",
    ),
    kind(
        "PeerAuthentication",
        "security.istio.io",
        "v1",
        "peerauthentications",
    ),
    kind(
        "DestinationRule",
        "networking.istio.io",
        "v1",
        "destinationrules",
    ),
    kind("Gateway", "gateway.networking.k8s.io", "v1", "gateways"),
    kind("HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes"),
    kind("GRPCRoute", "gateway.networking.k8s.io", "v1", "grpcroutes"),
    kind(
        "FaultInjection",
        "meshctl.dev",
        "v1alpha1",
        "faultinjections",
    ),
    kind(
        "LocalRateLimit",
        "meshctl.dev",
        "v1alpha1",
        "localratelimits",
    ),
];

/// Kinds written (never watched) by the mesh: by the waypoint controller, or by meshctl as its nodes' kubelets.
const WRITTEN: &[Kind] = &[
    kind("ConfigMap", "", "v1", "configmaps"),
    kind("Deployment", "apps", "v1", "deployments"),
];

/// The API resource of `kind` at `api_version`: one of [`KINDS`] or of the kinds the mesh writes.
pub fn api_resource(api_version: &str, kind: &str) -> Option<ApiResource> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let k = KINDS
        .iter()
        .chain(WRITTEN)
        .find(|k| k.kind == kind && k.group == group)?;
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        k.plural,
    ))
}

/// The names of [`KINDS`].
pub fn kind_names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.kind).collect()
}

/// An object as JSON with its `apiVersion` and `kind` (list items may lack them).
fn to_json(k: &Kind, object: DynamicObject) -> Value {
    let mut v = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(map) = v.as_object_mut() {
        map.insert("apiVersion".into(), k.api_version().into());
        map.insert("kind".into(), k.kind.into());
    }
    v
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The HTTP status code of a watch error that the API server answered.
fn watch_error_code(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s))
        | watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    }
}

fn watch_error_is_not_found(e: &watcher::Error) -> bool {
    watch_error_code(e) == Some(404)
}

/// Watches one kind until shutdown, sending changes to `tx`.
pub async fn run(
    client: Client,
    k: Kind,
    tx: mpsc::Sender<Change>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &k.resource());
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Err(e) if is_not_found(&e) => {
                tracing::warn!(
                    kind = k.kind,
                    api_version = %k.api_version(),
                    "the API server does not serve this kind (CRD not installed?); treating it as empty"
                );
                if tx.send(Change::Absent { kind: k.kind }).await.is_err() {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(ABSENT_RETRY) => continue,
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
            _ => {}
        }
        let mut events = watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .boxed();
        loop {
            let next = tokio::select! {
                n = events.try_next() => n,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let change = match next {
                Ok(Some(watcher::Event::Init)) => Change::Relist { kind: k.kind },
                Ok(Some(watcher::Event::InitApply(o) | watcher::Event::Apply(o))) => {
                    Change::Apply {
                        kind: k.kind,
                        object: to_json(&k, o),
                    }
                }
                Ok(Some(watcher::Event::Delete(o))) => Change::Delete {
                    kind: k.kind,
                    object: to_json(&k, o),
                },
                Ok(Some(watcher::Event::InitDone)) => Change::Listed { kind: k.kind },
                Ok(None) => break,
                Err(e) if watch_error_is_not_found(&e) => {
                    tracing::warn!(kind = k.kind, error = %e, "the kind went away (CRD removed?)");
                    break;
                }
                Err(e) if watch_error_code(&e) == Some(403) => {
                    // Missing RBAC does not heal by itself: the operator must grant it.
                    tracing::error!(kind = k.kind, error = %e, "watch forbidden (check the control plane's RBAC); retrying with back-off");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(kind = k.kind, error = %e, "watch failed; retrying with back-off");
                    continue;
                }
            };
            if tx.send(change).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_of_what_is_watched_and_written() {
        for (api, kind, plural) in [
            ("v1", "Pod", "pods"),
            ("v1", "Namespace", "namespaces"),
            ("v1", "ConfigMap", "configmaps"),
            ("apps/v1", "Deployment", "deployments"),
            (
                "security.istio.io/v1",
                "AuthorizationPolicy",
                "authorizationpolicies",
            ),
            ("gateway.networking.k8s.io/v1", "GRPCRoute", "grpcroutes"),
            ("meshctl.dev/v1alpha1", "LocalRateLimit", "localratelimits"),
        ] {
            let r = api_resource(api, kind).unwrap_or_else(|| panic!("{kind}"));
            assert_eq!((r.api_version.as_str(), r.plural.as_str()), (api, plural));
        }
        assert!(api_resource("v1", "Deployment").is_none(), "wrong group");
        assert!(api_resource("v1", "Secret").is_none());
    }

    #[test]
    fn every_kind_is_the_api_resource_of_the_type_it_parses_into() {
        use crate::manifest::*;
        use kube::Resource;
        fn of<K: Resource<DynamicType = ()>>() -> [String; 4] {
            [K::kind(&()), K::group(&()), K::version(&()), K::plural(&())].map(|s| s.into_owned())
        }
        let types = [
            of::<Namespace>(),
            of::<Node>(),
            of::<ServiceAccount>(),
            of::<Pod>(),
            of::<Service>(),
            of::<AuthorizationPolicy>(),
            of::<PeerAuthentication>(),
            of::<DestinationRule>(),
            of::<Gateway>(),
            of::<HttpRoute>(),
            of::<GrpcRoute>(),
            of::<FaultInjection>(),
            of::<LocalRateLimit>(),
        ];
        let table: Vec<[String; 4]> = KINDS
            .iter()
            .map(|k| [k.kind, k.group, k.version, k.plural].map(str::to_owned))
            .collect();
        assert_eq!(table, types);
    }

    #[test]
    fn every_kind_is_one_the_manifest_parser_accepts_at_that_api_version() {
        for k in KINDS {
            let doc = serde_yaml_ng::from_str(&format!(
                "apiVersion: {}\nkind: {}\nmetadata: {{name: x}}\n",
                k.api_version(),
                k.kind
            ))
            .unwrap_or(serde_yaml_ng::Value::Null);
            let err = crate::manifest::parse_document(
                crate::manifest::Source {
                    file: "t".into(),
                    document: 0,
                },
                doc,
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
            // Missing specs may fail, but never on the kind or the API version.
            assert!(
                !err.contains("unknown kind") && !err.contains("apiVersion"),
                "{}: {err}",
                k.kind
            );
        }
    }
}
