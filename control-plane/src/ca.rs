//! The mesh CA as the control plane serves it: the Istio CA API (`hbone`'s `CaService`) over a
//! root kept in `--ca-dir` (made on first start, reused after a restart so certificates already
//! issued stay valid), plus the control plane's own TLS serving certificate under that root.
//!
//! Callers authenticate with a bearer token listed in `--ca-tokens` (a JSON object, re-read on every
//! request, whose values are [`TokenSubject`]s):
//! * `"<token>": "<node>"` binds its caller to that node as `istio-system/ztunnel`, which may
//!   impersonate only service accounts of pods the manifests place on that node (spec §6);
//! * `"<token>": {"serviceAccount": "<ns>/<sa>"}` authenticates its caller as that one identity,
//!   bound to no node: it may obtain its own certificate and nothing else (a waypoint's token).

use std::collections::{BTreeMap, BTreeSet};
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
use tonic::Status;
use tonic::metadata::MetadataMap;

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

/// Loads `root-cert.pem`/`root-key.pem` from `dir`, or makes and stores a new root.
pub fn load_or_create_root(dir: &Path, trust_domain: &str) -> Result<Root, CaSetupError> {
    let cert_path = dir.join("root-cert.pem");
    let key_path = dir.join("root-key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok(Root {
            cert_pem: std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?,
            key_pem: std::fs::read_to_string(&key_path).map_err(io(&key_path))?,
        });
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let bad = |e: rcgen::Error| CaSetupError::Material {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    };
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
    params.not_after = (std::time::SystemTime::now() + ROOT_VALIDITY).into();
    let cert = params.self_signed(&key).map_err(bad)?;
    let root = Root {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    write_private(&key_path, &root.key_pem).map_err(io(&key_path))?;
    write_private(&cert_path, &root.cert_pem).map_err(io(&cert_path))?;
    Ok(root)
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
    params.not_after = (std::time::SystemTime::now() + Duration::from_secs(365 * 86400)).into();
    let cert = params.signed_by(&key, &issuer).map_err(bad)?;
    Ok((cert.pem() + &root.cert_pem, key.serialize_pem()))
}

/// What a token of `--ca-tokens` stands for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum TokenSubject {
    /// `"<node>"`: that node's tunnel (`istio-system/ztunnel`, bound to the node).
    Node(String),
    /// `{"serviceAccount": "<ns>/<sa>"}`: one workload identity, bound to no node.
    ServiceAccount {
        #[serde(rename = "serviceAccount")]
        service_account: String,
    },
}

/// The tokens of `--ca-tokens`.
pub struct Tokens {
    path: Option<PathBuf>,
    trust_domain: String,
}

impl Tokens {
    /// The caller `token` authenticates, or `Unauthenticated`.
    fn caller(&self, token: &str) -> Result<Caller, Status> {
        let unknown = || Status::unauthenticated("unknown token");
        let path = self.path.as_ref().ok_or_else(unknown)?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the CA tokens");
            unknown()
        })?;
        let mut map: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| {
                tracing::warn!(path = %path.display(), error = %e, "malformed CA tokens file");
                unknown()
            })?;
        let entry = map.remove(token).ok_or_else(unknown)?;
        let malformed = |reason: String| {
            tracing::warn!(path = %path.display(), reason, "malformed CA token entry");
            Status::unauthenticated("malformed token entry")
        };
        let subject: TokenSubject =
            serde_json::from_value(entry).map_err(|e| malformed(e.to_string()))?;
        let (namespace, service_account, node) = match &subject {
            TokenSubject::Node(node) => (ZTUNNEL_NS, ZTUNNEL_SA, Some(node.clone())),
            TokenSubject::ServiceAccount { service_account } => {
                let (ns, sa) = service_account.split_once('/').ok_or_else(|| {
                    malformed(format!("{service_account:?} is not <namespace>/<name>"))
                })?;
                (ns, sa, None)
            }
        };
        let identity = Identity::new(&self.trust_domain, namespace, service_account)
            .map_err(|e| malformed(e.to_string()))?;
        Ok(Caller { identity, node })
    }
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
            self.caller(token.trim())
        })
    }
}

/// Which node runs which service accounts, from the manifests.
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

/// The CA gRPC service type.
pub type CaServer =
    proto::istio::v1::auth::istio_certificate_service_server::IstioCertificateServiceServer<
        CaService<Tokens, Pods>,
    >;

/// The CA gRPC service, checking impersonation against `pods`.
pub fn service(
    root: &Root,
    tokens: Option<PathBuf>,
    trust_domain: &str,
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
    let service = CaService::new(
        Arc::new(signer),
        Tokens {
            path: tokens,
            trust_domain: trust_domain.to_owned(),
        },
        Pods(pods),
        CaServiceConfig {
            trusted_node_accounts: vec![(ZTUNNEL_NS.into(), ZTUNNEL_SA.into())],
            default_validity: Duration::from_secs(24 * 3600),
        },
    );
    Ok(CaServer::new(service))
}

#[cfg(test)]
mod tests;
