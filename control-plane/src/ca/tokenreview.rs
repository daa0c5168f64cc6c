//! Kubernetes service-account tokens as CA credentials, checked as istiod checks them: a
//! `TokenReview` (`authentication.k8s.io/v1`) for our audiences, the username
//! `system:serviceaccount:<ns>:<sa>` as the caller's identity, and — for the trusted node
//! accounts only — the node of the pod the token is bound to, which impersonation is limited
//! to (spec §6).
//!
//! The node comes from the review's `authentication.kubernetes.io/node-name` extra when the API
//! server adds it, else from the bound pod itself (`pod-name` extra), whose uid must still be the
//! token's (`pod-uid`): a token of a deleted-and-recreated pod does not carry over to the new
//! pod. A node-account token bound to no pod authenticates with no node, so it may obtain only
//! its own identity. Successful reviews are cached briefly ([`super::review_cache`]).
//!
//! The control plane needs RBAC `create` on `tokenreviews` and `get` on `pods`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use hbone::ca::{BoxFuture, Caller, CallerAuthenticator};
use hbone::{Identity, IdentityError};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use tonic::metadata::MetadataMap;

use super::review_cache::ReviewCache;

/// The audience istiod checks by default (`TOKEN_AUDIENCES`).
pub const DEFAULT_AUDIENCE: &str = "istio-ca";

const USERNAME_PREFIX: &str = "system:serviceaccount:";
const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
const NODE_NAME: &str = "authentication.kubernetes.io/node-name";
const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const POD_UID: &str = "authentication.kubernetes.io/pod-uid";

/// Why a token does not authenticate. Logged by the CA service, never sent to the caller.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no bearer token in the authorization metadata")]
    MissingToken,
    #[error("TokenReview request failed: {0}")]
    Api(#[source] kube::Error),
    #[error("token rejected by the API server: {0}")]
    Rejected(String),
    #[error("token not authenticated by the API server")]
    NotAuthenticated,
    #[error("token audiences {got:?} include none of {want:?}")]
    Audience { got: Vec<String>, want: Vec<String> },
    #[error("user {0:?} is not a service account")]
    NotServiceAccount(String),
    #[error("service account {namespace}/{name}: {source}")]
    Identity {
        namespace: String,
        name: String,
        source: IdentityError,
    },
    #[error("user extra {key:?} has {count} values, expected one")]
    Ambiguous { key: &'static str, count: usize },
    #[error("token bound to pod {pod} without its uid")]
    PodWithoutUid { pod: String },
    #[error("reading pod {namespace}/{name}: {source}")]
    PodRead {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("token bound to pod {namespace}/{name}, which no longer exists")]
    PodGone { namespace: String, name: String },
    #[error("token bound to pod {namespace}/{name} uid {token}, but that pod is now uid {pod:?}")]
    PodUid {
        namespace: String,
        name: String,
        token: String,
        pod: Option<String>,
    },
    #[error(
        "token of service account {service_account} bound to pod {namespace}/{name}, which runs as {pod:?}"
    )]
    PodServiceAccount {
        namespace: String,
        name: String,
        service_account: String,
        pod: Option<String>,
    },
}

/// What the token is bound to, from the review's user extra.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Binding {
    /// Not bound to a pod (or the API server says nothing about it).
    Unbound,
    /// Bound to a pod on this node (the API server says so).
    Node(String),
    /// Bound to this pod; its node is read from the pod.
    Pod { name: String, uid: String },
}

/// A successful review: the service account and what its token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reviewed {
    namespace: String,
    service_account: String,
    binding: Binding,
}

/// `<ns>` and `<sa>` of `system:serviceaccount:<ns>:<sa>`.
fn parse_username(username: &str) -> Option<(&str, &str)> {
    let (ns, sa) = username.strip_prefix(USERNAME_PREFIX)?.split_once(':')?;
    (!ns.is_empty() && !sa.is_empty() && !sa.contains(':')).then_some((ns, sa))
}

/// The single value of `extra[key]`, if any.
fn single<'a>(
    extra: &'a BTreeMap<String, Vec<String>>,
    key: &'static str,
) -> Result<Option<&'a str>, ReviewError> {
    match extra.get(key).map(Vec::as_slice) {
        None | Some([]) => Ok(None),
        Some([value]) if value.is_empty() => Ok(None),
        Some([value]) => Ok(Some(value)),
        Some(values) => Err(ReviewError::Ambiguous {
            key,
            count: values.len(),
        }),
    }
}

/// What the user extra says the token is bound to: the node when the API server names it,
/// else the pod (which must come with its uid), else nothing.
fn binding(extra: &BTreeMap<String, Vec<String>>) -> Result<Binding, ReviewError> {
    if let Some(node) = single(extra, NODE_NAME)? {
        return Ok(Binding::Node(node.to_owned()));
    }
    let Some(pod) = single(extra, POD_NAME)? else {
        return Ok(Binding::Unbound);
    };
    let uid = single(extra, POD_UID)?.ok_or_else(|| ReviewError::PodWithoutUid {
        pod: pod.to_owned(),
    })?;
    Ok(Binding::Pod {
        name: pod.to_owned(),
        uid: uid.to_owned(),
    })
}

/// Checks a review's status against our `audiences`.
fn reviewed(status: &TokenReviewStatus, audiences: &[String]) -> Result<Reviewed, ReviewError> {
    if let Some(error) = status.error.as_deref().filter(|e| !e.is_empty()) {
        return Err(ReviewError::Rejected(error.to_owned()));
    }
    if status.authenticated != Some(true) {
        return Err(ReviewError::NotAuthenticated);
    }
    let got = status.audiences.clone().unwrap_or_default();
    if !got.iter().any(|a| audiences.contains(a)) {
        return Err(ReviewError::Audience {
            got,
            want: audiences.to_vec(),
        });
    }
    let user = status.user.clone().unwrap_or_default();
    let username = user.username.unwrap_or_default();
    let in_group = user
        .groups
        .unwrap_or_default()
        .iter()
        .any(|g| g == SERVICE_ACCOUNTS_GROUP);
    let (namespace, service_account) = parse_username(&username)
        .filter(|_| in_group)
        .ok_or_else(|| ReviewError::NotServiceAccount(username.clone()))?;
    Ok(Reviewed {
        namespace: namespace.to_owned(),
        service_account: service_account.to_owned(),
        binding: binding(&user.extra.unwrap_or_default())?,
    })
}

/// The node of `pod`, after checking it is the token's pod (same uid, same service account).
fn node_of_pod(
    reviewed: &Reviewed,
    name: &str,
    uid: &str,
    pod: &Pod,
) -> Result<Option<String>, ReviewError> {
    let pod_uid = pod.metadata.uid.as_deref();
    if pod_uid != Some(uid) {
        return Err(ReviewError::PodUid {
            namespace: reviewed.namespace.clone(),
            name: name.to_owned(),
            token: uid.to_owned(),
            pod: pod_uid.map(str::to_owned),
        });
    }
    let spec = pod.spec.as_ref();
    let pod_sa = spec.and_then(|s| s.service_account_name.as_deref());
    if pod_sa != Some(reviewed.service_account.as_str()) {
        return Err(ReviewError::PodServiceAccount {
            namespace: reviewed.namespace.clone(),
            name: name.to_owned(),
            service_account: reviewed.service_account.clone(),
            pod: pod_sa.map(str::to_owned),
        });
    }
    Ok(spec.and_then(|s| s.node_name.clone()))
}

/// The Kubernetes CA authenticator.
pub struct TokenReviewer {
    client: kube::Client,
    audiences: Vec<String>,
    trust_domain: String,
    trusted_node_accounts: Vec<(String, String)>,
    cache: ReviewCache,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("audiences", &self.audiences)
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl TokenReviewer {
    /// Reviews tokens through `client` for `audiences`; callers get identities in
    /// `trust_domain`, and the `trusted_node_accounts` (`(namespace, sa)`) their pod's node.
    pub fn new(
        client: kube::Client,
        audiences: Vec<String>,
        trust_domain: &str,
        trusted_node_accounts: Vec<(String, String)>,
    ) -> Self {
        Self {
            client,
            audiences,
            trust_domain: trust_domain.to_owned(),
            trusted_node_accounts,
            cache: ReviewCache::new(),
        }
    }

    /// The caller `token` authenticates, from the cache or the API server.
    pub async fn caller(&self, token: &str) -> Result<Caller, ReviewError> {
        if let Some(caller) = self.cache.get(token, tokio::time::Instant::now()) {
            return Ok(caller);
        }
        let caller = self.review(token).await?;
        self.cache.insert(
            token,
            caller.clone(),
            tokio::time::Instant::now(),
            SystemTime::now(),
        );
        Ok(caller)
    }

    async fn review(&self, token: &str) -> Result<Caller, ReviewError> {
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(self.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let response = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &request)
            .await
            .map_err(ReviewError::Api)?;
        let reviewed = reviewed(&response.status.unwrap_or_default(), &self.audiences)?;
        let identity = Identity::new(
            &self.trust_domain,
            &reviewed.namespace,
            &reviewed.service_account,
        )
        .map_err(|source| ReviewError::Identity {
            namespace: reviewed.namespace.clone(),
            name: reviewed.service_account.clone(),
            source,
        })?;
        let trusted = self
            .trusted_node_accounts
            .iter()
            .any(|(ns, sa)| *ns == reviewed.namespace && *sa == reviewed.service_account);
        let node = match &reviewed.binding {
            _ if !trusted => None,
            Binding::Unbound => None,
            Binding::Node(node) => Some(node.clone()),
            Binding::Pod { name, uid } => self.node_of_pod(&reviewed, name, uid).await?,
        };
        Ok(Caller { identity, node })
    }

    async fn node_of_pod(
        &self,
        reviewed: &Reviewed,
        name: &str,
        uid: &str,
    ) -> Result<Option<String>, ReviewError> {
        let pod = Api::<Pod>::namespaced(self.client.clone(), &reviewed.namespace)
            .get_opt(name)
            .await
            .map_err(|source| ReviewError::PodRead {
                namespace: reviewed.namespace.clone(),
                name: name.to_owned(),
                source,
            })?
            .ok_or_else(|| ReviewError::PodGone {
                namespace: reviewed.namespace.clone(),
                name: name.to_owned(),
            })?;
        node_of_pod(reviewed, name, uid, &pod)
    }
}

impl CallerAuthenticator for TokenReviewer {
    type Error = ReviewError;

    fn authenticate<'a>(
        &'a self,
        metadata: &'a MetadataMap,
    ) -> BoxFuture<'a, Result<Caller, ReviewError>> {
        Box::pin(async move {
            let token = super::bearer_token(metadata).ok_or(ReviewError::MissingToken)?;
            self.caller(token).await
        })
    }
}

#[cfg(test)]
mod tests;
