//! `control-plane serve`: one gRPC port with the ADS server and the Istio CA, a manifest
//! directory watcher feeding the ADS server, and the admin endpoints.
//!
//! Plaintext gRPC is allowed only on a loopback address; any other address needs `--tls`, which
//! serves with a certificate under the mesh root (written to `<ca-dir>/root-cert.pem` for clients).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::source::MeshSource;
use crate::translate::Options;
use crate::watcher::Status;

/// Settings of `control-plane serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Directory of Kubernetes-style manifests (YAML/JSON), watched for changes.
    #[arg(long, env = "CONTROL_PLANE_MANIFESTS")]
    pub manifests: PathBuf,
    /// gRPC address for xDS and the CA.
    #[arg(long, env = "CONTROL_PLANE_LISTEN", default_value = "127.0.0.1:15010")]
    pub listen: SocketAddr,
    /// Admin HTTP address (`/metrics`, `/debug/adsz`, `/debug/status`, `/ready`).
    #[arg(long, env = "CONTROL_PLANE_ADMIN", default_value = "127.0.0.1:15014")]
    pub admin: SocketAddr,
    /// Serve gRPC over TLS with a certificate under the mesh root (required off loopback).
    #[arg(long, env = "CONTROL_PLANE_TLS")]
    pub tls: bool,
    /// Extra DNS names for the serving certificate.
    #[arg(long = "tls-dns-name", default_values_t = ["istiod.istio-system.svc".to_string()])]
    pub tls_dns_names: Vec<String>,
    /// Where the CA root lives (created on first start, reused later).
    #[arg(long, env = "CONTROL_PLANE_CA_DIR")]
    pub ca_dir: PathBuf,
    /// JSON `{"<token>": "<node>" | {"serviceAccount": "<ns>/<sa>"}}`: who may ask the CA for
    /// certificates, as a node's tunnel or as one workload identity (see `ca::TokenSubject`).
    #[arg(long, env = "CONTROL_PLANE_CA_TOKENS")]
    pub ca_tokens: Option<PathBuf>,
    #[arg(long, env = "TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
    #[arg(long, env = "CLUSTER_ID", default_value = "Kubernetes")]
    pub cluster_id: String,
}

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "--listen {0}: plaintext gRPC is only allowed on a loopback address; pass --tls to serve on {0}"
    )]
    PlaintextOffLoopback(SocketAddr),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ca(#[from] crate::ca::CaSetupError),
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

fn loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// A running control plane's parts, for `run` and for tests and benchmarks.
pub struct ControlPlane {
    pub ads: xds::server::AdsServer,
    pub source: Arc<MeshSource>,
    pub status: watch::Receiver<Status>,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
}

/// Starts everything and serves until `shutdown` becomes true.
pub async fn run(args: ServeArgs, shutdown: watch::Receiver<bool>) -> Result<(), ServeError> {
    let (cp, task) = start(args, shutdown).await?;
    tracing::info!(grpc = %cp.grpc_addr, admin = %cp.admin_addr, "control plane serving");
    task.await;
    Ok(())
}

/// Binds and spawns; the returned future ends when the gRPC server stops.
pub async fn start(
    args: ServeArgs,
    shutdown: watch::Receiver<bool>,
) -> Result<(ControlPlane, impl Future<Output = ()>), ServeError> {
    if !args.tls && !loopback(args.listen.ip()) {
        return Err(ServeError::PlaintextOffLoopback(args.listen));
    }
    let root = crate::ca::load_or_create_root(&args.ca_dir, &args.trust_domain)?;
    let pods = crate::ca::PodsOnNodes::default();
    let ca = crate::ca::service(
        &root,
        args.ca_tokens.clone(),
        &args.trust_domain,
        pods.clone(),
    )?;

    let source = Arc::new(MeshSource::default());
    let ads = xds::server::AdsServer::new(source.clone());
    let mut registry = Registry::default();
    ads.register_metrics(&mut registry);
    let (status_tx, status_rx) = watch::channel(Status::default());

    let grpc = TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: args.listen,
            source,
        })?;
    let grpc_addr = grpc.local_addr().map_err(|source| ServeError::Bind {
        addr: args.listen,
        source,
    })?;
    let admin = TcpListener::bind(args.admin)
        .await
        .map_err(|source| ServeError::Bind {
            addr: args.admin,
            source,
        })?;
    let admin_addr = admin.local_addr().map_err(|source| ServeError::Bind {
        addr: args.admin,
        source,
    })?;

    let options = Options {
        trust_domain: args.trust_domain.clone(),
        cluster_id: args.cluster_id.clone(),
        ..Options::default()
    };
    tokio::spawn(crate::watcher::run(
        args.manifests.clone(),
        options,
        source.clone(),
        pods,
        status_tx,
        shutdown.clone(),
    ));
    tokio::spawn(crate::admin::serve(
        admin,
        Arc::new(crate::admin::AdminState {
            ads: ads.clone(),
            registry,
            status: status_rx.clone(),
        }),
        shutdown.clone(),
    ));

    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)));
    if args.tls {
        let (cert, key) =
            crate::ca::serving_certificate(&root, &args.tls_dns_names, &[grpc_addr.ip()])?;
        builder = builder.tls_config(
            tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(cert, key)),
        )?;
    }
    let router = builder.add_service(ads.service()).add_service(ca);
    let mut stop = shutdown.clone();
    let task = async move {
        let result = router
            .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    };
    Ok((
        ControlPlane {
            ads,
            source,
            status: status_rx,
            grpc_addr,
            admin_addr,
        },
        task,
    ))
}
