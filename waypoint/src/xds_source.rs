//! Envoy xDS → [`Store`]: one delta ADS stream to the control plane, wildcard listeners and
//! clusters, and the route configurations and cluster load assignments they name (subscriptions
//! follow the listeners and clusters held). Each resource is converted by `model::from_proto`
//! at the boundary; one that fails is NACKed by name and its last good version kept.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message;
use xds::client::{
    AdsClient, Changes, ClientConfig, ClientHandle, Handler, Mode, Names, Rejected,
    TypeSubscription,
};
use xds::pb::envoy::config::core::v3::Node;
use xds::pb::google::protobuf::{Struct, Value, value::Kind as ValueKind};
use xds::type_url;

use crate::config::Config;
use crate::model::{self, ListenerKind, from_proto};
use crate::state::Store;

pub use xds::client::EndpointError as XdsSetupError;

#[derive(Default)]
struct Held {
    config: model::Config,
    handle: Option<ClientHandle>,
    routes: BTreeSet<String>,
    endpoints: BTreeSet<String>,
}

type Shared = Arc<Mutex<Held>>;

fn lock(s: &Shared) -> MutexGuard<'_, Held> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl Held {
    /// Publishes the config and follows the listeners' routes and the clusters' endpoints.
    fn publish(&mut self, store: &Store) {
        store.publish(self.config.clone());
        let routes: BTreeSet<String> = self
            .config
            .listeners
            .values()
            .filter_map(|l| match &l.kind {
                ListenerKind::Http { route_config, .. } => Some(route_config.clone()),
                ListenerKind::Tcp { .. } => None,
            })
            .collect();
        let endpoints: BTreeSet<String> = self.config.clusters.keys().cloned().collect();
        if let Some(h) = &self.handle {
            if routes != self.routes {
                h.subscribe(type_url::ROUTE, Names::Named(routes.clone()));
            }
            if endpoints != self.endpoints {
                h.subscribe(type_url::ENDPOINT, Names::Named(endpoints.clone()));
            }
        }
        self.routes = routes;
        self.endpoints = endpoints;
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Listener,
    Route,
    Cluster,
    Endpoint,
}

struct TypeHandler {
    kind: Kind,
    held: Shared,
    store: Store,
}

fn decode<M: Message + Default>(body: &xds::pb::google::protobuf::Any) -> Result<M, String> {
    M::decode(body.value.as_slice()).map_err(|e| format!("cannot decode: {e}"))
}

impl TypeHandler {
    fn apply_one(
        &self,
        held: &mut Held,
        name: &str,
        body: &xds::pb::google::protobuf::Any,
    ) -> Result<(), String> {
        let c = &mut held.config;
        let named = |actual: &str| {
            if actual == name {
                Ok(())
            } else {
                Err(format!("the resource is named {actual:?}"))
            }
        };
        match self.kind {
            Kind::Listener => {
                let l: xds::pb::envoy::config::listener::v3::Listener = decode(body)?;
                named(&l.name)?;
                let l = from_proto::listener(&l).map_err(|e| e.to_string())?;
                keep(&mut c.listeners, name, l);
            }
            Kind::Route => {
                let r: xds::pb::envoy::config::route::v3::RouteConfiguration = decode(body)?;
                named(&r.name)?;
                let r = from_proto::route_table(&r).map_err(|e| e.to_string())?;
                keep(&mut c.routes, name, r);
            }
            Kind::Cluster => {
                let cl: xds::pb::envoy::config::cluster::v3::Cluster = decode(body)?;
                named(&cl.name)?;
                let cl = from_proto::cluster(&cl).map_err(|e| e.to_string())?;
                keep(&mut c.clusters, name, cl);
            }
            Kind::Endpoint => {
                let a: xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment = decode(body)?;
                named(&a.cluster_name)?;
                let e = from_proto::endpoints(&a).map_err(|e| e.to_string())?;
                keep(&mut c.endpoints, name, e);
            }
        }
        Ok(())
    }

    fn remove(&self, held: &mut Held, name: &str) {
        let c = &mut held.config;
        match self.kind {
            Kind::Listener => {
                c.listeners.remove(name);
            }
            Kind::Route => {
                c.routes.remove(name);
            }
            Kind::Cluster => {
                c.clusters.remove(name);
                c.endpoints.remove(name);
            }
            Kind::Endpoint => {
                c.endpoints.remove(name);
            }
        }
    }
}

impl Handler for TypeHandler {
    fn apply(&mut self, changes: Changes) -> Vec<Rejected> {
        let mut held = lock(&self.held);
        for name in &changes.removed {
            self.remove(&mut held, name);
        }
        let mut rejected = Vec::new();
        for u in &changes.updated {
            if let Err(reason) = self.apply_one(&mut held, &u.name, &u.body) {
                tracing::warn!(kind = ?self.kind, name = %u.name, %reason, "xDS resource rejected");
                rejected.push(Rejected::new(u.name.clone(), reason));
            }
        }
        held.publish(&self.store);
        rejected
    }
}

/// The node a waypoint presents (istiod's `waypoint~…` id, with Istio's metadata keys).
pub fn node(config: &Config) -> Node {
    let string = |s: &str| Value {
        kind: Some(ValueKind::StringValue(s.to_owned())),
    };
    let fields = [
        ("NAME", config.pod_name.as_str()),
        ("NAMESPACE", config.pod_namespace.as_str()),
        ("INSTANCE_IPS", &config.instance_ip.to_string()),
        ("WAYPOINT_NAME", config.gateway_name.as_str()),
        ("WAYPOINT_NAMESPACE", config.pod_namespace.as_str()),
        ("SERVICE_ACCOUNT", config.service_account.as_str()),
        ("CLUSTER_ID", config.cluster_id.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), string(v)))
    .collect();
    Node {
        id: config.node_id(),
        cluster: format!("{}.{}", config.gateway_name, config.pod_namespace),
        metadata: Some(Struct { fields }),
        user_agent_name: "waypoint".into(),
        ..Node::default()
    }
}

/// Builds the ADS client feeding `store`.
pub fn client(config: &Config, store: &Store) -> Result<(AdsClient, ClientHandle), XdsSetupError> {
    let endpoint = xds::client::endpoint(
        &config.xds_address,
        config.xds_root_cert.as_deref(),
        config.xds_alt_hostname.as_deref(),
    )?;
    let held: Shared = Arc::default();
    let handler = |kind| TypeHandler {
        kind,
        held: held.clone(),
        store: store.clone(),
    };
    let mut cfg = ClientConfig::new(endpoint, node(config), Mode::Delta);
    cfg.token_file = config.token_file.clone();
    cfg.metadata = vec![("clusterid".into(), config.cluster_id.clone())];
    let (client, handle) = AdsClient::new(
        cfg,
        vec![
            TypeSubscription::wildcard(type_url::CLUSTER, handler(Kind::Cluster)),
            TypeSubscription::named(type_url::ENDPOINT, BTreeSet::new(), handler(Kind::Endpoint)),
            TypeSubscription::wildcard(type_url::LISTENER, handler(Kind::Listener)),
            TypeSubscription::named(type_url::ROUTE, BTreeSet::new(), handler(Kind::Route)),
        ],
    );
    lock(&held).handle = Some(handle.clone());
    Ok((client, handle))
}

/// Stores `new` under `name` unless an equal value is held: a re-sent, unchanged resource keeps
/// its `Arc`, so what hangs off it survives (token-bucket levels, a cluster's balancer and
/// counters), as Envoy skips identical updates.
fn keep<T: PartialEq>(map: &mut std::collections::BTreeMap<String, Arc<T>>, name: &str, new: T) {
    if map.get(name).is_some_and(|old| **old == new) {
        return;
    }
    map.insert(name.to_owned(), Arc::new(new));
}
