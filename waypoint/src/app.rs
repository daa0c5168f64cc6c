//! Wires the waypoint together: xDS → store, certificates, the HBONE server on 15008, plain
//! listeners (optional), admin/stats/readiness, and drain on SIGTERM or `/quitquitquit`.

use std::sync::Arc;
use std::time::Duration;

use hbone::cert_manager::{CertManager, CertManagerConfig};
use hbone::client::{ClientConfig, Pool, TcpDialer};
use hbone::server::{Server, ServerConfig};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use xds::type_url;

use crate::admin::{self, AdminState, Role};
use crate::config::Config;
use crate::config_dump;
use crate::inbound::Inbound;
use crate::pipeline::Proxy;
use crate::state::Store;
use crate::telemetry::Metrics;
use crate::upstream::Upstream;

/// Runs until SIGTERM/SIGINT or `/quitquitquit`, then drains.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let identity = config.identity()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let store = Store::new();
    let (xds, handle) = crate::xds_source::client(&config, &store)?;
    let certs = CertManager::new(crate::ca::fetcher(&config)?, CertManagerConfig::default());
    certs.prefetch(&identity);
    let pool = Pool::new(
        ClientConfig::default(),
        Arc::new(certs.clone()),
        Arc::new(TcpDialer),
    );
    let upstream = Upstream::new(pool, identity.clone());
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let proxy = Arc::new(Proxy {
        store: store.clone(),
        upstream: upstream.clone(),
        metrics,
    });

    let (ready_tx, ready_rx) = watch::channel(false);
    let admin_state = Arc::new(AdminState {
        registry,
        dump: config_dump::Sources {
            config: config.clone(),
            store: store.clone(),
            certs: certs.clone(),
            xds: Some(handle.status()),
            upstream,
        },
        ready: ready_rx,
        quit: shutdown_tx.clone(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (addr, role) in [
        (config.admin_addr, Role::Admin),
        (config.stats_addr, Role::Stats),
        (config.readiness_addr, Role::Readiness),
    ] {
        let serve = admin::bind(addr, role, admin_state.clone(), shutdown_rx.clone())
            .await
            .map_err(|e| anyhow::anyhow!("binding {role:?} on {addr}: {e}"))?;
        tasks.spawn(serve);
    }
    if let Some(addr) = config.hbone_addr {
        let server = Server::bind(
            addr,
            ServerConfig::default(),
            Arc::new(certs.server_certificates(identity.clone())),
            Arc::new(Inbound {
                proxy: proxy.clone(),
                shutdown: shutdown_rx.clone(),
            }),
        )
        .await?;
        tasks.spawn(server.run(shutdown_rx.clone()));
    }
    if config.plain_listeners {
        tasks.spawn(crate::plain::run(proxy.clone(), shutdown_rx.clone()));
    }
    tasks.spawn(xds.run(shutdown_rx.clone()));
    tasks.spawn(readiness(
        handle.status(),
        certs.clone(),
        identity.clone(),
        ready_tx,
        shutdown_rx.clone(),
    ));
    tracing::info!(
        node = %config.node_id(),
        identity = %identity,
        hbone = ?config.hbone_addr,
        admin = %config.admin_addr,
        xds = %config.xds_address,
        "waypoint started"
    );

    let mut quit = shutdown_rx.clone();
    tokio::select! {
        () = terminate_signal() => tracing::info!("signal received; draining"),
        () = crate::io::stopped(&mut quit) => tracing::info!("/quitquitquit; draining"),
    }
    shutdown_tx.send_replace(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(config.drain + Duration::from_secs(1), drain)
        .await
        .is_err()
    {
        tracing::warn!("drain deadline passed; exiting with connections still open");
    }
    tracing::info!("waypoint stopped");
    Ok(())
}

/// Ready once listeners and clusters were ACKed and our certificate is available.
async fn readiness(
    mut xds: watch::Receiver<xds::client::ClientStatus>,
    certs: CertManager,
    identity: hbone::Identity,
    ready: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let synced = {
            let s = xds.borrow_and_update();
            s.acked.contains(type_url::LISTENER) && s.acked.contains(type_url::CLUSTER)
        };
        let cert = certs
            .dump()
            .iter()
            .any(|(id, _, c)| *id == identity && c.is_some());
        if ready.send_replace(synced && cert) != (synced && cert) {
            tracing::info!(ready = synced && cert, synced, cert, "readiness changed");
        }
        tokio::select! {
            _ = xds.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = crate::io::stopped(&mut shutdown) => return,
        }
    }
}

async fn terminate_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
