//! The workload store: an immutable, indexed snapshot of workloads, services and policies,
//! replaced as a whole on every update and published on a `watch` channel.
//!
//! Owns the indexes (uid, network/IP, VIP, hostname, endpoints per service) and the lookups
//! the proxies need. Readers take a cheap `Arc` of the current snapshot and never hold a lock
//! across `.await`; writers build a new snapshot. Does not decide anything about traffic
//! (see [`crate::proxy`]) nor parse configuration (see [`crate::local_config`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::model::{Authorization, NamespacedHostname, NetworkAddress, Service, Workload};

/// One consistent view of everything the tunnel knows.
#[derive(Debug, Default)]
pub struct Snapshot {
    workloads: BTreeMap<String, Arc<Workload>>,
    by_ip: HashMap<NetworkAddress, Arc<Workload>>,
    services: BTreeMap<NamespacedHostname, Arc<Service>>,
    by_vip: HashMap<NetworkAddress, Vec<Arc<Service>>>,
    endpoints: HashMap<NamespacedHostname, Vec<Arc<Workload>>>,
    policies: BTreeMap<String, Arc<Authorization>>,
    version: u64,
}

impl Snapshot {
    /// Indexes a full set of resources.
    pub fn build(
        workloads: Vec<Workload>,
        services: Vec<Service>,
        policies: Vec<Authorization>,
        version: u64,
    ) -> Self {
        let mut s = Snapshot {
            version,
            ..Snapshot::default()
        };
        for w in workloads {
            let w = Arc::new(w);
            if w.indexed_by_ip() {
                for ip in &w.workload_ips {
                    s.by_ip
                        .insert(NetworkAddress::new(&w.network, *ip), w.clone());
                }
            }
            for svc in w.services.keys() {
                s.endpoints.entry(svc.clone()).or_default().push(w.clone());
            }
            s.workloads.insert(w.uid.clone(), w);
        }
        for svc in services {
            let svc = Arc::new(svc);
            for vip in &svc.vips {
                s.by_vip.entry(vip.clone()).or_default().push(svc.clone());
            }
            s.services.insert(svc.key(), svc);
        }
        for eps in s.endpoints.values_mut() {
            eps.sort_by(|a, b| a.uid.cmp(&b.uid));
        }
        for p in policies {
            s.policies.insert(p.key(), Arc::new(p));
        }
        s
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn workloads(&self) -> impl Iterator<Item = &Arc<Workload>> {
        self.workloads.values()
    }

    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values()
    }

    pub fn policies(&self) -> &BTreeMap<String, Arc<Authorization>> {
        &self.policies
    }

    pub fn workload(&self, uid: &str) -> Option<&Arc<Workload>> {
        self.workloads.get(uid)
    }

    /// The workload owning `ip` on `network` (host-network workloads are never returned).
    pub fn workload_by_ip(&self, network: &str, ip: IpAddr) -> Option<&Arc<Workload>> {
        self.by_ip.get(&NetworkAddress::new(network, ip))
    }

    /// The workload a ZDS `WorkloadInfo` names (name, namespace, service account).
    pub fn workload_by_info(
        &self,
        name: &str,
        namespace: &str,
        service_account: &str,
    ) -> Option<&Arc<Workload>> {
        self.workloads.values().find(|w| {
            w.name == name && w.namespace == namespace && w.service_account == service_account
        })
    }

    pub fn service(&self, key: &NamespacedHostname) -> Option<&Arc<Service>> {
        self.services.get(key)
    }

    /// Workloads whose `hostname` is `hostname`, ordered by uid (a linear scan: only used on
    /// the rare hostname-named waypoint that is not a Service).
    pub fn workloads_by_hostname<'a>(
        &'a self,
        hostname: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Workload>> {
        self.workloads
            .values()
            .filter(move |w| !w.hostname.is_empty() && w.hostname == hostname)
    }

    /// The Service a VIP names for a client in `client_ns` (spec §3.1 step 3): the client's
    /// namespace first, then `canonical`, then the first by key; `visibility=Namespace`
    /// services are hidden from other namespaces.
    pub fn service_by_vip(
        &self,
        network: &str,
        ip: IpAddr,
        client_ns: &str,
    ) -> Option<&Arc<Service>> {
        use crate::model::service::Visibility;
        let candidates = self.by_vip.get(&NetworkAddress::new(network, ip))?;
        let visible = || {
            candidates
                .iter()
                .filter(|s| s.visibility == Visibility::Public || s.namespace == client_ns)
        };
        visible()
            .find(|s| s.namespace == client_ns)
            .or_else(|| visible().find(|s| s.canonical))
            .or_else(|| visible().min_by(|a, b| a.key().cmp(&b.key())))
    }

    /// A Service by hostname, preferring `preferred_ns`, then `canonical`.
    pub fn service_by_hostname(&self, hostname: &str, preferred_ns: &str) -> Option<&Arc<Service>> {
        let matching = || self.services.values().filter(|s| s.hostname == hostname);
        matching()
            .find(|s| s.namespace == preferred_ns)
            .or_else(|| matching().find(|s| s.canonical))
            .or_else(|| matching().next())
    }

    /// Workloads listing `service` in their `services` (its endpoints), ordered by uid.
    pub fn endpoints(&self, service: &NamespacedHostname) -> &[Arc<Workload>] {
        self.endpoints.get(service).map_or(&[], Vec::as_slice)
    }

    /// Endpoints whose Service is not (yet) known (`stagedServices` in the config dump).
    pub fn staged_endpoints(
        &self,
    ) -> impl Iterator<Item = (&NamespacedHostname, &Vec<Arc<Workload>>)> {
        self.endpoints
            .iter()
            .filter(|(k, _)| !self.services.contains_key(*k))
    }
}

/// The published snapshot. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    tx: Arc<watch::Sender<Arc<Snapshot>>>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(Arc::new(Snapshot::default()));
        Self { tx: Arc::new(tx) }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// Replaces everything; subscribers are woken.
    pub fn replace(
        &self,
        workloads: Vec<Workload>,
        services: Vec<Service>,
        policies: Vec<Authorization>,
    ) {
        let version = self.tx.borrow().version + 1;
        let snap = Snapshot::build(workloads, services, policies, version);
        tracing::info!(
            version,
            workloads = snap.workloads.len(),
            services = snap.services.len(),
            policies = snap.policies.len(),
            "workload state replaced"
        );
        self.tx.send_replace(Arc::new(snap));
    }

    /// Notified on every replacement.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::service::Visibility;

    fn svc(ns: &str, name: &str, vip: &str) -> Service {
        Service {
            name: name.into(),
            namespace: ns.into(),
            hostname: format!("{name}.{ns}.svc.cluster.local"),
            vips: vec![format!("/{vip}").parse().unwrap()],
            ..Service::default()
        }
    }

    #[test]
    fn vip_conflicts_prefer_client_namespace_then_canonical() {
        let mut canonical = svc("b", "x", "10.96.0.1");
        canonical.canonical = true;
        let mut hidden = svc("c", "x", "10.96.0.1");
        hidden.visibility = Visibility::Namespace;
        let s = Snapshot::build(
            vec![],
            vec![svc("a", "x", "10.96.0.1"), canonical, hidden],
            vec![],
            1,
        );
        let ip: IpAddr = "10.96.0.1".parse().unwrap();
        assert_eq!(s.service_by_vip("", ip, "a").unwrap().namespace, "a");
        assert_eq!(s.service_by_vip("", ip, "z").unwrap().namespace, "b");
        assert_eq!(s.service_by_vip("", ip, "c").unwrap().namespace, "c");
        assert!(s.service_by_vip("other-net", ip, "a").is_none());
    }

    #[test]
    fn endpoints_and_staged() {
        let mut w = Workload {
            uid: "u1".into(),
            name: "p".into(),
            namespace: "a".into(),
            workload_ips: vec!["10.0.0.1".parse().unwrap()],
            ..Workload::default()
        };
        w.services.insert(
            NamespacedHostname::new("a", "x.a.svc.cluster.local"),
            [(80, 8080)].into(),
        );
        w.services.insert(
            NamespacedHostname::new("a", "later.a.svc.cluster.local"),
            [(80, 8080)].into(),
        );
        let s = Snapshot::build(vec![w], vec![svc("a", "x", "10.96.0.1")], vec![], 1);
        let key = NamespacedHostname::new("a", "x.a.svc.cluster.local");
        assert_eq!(s.endpoints(&key).len(), 1);
        let staged: Vec<_> = s
            .staged_endpoints()
            .map(|(k, _)| k.hostname.clone())
            .collect();
        assert_eq!(staged, vec!["later.a.svc.cluster.local"]);
        assert!(s.workload_by_ip("", "10.0.0.1".parse().unwrap()).is_some());
    }
}
