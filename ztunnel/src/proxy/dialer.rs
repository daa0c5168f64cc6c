//! Dialling HBONE from inside the source pod's netns (spec §2.4 "Dial origin"): the pool key's
//! source IP names the pod, whose netns was registered when its proxies started.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use hbone::ca::BoxFuture;
use hbone::client::{Dialer, PoolKey};
use tokio::net::TcpStream;

use crate::inpod::netns::Netns;
use crate::inpod::socket;

/// Pod IP → its netns, shared by the pool's dialer and the pod proxies.
#[derive(Clone, Default)]
pub struct PodNetnsRegistry {
    by_ip: Arc<RwLock<HashMap<IpAddr, Netns>>>,
}

impl PodNetnsRegistry {
    pub fn insert(&self, ip: IpAddr, netns: Netns) {
        self.by_ip
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ip, netns);
    }

    /// Removes `ip` only if it still maps to `netns` (a replaced pod may have re-registered).
    pub fn remove(&self, ip: IpAddr, netns: &Netns) {
        let mut map = self.by_ip.write().unwrap_or_else(|e| e.into_inner());
        if map.get(&ip) == Some(netns) {
            map.remove(&ip);
        }
    }

    pub fn get(&self, ip: IpAddr) -> Option<Netns> {
        self.by_ip
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .cloned()
    }
}

/// The pool's dialer: connect from the source pod's netns with the tunnel's mark.
pub struct PodDialer {
    pub registry: PodNetnsRegistry,
    pub mark: u32,
}

impl Dialer for PodDialer {
    fn dial<'a>(&'a self, key: &'a PoolKey) -> BoxFuture<'a, std::io::Result<TcpStream>> {
        Box::pin(async move {
            let src = key
                .src_ip()
                .ok_or_else(|| std::io::Error::other("HBONE dial without a source pod IP"))?;
            let netns = self.registry.get(src).ok_or_else(|| {
                std::io::Error::other(format!("no pod netns registered for source {src}"))
            })?;
            socket::connect(&netns, key.dst(), None::<SocketAddr>, self.mark).await
        })
    }
}
