//! `PLAIN_LISTENERS=true`: each LDS listener is also served on its own socket address in plain
//! HTTP (as Envoy binds them), following listener additions and removals. The destination of
//! such a connection is the listener's address, so virtual hosts are chosen by Host.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::downstream;
use crate::pipeline::{Downstream, Proxy};

async fn accept_loop(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    addr: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(%addr, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let down = Arc::new(Downstream {
            peer_identity: None,
            remote: peer,
            destination: addr,
            baggage: None,
            mtls: false,
        });
        tokio::spawn(downstream::serve(
            proxy.clone(),
            down,
            tcp,
            shutdown.clone(),
        ));
    }
}

/// Keeps one socket per listener address until `shutdown`.
pub async fn run(proxy: Arc<Proxy>, mut shutdown: watch::Receiver<bool>) {
    let mut states = proxy.store.subscribe();
    let mut bound: HashMap<SocketAddr, JoinHandle<()>> = HashMap::new();
    loop {
        let wanted: Vec<SocketAddr> = states
            .borrow_and_update()
            .config
            .listeners
            .values()
            .map(|l| l.address)
            .collect();
        bound.retain(|addr, task| {
            let keep = wanted.contains(addr);
            if !keep {
                tracing::info!(%addr, "plain listener removed");
                task.abort();
            }
            keep
        });
        for addr in wanted {
            if bound.contains_key(&addr) {
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(%addr, "plain listener bound");
                    let task = tokio::spawn(accept_loop(proxy.clone(), l, addr, shutdown.clone()));
                    bound.insert(addr, task);
                }
                Err(e) => tracing::warn!(%addr, error = %e, "cannot bind plain listener"),
            }
        }
        tokio::select! {
            r = states.changed() => if r.is_err() { break },
            () = crate::io::stopped(&mut shutdown) => break,
        }
    }
    for (_, task) in bound {
        task.abort();
    }
}
