//! The mesh CA as the control plane serves it: the Istio CA API (`hbone`'s `CaService`) over a
//! root kept in `--ca-dir` (made on first start, reused after a restart so certificates already
//! issued stay valid) — on a cluster, when `--ca-dir` holds none, in the Secret every replica
//! shares ([`root_secret`]) — plus the control plane's own TLS serving certificate under that root.
//!
//! Callers authenticate one of two ways ([`CaAuth`]):
//! * the local mesh's static tokens ([`tokens`], `--ca-tokens`): a node's token binds its caller
//!   to that node as `istio-system/ztunnel`, a service-account token to that one identity;
//! * Kubernetes service-account tokens, reviewed by the API server as istiod does
//!   ([`tokenreview`]).
//!
//! A trusted node account may impersonate only service accounts of pods on its node ([`Pods`],
//! spec §6); everyone else gets only their own identity. Certificates last what the caller asks
//! (24 h when it asks nothing), never more than `MAX_WORKLOAD_CERT_TTL` (default 90 days).
//! Refusals are opaque to the caller and logged with their reason (see `hbone::ca::CaService`).

mod review_cache;
pub mod root_secret;
pub mod tokenreview;
pub mod tokens;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hbone::Identity;
use hbone::ca::{
    BoxFuture, CaService, CaServiceConfig, Caller, CallerAuthenticator, NodeAuthorizer, Signer,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use tonic::metadata::MetadataMap;

pub use tokenreview::{DEFAULT_AUDIENCE, ReviewError, TokenReviewer};
pub use tokens::{TokenError, TokenSubject, Tokens};

/// The node tunnels' identity.
pub const ZTUNNEL_NS: &str = "istio-system";
pub const ZTUNNEL_SA: &str = "ztunnel";
const ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86400);

/// Why the CA could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CaSetupError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("CA material in {dir}: {reason}")]
    Material { dir: String, reason: String },
    #[error("CA root Secret {namespace}/{name}: {reason}")]
    Secret {
        namespace: String,
        name: String,
        reason: String,
    },
}

/// `(node, namespace, service account)` of every pod the manifests place on a node.
pub type PodsOnNodes = Arc<RwLock<BTreeSet<(String, String, String)>>>;

/// The root's PEM certificate and key.
#[derive(Clone)]
pub struct Root {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root").finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaSetupError + '_ {
    move |source| CaSetupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `text` to `path` with mode 0600, atomically (temporary file, then rename). Used for
/// keys and tokens, here and by the local mesh.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)
}

/// The root in `dir` (`root-cert.pem`, `root-key.pem`), if both files are there.
pub fn load_root(dir: &Path) -> Result<Option<Root>, CaSetupError> {
    let cert_path = dir.join("root-cert.pem");
    let key_path = dir.join("root-key.pem");
    if !(cert_path.exists() && key_path.exists()) {
        return Ok(None);
    }
    Ok(Some(Root {
        cert_pem: std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?,
        key_pem: std::fs::read_to_string(&key_path).map_err(io(&key_path))?,
    }))
}

/// Loads `root-cert.pem`/`root-key.pem` from `dir`, or makes and stores a new root.
pub fn load_or_create_root(dir: &Path, trust_domain: &str) -> Result<Root, CaSetupError> {
    if let Some(root) = load_root(dir)? {
        return Ok(root);
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let root = new_root(trust_domain).map_err(|reason| CaSetupError::Material {
        dir: dir.display().to_string(),
        reason,
    })?;
    let key_path = dir.join("root-key.pem");
    let cert_path = dir.join("root-cert.pem");
    write_private(&key_path, &root.key_pem).map_err(io(&key_path))?;
    write_private(&cert_path, &root.cert_pem).map_err(io(&cert_path))?;
    Ok(root)
}

/// A new self-signed root for `trust_domain` (EC P-256, 10 years).
pub fn new_root(trust_domain: &str) -> Result<Root, String> {
    let bad = |e: rcgen::Error| e.to_string();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(bad)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, trust_domain);
    params
        .distinguished_name
        .push(DnType::CommonName, "mesh control plane root CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Valid from a little before now (clock skew between nodes), not rcgen's default of 1975.
    let now = std::time::SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + ROOT_VALIDITY).into();
    let cert = params.self_signed(&key).map_err(bad)?;
    Ok(Root {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A serving certificate under `root` for `dns_names` and `ips`: `(cert chain PEM, key PEM)`.
pub fn serving_certificate(
    root: &Root,
    dns_names: &[String],
    ips: &[std::net::IpAddr],
) -> Result<(String, String), CaSetupError> {
    let bad = |e: rcgen::Error| CaSetupError::Material {
        dir: "(serving certificate)".into(),
        reason: e.to_string(),
    };
    let issuer_key = KeyPair::from_pem(&root.key_pem).map_err(bad)?;
    let issuer = Issuer::from_ca_cert_pem(&root.cert_pem, issuer_key).map_err(bad)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(bad)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = dns_names
        .iter()
        .filter_map(|d| d.clone().try_into().ok().map(SanType::DnsName))
        .chain(ips.iter().map(|ip| SanType::IpAddress(*ip)))
        .collect();
    let now = std::time::SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(365 * 86400)).into();
    let cert = params.signed_by(&key, &issuer).map_err(bad)?;
    Ok((cert.pem() + &root.cert_pem, key.serialize_pem()))
}

/// Which node runs which service accounts, from the manifests or the API server.
pub struct Pods(PodsOnNodes);

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

/// The bearer token of `authorization: Bearer <token>`.
fn bearer_token(metadata: &MetadataMap) -> Option<&str> {
    let token = metadata
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    (!token.is_empty()).then_some(token)
}

/// How CA callers authenticate.
#[derive(Clone)]
pub enum CaAuth {
    /// The static tokens of `--ca-tokens` (the local mesh); `None`: no token is valid.
    Tokens(Option<PathBuf>),
    /// Kubernetes service-account tokens, reviewed by the API server for any of `audiences`
    /// (istiod's `TOKEN_AUDIENCES`, default [`DEFAULT_AUDIENCE`]).
    Kubernetes {
        client: kube::Client,
        audiences: Vec<String>,
    },
}

impl std::fmt::Debug for CaAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tokens(path) => f.debug_tuple("Tokens").field(path).finish(),
            Self::Kubernetes { audiences, .. } => f
                .debug_struct("Kubernetes")
                .field("audiences", audiences)
                .finish_non_exhaustive(),
        }
    }
}

/// The CA's settings besides its root.
#[derive(Debug, Clone)]
pub struct CaSettings {
    pub auth: CaAuth,
    pub trust_domain: String,
    /// Longest certificate issued (`MAX_WORKLOAD_CERT_TTL`).
    pub max_workload_cert_ttl: Duration,
}

/// istiod's `MAX_WORKLOAD_CERT_TTL` default: 90 days.
pub const DEFAULT_MAX_WORKLOAD_CERT_TTL: Duration = Duration::from_secs(90 * 86400);
/// Validity when a request asks for none (ztunnel's `SECRET_TTL` default).
pub const DEFAULT_WORKLOAD_CERT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Why a `MAX_WORKLOAD_CERT_TTL` value is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TtlError {
    #[error("{0}")]
    Syntax(String),
    #[error("{0:?} is shorter than one second")]
    TooShort(String),
}

/// Parses `MAX_WORKLOAD_CERT_TTL`: a Go duration of at least one second (`2160h`, `24h`,
/// `30m`, `1h30m`; units `h`, `m`, `s`, `ms`, `us`, `ns`, no days). Fits clap's `value_parser`.
pub fn parse_max_workload_cert_ttl(text: &str) -> Result<Duration, TtlError> {
    let ttl = crate::manifest::parse_duration(text.trim()).map_err(TtlError::Syntax)?;
    if ttl < Duration::from_secs(1) {
        return Err(TtlError::TooShort(text.to_owned()));
    }
    Ok(ttl)
}

/// The authenticator [`CaAuth`] selects.
pub enum Authenticator {
    Tokens(Tokens),
    Kubernetes(TokenReviewer),
}

/// Why a caller does not authenticate (logged, never sent).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Tokens(#[from] TokenError),
    #[error(transparent)]
    Kubernetes(#[from] ReviewError),
}

impl CallerAuthenticator for Authenticator {
    type Error = AuthError;

    fn authenticate<'a>(
        &'a self,
        metadata: &'a MetadataMap,
    ) -> BoxFuture<'a, Result<Caller, AuthError>> {
        match self {
            Self::Tokens(tokens) => {
                Box::pin(async move { Ok(tokens.authenticate(metadata).await?) })
            }
            Self::Kubernetes(reviewer) => {
                Box::pin(async move { Ok(reviewer.authenticate(metadata).await?) })
            }
        }
    }
}

/// The CA gRPC service type.
pub type CaServer =
    proto::istio::v1::auth::istio_certificate_service_server::IstioCertificateServiceServer<
        CaService<Authenticator, Pods>,
    >;

/// The node accounts that may impersonate (`CA_TRUSTED_NODE_ACCOUNTS`).
fn trusted_node_accounts() -> Vec<(String, String)> {
    vec![(ZTUNNEL_NS.into(), ZTUNNEL_SA.into())]
}

/// The CA gRPC service under `root`, authenticating as `settings` say and checking
/// impersonation against `pods`.
pub fn service_with(
    root: &Root,
    settings: CaSettings,
    pods: PodsOnNodes,
) -> Result<CaServer, CaSetupError> {
    let signer = Signer::from_pem(
        &root.cert_pem,
        &root.key_pem,
        Vec::new(),
        root.cert_pem.clone(),
        ROOT_VALIDITY,
    )
    .map_err(|e| CaSetupError::Material {
        dir: "(root)".into(),
        reason: e.to_string(),
    })?;
    let authenticator = match settings.auth {
        CaAuth::Tokens(path) => Authenticator::Tokens(Tokens::new(path, &settings.trust_domain)),
        CaAuth::Kubernetes { client, audiences } => Authenticator::Kubernetes(TokenReviewer::new(
            client,
            audiences,
            &settings.trust_domain,
            trusted_node_accounts(),
        )),
    };
    let service = CaService::new(
        Arc::new(signer),
        authenticator,
        Pods(pods),
        CaServiceConfig {
            trusted_node_accounts: trusted_node_accounts(),
            default_validity: DEFAULT_WORKLOAD_CERT_TTL,
            max_validity: settings.max_workload_cert_ttl,
        },
    );
    Ok(CaServer::new(service))
}

#[cfg(test)]
mod tests;
