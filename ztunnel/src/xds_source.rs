//! Feeds the store from xDS (spec §4): one delta ADS stream to `XDS_ADDRESS` subscribing to
//! `istio.workload.Address` and `istio.security.Authorization` as wildcards.
//!
//! Owns the boundary: each resource is decoded and validated into domain types (a bad one is
//! NACKed by name and the last good one stays), resource names must match what they name (a
//! workload's uid, a Service's `namespace/hostname`, a policy's `namespace/name`), and two
//! workloads may not claim one address on one network. Removals are tried as a workload uid,
//! then as a Service. After each response the whole state replaces the store's snapshot.
//! Readiness is held until both types have been ACKed once.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use prost::Message;
use tokio::sync::watch;
use xds::client::{
    AdsClient, Changes, ClientConfig, ClientHandle, Handler, Mode, Rejected, TypeSubscription,
};
use xds::pb::envoy::config::core::v3::Node;
use xds::pb::google::protobuf::{Struct, Value, value::Kind};
use xds::type_url;

use crate::config::XdsSource;
use crate::model::from_proto::AddressResource;
use crate::model::{Authorization, Service, Workload};
use crate::state::Store;

/// Why the xDS client could not be built.
pub use xds::client::EndpointError as XdsSetupError;

#[derive(Default)]
struct Held {
    workloads: HashMap<String, Workload>,
    services: HashMap<String, Service>,
    policies: HashMap<String, Authorization>,
    /// `(network, ip)` → uid of the workload indexed there.
    ips: HashMap<(String, IpAddr), String>,
}

impl Held {
    fn publish(&self, store: &Store) {
        store.replace(
            self.workloads.values().cloned().collect(),
            self.services.values().cloned().collect(),
            self.policies.values().cloned().collect(),
        );
    }

    /// Another workload already holding one of `w`'s addresses.
    fn clash(&self, w: &Workload) -> Option<(IpAddr, &str)> {
        if !w.indexed_by_ip() {
            return None;
        }
        w.workload_ips.iter().find_map(|ip| {
            self.ips
                .get(&(w.network.clone(), *ip))
                .filter(|owner| **owner != w.uid)
                .map(|owner| (*ip, owner.as_str()))
        })
    }

    fn remove_workload(&mut self, uid: &str) -> bool {
        let Some(old) = self.workloads.remove(uid) else {
            return false;
        };
        for ip in &old.workload_ips {
            let key = (old.network.clone(), *ip);
            if self.ips.get(&key).is_some_and(|o| o == uid) {
                self.ips.remove(&key);
            }
        }
        true
    }

    fn insert_workload(&mut self, w: Workload) {
        self.remove_workload(&w.uid);
        if w.indexed_by_ip() {
            for ip in &w.workload_ips {
                self.ips.insert((w.network.clone(), *ip), w.uid.clone());
            }
        }
        self.workloads.insert(w.uid.clone(), w);
    }
}

type Shared = Arc<Mutex<Held>>;

fn lock(held: &Shared) -> std::sync::MutexGuard<'_, Held> {
    held.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct AddressHandler {
    held: Shared,
    store: Store,
}

impl Handler for AddressHandler {
    fn apply(&mut self, changes: Changes) -> Vec<Rejected> {
        let mut held = lock(&self.held);
        let mut rejected = Vec::new();
        for name in changes.removed {
            if !held.remove_workload(&name) {
                held.services.remove(&name);
            }
        }
        for u in changes.updated {
            let decoded = proto::istio::workload::Address::decode(u.body.value.as_slice())
                .map_err(|e| format!("cannot decode: {e}"))
                .and_then(|a| AddressResource::try_from(a).map_err(|e| e.to_string()));
            match decoded {
                Err(reason) => rejected.push(Rejected::new(u.name, reason)),
                Ok(AddressResource::Workload(w)) => {
                    if w.uid != u.name {
                        rejected.push(Rejected::new(
                            u.name,
                            format!("the resource name must be the workload uid {:?}", w.uid),
                        ));
                        continue;
                    }
                    if let Some((ip, owner)) = held.clash(&w) {
                        let reason = format!("address {ip} already belongs to workload {owner}");
                        rejected.push(Rejected::new(u.name, reason));
                        continue;
                    }
                    held.services.remove(&u.name);
                    held.insert_workload(w);
                }
                Ok(AddressResource::Service(s)) => {
                    let key = s.key().to_string();
                    if key != u.name {
                        rejected.push(Rejected::new(
                            u.name,
                            format!(
                                "the resource name must be the service's namespace/hostname {key:?}"
                            ),
                        ));
                        continue;
                    }
                    held.remove_workload(&u.name);
                    held.services.insert(u.name, s);
                }
            }
        }
        held.publish(&self.store);
        rejected
    }

    fn resource_name(&self, body: &xds::pb::google::protobuf::Any) -> Result<String, String> {
        let a = proto::istio::workload::Address::decode(body.value.as_slice())
            .map_err(|e| format!("cannot decode: {e}"))?;
        match AddressResource::try_from(a).map_err(|e| e.to_string())? {
            AddressResource::Workload(w) => Ok(w.uid),
            AddressResource::Service(s) => Ok(s.key().to_string()),
        }
    }
}

struct AuthorizationHandler {
    held: Shared,
    store: Store,
}

impl Handler for AuthorizationHandler {
    fn apply(&mut self, changes: Changes) -> Vec<Rejected> {
        let mut held = lock(&self.held);
        let mut rejected = Vec::new();
        for name in changes.removed {
            held.policies.remove(&name);
        }
        for u in changes.updated {
            let decoded = proto::istio::security::Authorization::decode(u.body.value.as_slice())
                .map_err(|e| format!("cannot decode: {e}"))
                .and_then(|a| Authorization::try_from(a).map_err(|e| e.to_string()));
            match decoded {
                Err(reason) => rejected.push(Rejected::new(u.name, reason)),
                Ok(p) if p.key() != u.name => {
                    let key = p.key();
                    rejected.push(Rejected::new(
                        u.name,
                        format!("the resource name must be the policy's namespace/name {key:?}"),
                    ));
                }
                Ok(p) => {
                    held.policies.insert(u.name, p);
                }
            }
        }
        held.publish(&self.store);
        rejected
    }

    fn resource_name(&self, body: &xds::pb::google::protobuf::Any) -> Result<String, String> {
        let a = proto::istio::security::Authorization::decode(body.value.as_slice())
            .map_err(|e| format!("cannot decode: {e}"))?;
        Ok(format!("{}/{}", a.namespace, a.name))
    }
}

/// The node istiod expects from a node tunnel (spec §4).
///
/// Besides the node id and the pod's name, namespace, IP and node, istiod reads `ISTIO_VERSION` (it logs "Istio
/// Version is not found in metadata … may have undesirable side effects" for every connection without it) and
/// `CLUSTER_ID`. Both are always sent: the Istio version as `ztunnel version` shows it (`ISTIO_META_ISTIO_VERSION`,
/// else "unknown", which istiod reads as the newest release, as when it is absent — never our crate version,
/// which istiod would take for an ancient Istio), the cluster as the tunnel's own `cluster_id` unless
/// `ISTIO_META_CLUSTER_ID` says otherwise.
pub fn node(source: &XdsSource, node_name: &str, cluster_id: &str) -> Node {
    let string = |s: &str| Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    };
    let mut fields: BTreeMap<String, Value> = BTreeMap::new();
    fields.insert(
        "ISTIO_VERSION".into(),
        string(&crate::version::BuildInfo::from_env().istio_version),
    );
    fields.insert("CLUSTER_ID".into(), string(cluster_id));
    for (k, v) in &source.metadata {
        fields.insert(k.clone(), string(v));
    }
    fields.insert("NAME".into(), string(&source.pod_name));
    fields.insert("NAMESPACE".into(), string(&source.pod_namespace));
    fields.insert("INSTANCE_IPS".into(), string(&source.instance_ip));
    fields.insert("NODE_NAME".into(), string(node_name));
    Node {
        id: format!(
            "ztunnel~{}~{}.{}~{}.svc.cluster.local",
            source.instance_ip, source.pod_name, source.pod_namespace, source.pod_namespace
        ),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        user_agent_name: "ztunnel".into(),
        ..Default::default()
    }
}

/// Builds the delta ADS client feeding `store`.
pub fn client(
    source: &XdsSource,
    node_name: &str,
    cluster_id: &str,
    store: &Store,
) -> Result<(AdsClient, ClientHandle), XdsSetupError> {
    let endpoint = xds::client::endpoint(
        &source.address,
        source.root_cert.as_deref(),
        source.alt_hostname.as_deref(),
    )?;
    let mut config = ClientConfig::new(endpoint, node(source, node_name, cluster_id), Mode::Delta);
    config.token_file = source.token_file.clone();
    config.metadata = source.headers.clone();
    config
        .metadata
        .push(("clusterid".into(), cluster_id.to_owned()));
    let held = Shared::default();
    Ok(AdsClient::new(
        config,
        vec![
            TypeSubscription::wildcard(
                type_url::ADDRESS,
                AddressHandler {
                    held: held.clone(),
                    store: store.clone(),
                },
            ),
            TypeSubscription::wildcard(
                type_url::AUTHORIZATION,
                AuthorizationHandler {
                    held,
                    store: store.clone(),
                },
            ),
        ],
    ))
}

/// Waits until both types were ACKed once, then drops `block` (readiness).
pub async fn ready_when_synced(
    handle: ClientHandle,
    block: crate::admin::BlockReady,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut status = handle.status();
    let synced = status.wait_for(|s| {
        s.acked.contains(type_url::ADDRESS) && s.acked.contains(type_url::AUTHORIZATION)
    });
    tokio::select! {
        r = synced => if r.is_ok() {
            tracing::info!(target: "xds", "workloads and policies received; state manager ready");
            drop(block);
        },
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

#[cfg(test)]
mod tests;
