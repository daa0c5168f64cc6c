//! `control-plane serve`: one gRPC port with the ADS server and the Istio CA, a source of the
//! cluster's objects feeding the ADS server — the Kubernetes API server (`--kubeconfig`, or the
//! in-cluster configuration when run in a pod without `--manifests`) or a manifest directory
//! (`--manifests`, the local mesh) — and the admin endpoints.
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
    /// Directory of Kubernetes-style manifests (YAML/JSON), watched for changes, instead of an API server.
    #[arg(long, env = "CONTROL_PLANE_MANIFESTS", conflicts_with = "kubeconfig")]
    pub manifests: Option<PathBuf>,
    /// Read the cluster from the API server of this kubeconfig. Without it and without --manifests, the
    /// in-cluster configuration of the pod the control plane runs in.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// This replica's name: its identity in the leader Lease and the Events it writes (`POD_NAME`;
    /// default: host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// The control plane's namespace, where the leader Lease lives (`POD_NAMESPACE`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "istio-system")]
    pub namespace: String,
    /// How long a leader's Lease lasts without renewal before another replica takes over.
    #[arg(long, env = "LEADER_LEASE_DURATION", default_value = "15s", value_parser = parse_lease)]
    pub lease_duration: std::time::Duration,
    /// Image of the waypoint Deployments made for `istio-waypoint` Gateways.
    #[arg(
        long,
        env = "WAYPOINT_IMAGE",
        default_value = "localhost/mesh/waypoint:dev"
    )]
    pub waypoint_image: String,
    /// xDS/CA address the waypoint pods use.
    #[arg(
        long,
        env = "WAYPOINT_XDS_ADDRESS",
        default_value = "https://control-plane.istio-system.svc:15012"
    )]
    pub waypoint_xds_address: String,
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
    /// On a Kubernetes source, when --ca-dir holds no root: the Secret in --namespace that every replica
    /// shares the root through (istiod's is `istio-ca-secret`), made by the first one.
    #[arg(long, env = "CA_ROOT_SECRET")]
    pub ca_root_secret: Option<String>,
    /// JSON `{"<token>": "<node>" | {"serviceAccount": "<ns>/<sa>"}}`: who may ask the CA for
    /// certificates, as a node's tunnel or as one workload identity (see `ca::TokenSubject`).
    /// Without it, on a Kubernetes source, callers present service-account tokens that the API
    /// server reviews (TokenReview).
    #[arg(long, env = "CONTROL_PLANE_CA_TOKENS")]
    pub ca_tokens: Option<PathBuf>,
    /// Audiences a caller's service-account token may be for (istiod's `TOKEN_AUDIENCES`).
    #[arg(long, env = "TOKEN_AUDIENCES", value_delimiter = ',', default_value = crate::ca::DEFAULT_AUDIENCE)]
    pub token_audiences: Vec<String>,
    /// Longest workload certificate the CA issues; longer requests get this (istiod's
    /// `MAX_WORKLOAD_CERT_TTL`).
    #[arg(long, env = "MAX_WORKLOAD_CERT_TTL", default_value = "2160h", value_parser = crate::ca::parse_max_workload_cert_ttl)]
    pub max_workload_cert_ttl: std::time::Duration,
    #[arg(long, env = "TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
    #[arg(long, env = "CLUSTER_ID", default_value = "Kubernetes")]
    pub cluster_id: String,
}

fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let d = crate::manifest::parse_duration(text)?;
    if d < std::time::Duration::from_secs(3) {
        return Err(format!("{text:?} is under 3s"));
    }
    Ok(d)
}

/// This process's default identity: `<host name>-<pid>`.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

impl ServeArgs {
    /// Serving `manifests` on ephemeral loopback ports, plaintext, with the CA in `ca_dir` and no tokens:
    /// what tests and benchmarks start in-process.
    pub fn local(manifests: PathBuf, ca_dir: PathBuf) -> Self {
        ServeArgs {
            manifests: Some(manifests),
            kubeconfig: None,
            pod_name: None,
            namespace: "istio-system".into(),
            lease_duration: std::time::Duration::from_secs(15),
            waypoint_image: "localhost/mesh/waypoint:dev".into(),
            waypoint_xds_address: "https://control-plane.istio-system.svc:15012".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            tls_dns_names: vec![],
            ca_dir,
            ca_root_secret: None,
            ca_tokens: None,
            token_audiences: vec![crate::ca::DEFAULT_AUDIENCE.into()],
            max_workload_cert_ttl: crate::ca::DEFAULT_MAX_WORKLOAD_CERT_TTL,
            trust_domain: "cluster.local".into(),
            cluster_id: "Kubernetes".into(),
        }
    }
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
    #[error(transparent)]
    Kubernetes(#[from] crate::kube_source::ClientError),
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
    let kube = match &args.manifests {
        Some(_) => None,
        None => Some(crate::kube_source::client(args.kubeconfig.as_deref()).await?),
    };
    // A root in --ca-dir wins (the chart's ca.existingSecret); replicas on a cluster share one through the
    // --ca-root-secret Secret; otherwise (the local mesh) the root is made and kept in --ca-dir.
    let root = match (
        crate::ca::load_root(&args.ca_dir)?,
        &kube,
        &args.ca_root_secret,
    ) {
        (Some(root), _, _) => root,
        (None, Some(client), Some(secret)) => {
            crate::ca::root_secret::load_or_create(client, &args.namespace, secret, || {
                crate::ca::new_root(&args.trust_domain)
            })
            .await?
        }
        _ => crate::ca::load_or_create_root(&args.ca_dir, &args.trust_domain)?,
    };
    let pods = crate::ca::PodsOnNodes::default();
    // Static tokens when given (the local mesh, also on an API server); otherwise, on a cluster, the
    // callers' service-account tokens, reviewed by the API server (istiod's way).
    let auth = match (&args.ca_tokens, &kube) {
        (None, Some(client)) => crate::ca::CaAuth::Kubernetes {
            client: client.clone(),
            audiences: args.token_audiences.clone(),
        },
        (tokens, _) => crate::ca::CaAuth::Tokens(tokens.clone()),
    };
    let ca = crate::ca::service_with(
        &root,
        crate::ca::CaSettings {
            auth,
            trust_domain: args.trust_domain.clone(),
            max_workload_cert_ttl: args.max_workload_cert_ttl,
        },
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
    match (&args.manifests, kube) {
        (Some(dir), _) => {
            tokio::spawn(crate::watcher::run(
                dir.clone(),
                options,
                source.clone(),
                pods,
                status_tx,
                shutdown.clone(),
            ));
        }
        (None, Some(client)) => {
            let me = args.pod_name.clone().unwrap_or_else(default_identity);
            let metrics = crate::kube_source::report::Metrics::default();
            metrics.register(&mut registry);
            let reports = crate::kube_source::report::Reports::new(
                Some(client.clone()),
                Some(me.clone()),
                metrics,
            );
            let (leader_tx, leader_rx) = watch::channel(false);
            tokio::spawn(crate::kube_source::leader::run(
                client.clone(),
                args.namespace.clone(),
                me,
                args.lease_duration,
                leader_tx,
                shutdown.clone(),
            ));
            let controller = crate::kube_source::controller::Controller::new(
                client.clone(),
                crate::kube_source::desired::Settings {
                    image: args.waypoint_image.clone(),
                    xds_address: args.waypoint_xds_address.clone(),
                    trust_domain: args.trust_domain.clone(),
                    root_cert_pem: root.cert_pem.clone(),
                },
            );
            tokio::spawn(crate::kube_source::run(
                client,
                crate::kube_source::options(options),
                crate::kube_source::Sinks {
                    source: source.clone(),
                    pods,
                    status: status_tx,
                    reports,
                },
                crate::kube_source::Writers {
                    controller,
                    leader: leader_rx,
                },
                shutdown.clone(),
            ));
        }
        (None, None) => unreachable!("a client is made whenever there is no manifest directory"),
    }
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
