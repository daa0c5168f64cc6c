//! The mesh's certificate authority: the Istio CA API (`hbone`'s `CaService` over a signer
//! whose root is made at `meshctl up`), served on `127.0.0.1:15012` inside every node netns so
//! each node's ztunnel reaches it on loopback (plaintext gRPC on loopback, as allowed locally).
//!
//! Callers authenticate with the node's token (`<node>/istio-token`), which binds them to that
//! node as `istio-system/ztunnel`; impersonation is granted only for service accounts of pods
//! running on that node (spec §6). Owns the token files and the pod registry it checks.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hbone::Identity;
use hbone::ca::{
    BoxFuture, CaService, CaServiceConfig, Caller, CallerAuthenticator, NodeAuthorizer, Signer,
};
use proto::istio::v1::auth::istio_certificate_service_server::IstioCertificateServiceServer;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::error::Error;
use crate::netns;
use crate::paths::MeshPaths;

pub const CA_PORT: u16 = 15012;
const ZTUNNEL_NS: &str = "istio-system";
const ZTUNNEL_SA: &str = "ztunnel";

/// `(node, namespace, service account)` of every running pod.
pub type PodRegistry = Arc<RwLock<BTreeSet<(String, String, String)>>>;

struct Tokens {
    by_token: Vec<(String, String)>,
    trust_domain: String,
}

impl CallerAuthenticator for Tokens {
    fn authenticate<'a>(
        &'a self,
        metadata: &'a MetadataMap,
    ) -> BoxFuture<'a, Result<Caller, Status>> {
        Box::pin(async move {
            let token = metadata
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
            let node = self
                .by_token
                .iter()
                .find(|(t, _)| t == token)
                .map(|(_, n)| n.clone())
                .ok_or_else(|| Status::unauthenticated("unknown token"))?;
            let identity = Identity::new(&self.trust_domain, ZTUNNEL_NS, ZTUNNEL_SA)
                .map_err(|e| Status::internal(e.to_string()))?;
            Ok(Caller {
                identity,
                node: Some(node),
            })
        })
    }
}

struct Pods(PodRegistry);

impl NodeAuthorizer for Pods {
    fn node_may_obtain<'a>(&'a self, node: &'a str, identity: &'a Identity) -> BoxFuture<'a, bool> {
        let ok = self.0.read().unwrap_or_else(|e| e.into_inner()).contains(&(
            node.to_owned(),
            identity.namespace().to_owned(),
            identity.service_account().to_owned(),
        ));
        Box::pin(async move { ok })
    }
}

/// The running CA. Dropping it stops serving.
pub struct MeshCa {
    pub pods: PodRegistry,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for MeshCa {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Path of a node's CA token (mode 0600).
pub fn token_path(paths: &MeshPaths, node: &str) -> std::path::PathBuf {
    paths.node_dir(node).join("istio-token")
}

fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// Makes the root, writes one token per node, binds 127.0.0.1:15012 in each node netns and
/// serves them all from one background thread.
pub fn start(paths: &MeshPaths, nodes: &[String], trust_domain: &str) -> Result<MeshCa, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let mesh_err = |detail: String| Error::Mesh {
        mesh: paths.name.clone(),
        detail,
    };
    let signer = Arc::new(
        Signer::self_signed_root(
            &format!("meshctl {} root CA", paths.name),
            Duration::from_secs(10 * 365 * 86400),
        )
        .map_err(|e| mesh_err(format!("creating the mesh CA: {e}")))?,
    );
    let mut by_token = Vec::new();
    let mut listeners = Vec::new();
    for node in nodes {
        let token = random_token();
        let path = token_path(paths, node);
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(token.as_bytes())
        };
        write().map_err(|e| Error::file(&path, e))?;
        by_token.push((token, node.clone()));
        let addr = SocketAddr::from(([127, 0, 0, 1], CA_PORT));
        let listener = netns::run_in(&paths.node_netns(node), move || {
            std::net::TcpListener::bind(addr)
        })?
        .map_err(|e| mesh_err(format!("binding the CA on {node} {addr}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| mesh_err(e.to_string()))?;
        listeners.push(listener);
    }
    let pods: PodRegistry = Arc::default();
    let service = CaService::new(
        signer,
        Tokens {
            by_token,
            trust_domain: trust_domain.to_owned(),
        },
        Pods(pods.clone()),
        CaServiceConfig {
            trusted_node_accounts: vec![(ZTUNNEL_NS.into(), ZTUNNEL_SA.into())],
            default_validity: Duration::from_secs(24 * 3600),
        },
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("mesh-ca".into())
        .spawn(move || serve(service, listeners, stop_rx))
        .map_err(|e| mesh_err(format!("starting the CA thread: {e}")))?;
    Ok(MeshCa {
        pods,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

fn serve(
    service: CaService<Tokens, Pods>,
    listeners: Vec<std::net::TcpListener>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        tracing::error!("cannot start the CA runtime");
        return;
    };
    rt.block_on(async move {
        let incoming = futures_util::stream::select_all(listeners.into_iter().filter_map(|l| {
            let l = tokio::net::TcpListener::from_std(l).ok()?;
            Some(Box::pin(futures_util::stream::unfold(l, |l| async move {
                let r = l.accept().await.map(|(s, _)| s);
                Some((r, l))
            })))
        }));
        let result = tonic::transport::Server::builder()
            .add_service(IstioCertificateServiceServer::new(service))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "mesh CA stopped");
        }
    });
}
