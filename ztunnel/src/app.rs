//! Wires the tunnel together: store + config source, certificates, HBONE pool, metrics,
//! in-pod manager + ZDS client, policy re-check, admin/stats/readiness servers, and graceful
//! shutdown. `main.rs` only parses the environment and calls [`run`].

use std::sync::Arc;
use std::time::Duration;

use hbone::cert_manager::{CertManager, CertManagerConfig};
use hbone::client::{ClientConfig, Pool};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::admin::{AdminServer, AdminState, Readiness, ReadinessServer, StatsServer};
use crate::config::{Config, ConfigSource};
use crate::config_dump::ConfigDump;
use crate::inpod::manager::WorkloadManager;
use crate::proxy::dialer::{PodDialer, PodNetnsRegistry};
use crate::proxy::tracker::ConnectionTracker;
use crate::proxy::{InPodProxies, ProxyContext};
use crate::state::Store;
use crate::telemetry::{LogLevelControl, Metrics};

/// Runs until SIGTERM/SIGINT or `/quitquitquit`, then drains within the termination deadline.
pub async fn run(config: Config, logging: LogLevelControl) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let readiness = Readiness::new();
    let block_state = readiness.register("state manager");
    let block_pods = readiness.register("workload proxy manager");

    let store = Store::new();
    let watcher = crate::config_source::start(&config.config_source, &store)?;
    let xds = match &config.config_source {
        ConfigSource::Xds(source) => Some(crate::xds_source::client(
            source,
            &config.node_name,
            &config.cluster_id,
            &store,
        )?),
        _ => None,
    };

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry, env!("CARGO_PKG_VERSION")));
    let registry = Arc::new(registry);

    let certs = CertManager::new(crate::ca::fetcher(&config)?, CertManagerConfig::default());
    let netns = PodNetnsRegistry::default();
    let pool = Pool::new(
        ClientConfig {
            max_streams_per_connection: config.pool_max_streams_per_connection,
            idle_timeout: config.pool_unused_release_timeout,
            ..ClientConfig::default()
        },
        Arc::new(certs.clone()),
        Arc::new(PodDialer {
            registry: netns.clone(),
            mark: config.packet_mark,
        }),
    );
    let tracker = ConnectionTracker::default();
    let ctx = Arc::new(ProxyContext {
        config: config.clone(),
        store: store.clone(),
        pool,
        certs: certs.clone(),
        metrics: metrics.clone(),
        tracker: tracker.clone(),
        netns,
        shutdown: shutdown_rx.clone(),
    });
    let manager = WorkloadManager::new(InPodProxies::new(ctx.clone()));
    let dump = Arc::new(ConfigDump {
        config: config.clone(),
        store: store.clone(),
        certs: certs.clone(),
        manager: manager.clone(),
        static_config: match &config.config_source {
            ConfigSource::File(p) => Some(p.display().to_string()),
            ConfigSource::Inline(_) => Some("LOCAL_XDS".to_owned()),
            ConfigSource::Xds(_) => None,
        },
    });

    let admin = AdminServer::bind(
        config.admin_addr,
        AdminState {
            config_dump: dump,
            log_control: logging,
            quit: shutdown_tx.clone(),
        },
    )
    .await?;
    let stats = StatsServer::bind(config.stats_addr, registry).await?;
    let ready = ReadinessServer::bind(config.readiness_addr, readiness.clone()).await?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(admin.run(shutdown_rx.clone()));
    tasks.spawn(stats.run(shutdown_rx.clone()));
    tasks.spawn(ready.run(shutdown_rx.clone()));
    if let Some(w) = watcher {
        tasks.spawn(w.run(shutdown_rx.clone()));
    }
    match xds {
        Some((client, handle)) => {
            tasks.spawn(client.run(shutdown_rx.clone()));
            tasks.spawn(crate::xds_source::ready_when_synced(
                handle,
                block_state,
                shutdown_rx.clone(),
            ));
        }
        None => drop(block_state),
    }
    tasks.spawn(tracker.run(store.subscribe()));
    tasks.spawn(crate::inpod::zds::run(
        config.inpod_uds.clone(),
        manager.clone(),
        shutdown_rx.clone(),
    ));
    tasks.spawn(manager_metrics(
        manager.clone(),
        metrics.clone(),
        block_pods,
        shutdown_rx.clone(),
    ));
    tracing::info!(
        node = config.node_name,
        admin = %config.admin_addr,
        stats = %config.stats_addr,
        readiness = %config.readiness_addr,
        zds = %config.inpod_uds.display(),
        "ztunnel started"
    );

    let mut quit = shutdown_rx.clone();
    tokio::select! {
        () = terminate_signal() => tracing::info!("signal received; draining"),
        _ = quit.wait_for(|q| *q) => tracing::info!("/quitquitquit; draining"),
    }
    shutdown_tx.send_replace(true);
    let drain = async {
        manager.stop_all().await;
        while tasks.join_next().await.is_some() {}
    };
    let budget = config.termination_deadline + Duration::from_secs(1);
    if tokio::time::timeout(budget, drain).await.is_err() {
        tracing::warn!("termination deadline passed; exiting with connections still open");
    }
    tracing::info!("ztunnel stopped");
    Ok(())
}

/// Mirrors the manager's counts into the in-pod metrics, and readiness: ready once the first
/// ZDS snapshot arrived and no pod is pending.
async fn manager_metrics(
    manager: Arc<WorkloadManager>,
    metrics: Arc<Metrics>,
    block: crate::admin::BlockReady,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut block = Some(block);
    let mut last = crate::inpod::manager::ManagerCounts::default();
    loop {
        let c = manager.counts();
        metrics.active_proxies.set(c.active as i64);
        metrics.pending_proxies.set(c.pending as i64);
        metrics
            .proxies_started
            .inc_by(c.started_total - last.started_total);
        metrics
            .proxies_stopped
            .inc_by(c.stopped_total - last.stopped_total);
        last = c;
        if manager.snapshot_received() && c.pending == 0 {
            block.take();
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
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
