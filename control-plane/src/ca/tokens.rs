//! The static CA credentials of the local mesh: `--ca-tokens`, a JSON object re-read on every
//! request whose values are [`TokenSubject`]s. Kubernetes callers use [`super::tokenreview`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use hbone::Identity;
use hbone::ca::{BoxFuture, Caller, CallerAuthenticator};
use hbone::identity::IdentityError;

use tonic::metadata::MetadataMap;

use super::{ZTUNNEL_NS, ZTUNNEL_SA, bearer_token};

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

/// Why a static token does not authenticate. Never names the token itself (this is logged).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token in the authorization metadata")]
    MissingBearer,
    #[error("no --ca-tokens file: every token is unknown")]
    NoTokensFile,
    #[error("reading CA tokens {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("CA tokens {path} are not a JSON object: {source}")]
    Malformed {
        path: String,
        source: serde_json::Error,
    },
    #[error("token not listed in {path}")]
    Unknown { path: String },
    #[error("malformed entry in {path}: {source}")]
    Entry {
        path: String,
        source: serde_json::Error,
    },
    #[error("malformed entry in {path}: service account {value:?} is not <namespace>/<name>")]
    ServiceAccount { path: String, value: String },
    #[error("malformed entry in {path}: {source}")]
    Identity { path: String, source: IdentityError },
}

/// The tokens of `--ca-tokens`.
#[derive(Debug)]
pub struct Tokens {
    pub(super) path: Option<PathBuf>,
    pub(super) trust_domain: String,
}

impl Tokens {
    /// Tokens read from `path` (none when `None`), for identities in `trust_domain`.
    pub fn new(path: Option<PathBuf>, trust_domain: &str) -> Self {
        Self {
            path,
            trust_domain: trust_domain.to_owned(),
        }
    }

    /// The caller `token` authenticates.
    pub(super) fn caller(&self, token: &str) -> Result<Caller, TokenError> {
        let path = self.path.as_ref().ok_or(TokenError::NoTokensFile)?;
        let shown = || path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: shown(),
            source,
        })?;
        let mut map: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&text).map_err(|source| TokenError::Malformed {
                path: shown(),
                source,
            })?;
        let entry = map
            .remove(token)
            .ok_or_else(|| TokenError::Unknown { path: shown() })?;
        let subject: TokenSubject =
            serde_json::from_value(entry).map_err(|source| TokenError::Entry {
                path: shown(),
                source,
            })?;
        let (namespace, service_account, node) = match &subject {
            TokenSubject::Node(node) => (ZTUNNEL_NS, ZTUNNEL_SA, Some(node.clone())),
            TokenSubject::ServiceAccount { service_account } => {
                let (ns, sa) =
                    service_account
                        .split_once('/')
                        .ok_or_else(|| TokenError::ServiceAccount {
                            path: shown(),
                            value: service_account.clone(),
                        })?;
                (ns, sa, None)
            }
        };
        let identity =
            Identity::new(&self.trust_domain, namespace, service_account).map_err(|source| {
                TokenError::Identity {
                    path: shown(),
                    source,
                }
            })?;
        Ok(Caller { identity, node })
    }
}

impl CallerAuthenticator for Tokens {
    type Error = TokenError;

    fn authenticate<'a>(
        &'a self,
        metadata: &'a MetadataMap,
    ) -> BoxFuture<'a, Result<Caller, TokenError>> {
        let caller = bearer_token(metadata)
            .ok_or(TokenError::MissingBearer)
            .and_then(|token| self.caller(token));
        Box::pin(async move { caller })
    }
}
