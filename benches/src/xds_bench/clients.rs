//! K node-tunnel-like delta ADS clients (`xds::client`), each subscribed to every
//! `istio.workload.Address` and `istio.security.Authorization` like ztunnel does. Each handler
//! does the per-resource work of ztunnel's boundary — prost decode, then the domain conversion
//! (`AddressResource::try_from`, `Authorization::try_from`) — and keeps only a count, not
//! ztunnel's store, so the clients cost what the protocol and the decode cost.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinSet;
use xds::client::{
    AdsClient, Changes, ClientConfig, ClientHandle, ClientStatus, Handler, Mode, Rejected,
    TypeSubscription,
};
use xds::pb::envoy::config::core::v3::Node;
use xds::type_url;
use ztunnel::model::Authorization;
use ztunnel::model::from_proto::AddressResource;

/// Decodes and converts Addresses; counts what it holds.
struct AddressHandler;

impl Handler for AddressHandler {
    fn apply(&mut self, changes: Changes) -> Vec<Rejected> {
        let mut rejected = Vec::new();
        for u in changes.updated {
            let converted = proto::istio::workload::Address::decode(u.body.value.as_slice())
                .map_err(|e| e.to_string())
                .and_then(|a| AddressResource::try_from(a).map_err(|e| e.to_string()));
            if let Err(reason) = converted {
                rejected.push(Rejected::new(u.name, reason));
            }
        }
        rejected
    }
}

struct AuthorizationHandler;

impl Handler for AuthorizationHandler {
    fn apply(&mut self, changes: Changes) -> Vec<Rejected> {
        let mut rejected = Vec::new();
        for u in changes.updated {
            let converted = proto::istio::security::Authorization::decode(u.body.value.as_slice())
                .map_err(|e| e.to_string())
                .and_then(|a| Authorization::try_from(a).map_err(|e| e.to_string()));
            if let Err(reason) = converted {
                rejected.push(Rejected::new(u.name, reason));
            }
        }
        rejected
    }
}

/// A node tunnel's node id; `i` makes it distinct (pod IP 10.255.x.y).
pub(crate) fn node_id(i: usize) -> String {
    let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 255, 0, 1)) + i as u32);
    format!("ztunnel~{ip}~ztunnel-{i}.istio-system~istio-system.svc.cluster.local")
}

pub(crate) fn endpoint(addr: SocketAddr) -> Result<tonic::transport::Endpoint> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5)),
    )
}

/// K running clients; dropped or [`Fleet::stop`]ped, they disconnect.
pub(crate) struct Fleet {
    handles: Vec<ClientHandle>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Fleet {
    /// Starts `k` clients against `addr`, with node ids `offset..offset + k`.
    pub(crate) fn start(addr: SocketAddr, k: usize, offset: usize) -> Result<Fleet> {
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut handles = Vec::with_capacity(k);
        for i in offset..offset + k {
            let node = Node {
                id: node_id(i),
                user_agent_name: "xds-bench".into(),
                ..Default::default()
            };
            let mut config = ClientConfig::new(endpoint(addr)?, node, Mode::Delta);
            config.max_backoff = Duration::from_secs(1);
            let (client, handle) = AdsClient::new(
                config,
                vec![
                    TypeSubscription::wildcard(type_url::ADDRESS, AddressHandler),
                    TypeSubscription::wildcard(type_url::AUTHORIZATION, AuthorizationHandler),
                ],
            );
            tasks.spawn(client.run(rx.clone()));
            handles.push(handle);
        }
        Ok(Fleet {
            handles,
            shutdown,
            tasks,
        })
    }

    /// Waits (at most `limit`) until every client has ACKed both types once; returns when the
    /// last one did.
    pub(crate) async fn synced(&self, limit: Duration) -> Result<Instant> {
        let deadline = tokio::time::Instant::now() + limit;
        for (i, h) in self.handles.iter().enumerate() {
            let mut status = h.status();
            let done = |s: &ClientStatus| {
                s.acked.contains(type_url::ADDRESS) && s.acked.contains(type_url::AUTHORIZATION)
            };
            let waited = tokio::time::timeout_at(deadline, status.wait_for(done)).await;
            if waited.is_err() {
                let s = h.status().borrow().clone();
                bail!(
                    "client {i} not synced within {limit:?}: connected {}, acked {:?}, last error {:?}, NACKs {:?}",
                    s.connected,
                    s.acked,
                    s.last_error,
                    s.last_nack
                );
            }
        }
        Ok(Instant::now())
    }

    /// Waits (at most `limit`) until every client holds `addresses` Addresses and `policies`
    /// Authorizations, and fails if one NACKed.
    pub(crate) async fn holding(
        &self,
        addresses: usize,
        policies: usize,
        limit: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        let count = |s: &ClientStatus, t: &str| s.held.get(t).copied().unwrap_or(0);
        for (i, h) in self.handles.iter().enumerate() {
            let mut status = h.status();
            let done = |s: &ClientStatus| {
                !s.last_nack.is_empty()
                    || (count(s, type_url::ADDRESS) == addresses
                        && count(s, type_url::AUTHORIZATION) == policies)
            };
            let waited = tokio::time::timeout_at(deadline, status.wait_for(done)).await;
            let s = h.status().borrow().clone();
            if waited.is_err() || !s.last_nack.is_empty() {
                bail!(
                    "client {i} holds {} of {addresses} addresses and {} of {policies} policies, NACKs {:?}",
                    count(&s, type_url::ADDRESS),
                    count(&s, type_url::AUTHORIZATION),
                    s.last_nack
                );
            }
        }
        Ok(())
    }

    /// Resources client `i` holds of `type_url`, and its NACKs so far.
    pub(crate) fn held(&self, i: usize, type_url: &str) -> Result<(usize, usize)> {
        let h = self.handles.get(i).context("no such client")?;
        let s = h.status().borrow().clone();
        Ok((
            s.held.get(type_url).copied().unwrap_or(0),
            s.last_nack.len(),
        ))
    }

    /// Disconnects every client (bounded: tasks still running after 10 s are aborted).
    pub(crate) async fn stop(mut self) {
        self.shutdown.send_replace(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
    }
}
