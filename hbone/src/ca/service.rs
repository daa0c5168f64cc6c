//! The server side of the CA API as a tonic service, for the control plane to mount.
//!
//! Authentication (who is calling, from which node) is pluggable via [`CallerAuthenticator`];
//! the impersonation decision is the pure [`authorize`] function; whether a node may obtain an
//! identity is answered by the pluggable [`NodeAuthorizer`] (spec §6: some pod on the caller's
//! node must run the requested service account). Validity is the requested one (or the default)
//! capped at [`CaServiceConfig::max_validity`] (istiod's `MAX_WORKLOAD_CERT_TTL`).
//!
//! Refusals are opaque, as istiod's are: the caller gets a status code and a fixed message
//! ([`Refusal::status`]); the reason is logged (`warn`) with the caller's and the requested
//! identity, so a prober learns nothing about tokens, pods or nodes.

use std::sync::Arc;
use std::time::Duration;

use proto::istio::v1::auth::istio_certificate_service_server::IstioCertificateService;
use proto::istio::v1::auth::{IstioCertificateRequest, IstioCertificateResponse};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::{BoxFuture, CaError, IMPERSONATED_IDENTITY, Signer};
use crate::identity::{Identity, IdentityError};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's own identity (from its token or client certificate).
    pub identity: Identity,
    /// The node the caller's pod runs on, when the credential is pod-bound.
    pub node: Option<String>,
}

/// Maps request metadata (e.g. `authorization: Bearer …`) to a caller.
pub trait CallerAuthenticator: Send + Sync + 'static {
    /// Why a caller was not authenticated. Logged by the service, never sent: the caller only
    /// sees `Unauthenticated: authentication failed`.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The caller `metadata` authenticates.
    fn authenticate<'a>(
        &'a self,
        metadata: &'a MetadataMap,
    ) -> BoxFuture<'a, Result<Caller, Self::Error>>;
}

/// Answers whether a caller on `node` may obtain `identity` (a pod with that SA on that node).
pub trait NodeAuthorizer: Send + Sync + 'static {
    /// True when some pod on `node` runs `identity`'s service account in its namespace.
    fn node_may_obtain<'a>(&'a self, node: &'a str, identity: &'a Identity) -> BoxFuture<'a, bool>;
}

/// Service settings.
#[derive(Debug, Clone)]
pub struct CaServiceConfig {
    /// `(namespace, service_account)` allowed to impersonate (`CA_TRUSTED_NODE_ACCOUNTS`).
    pub trusted_node_accounts: Vec<(String, String)>,
    /// Validity when the request asks for none (itself capped by `max_validity`).
    pub default_validity: Duration,
    /// Longest validity issued (`MAX_WORKLOAD_CERT_TTL`, istiod's default 90 days): a longer
    /// request is shortened to it rather than refused.
    pub max_validity: Duration,
}

/// Why an impersonation request is refused before asking the node authorizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Denied {
    #[error("caller may not impersonate")]
    NotTrusted,
    #[error("impersonated identity in another trust domain")]
    OtherTrustDomain,
    #[error("caller credential is not bound to a node")]
    NotNodeBound,
}

/// What the caller may get, before asking the node authorizer.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Own identity.
    Allow,
    /// Impersonation by a trusted node agent: allowed iff the node authorizer agrees.
    AskNode(String),
    /// Refused.
    Deny(Denied),
}

fn authorize(config: &CaServiceConfig, caller: &Caller, requested: &Identity) -> Decision {
    if *requested == caller.identity {
        return Decision::Allow;
    }
    let trusted = config.trusted_node_accounts.iter().any(|(ns, sa)| {
        ns == caller.identity.namespace() && sa == caller.identity.service_account()
    });
    if !trusted {
        return Decision::Deny(Denied::NotTrusted);
    }
    if requested.trust_domain() != caller.identity.trust_domain() {
        return Decision::Deny(Denied::OtherTrustDomain);
    }
    match &caller.node {
        Some(node) => Decision::AskNode(node.clone()),
        None => Decision::Deny(Denied::NotNodeBound),
    }
}

/// The validity to issue: the requested one (`validity_duration` seconds; ≤ 0 means none) or
/// the default, never above the cap.
fn validity(config: &CaServiceConfig, requested_secs: i64) -> Duration {
    u64::try_from(requested_secs)
        .ok()
        .filter(|s| *s > 0)
        .map_or(config.default_validity, Duration::from_secs)
        .min(config.max_validity)
}

/// Why the `ImpersonatedIdentity` metadata is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum RequestedIdentityError {
    #[error("{IMPERSONATED_IDENTITY} is not a string")]
    NotAString,
    #[error("{IMPERSONATED_IDENTITY}: {0}")]
    Invalid(#[from] IdentityError),
}

fn requested_identity(
    request: &IstioCertificateRequest,
) -> Result<Option<Identity>, RequestedIdentityError> {
    let Some(value) = request
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(IMPERSONATED_IDENTITY))
    else {
        return Ok(None);
    };
    match &value.kind {
        Some(prost_types::value::Kind::StringValue(s)) => Ok(Some(s.parse()?)),
        _ => Err(RequestedIdentityError::NotAString),
    }
}

/// Why a request was refused: logged in full, answered with [`Refusal::status`] only.
#[derive(Debug, thiserror::Error)]
enum Refusal<E> {
    #[error("authentication failed: {0}")]
    Authentication(E),
    #[error("invalid impersonation request: {0}")]
    RequestedIdentity(RequestedIdentityError),
    #[error("impersonation denied: {0}")]
    Denied(Denied),
    #[error("impersonation denied: no pod on node {node} runs the requested service account")]
    NotOnNode { node: String },
    #[error("unusable CSR: {0}")]
    Csr(CaError),
    #[error("signing failed: {0}")]
    Signing(CaError),
}

/// The only messages a caller ever sees.
const AUTHENTICATION_FAILED: &str = "authentication failed";
const NOT_AUTHORIZED: &str = "not authorized";
const INVALID_REQUEST: &str = "invalid request";
const INTERNAL: &str = "internal error";

impl<E> Refusal<E> {
    /// What the caller is told: a code and a fixed message. Impersonation refusals are
    /// `Unauthenticated` as istiod answers them (spec §6).
    fn status(&self) -> Status {
        match self {
            Self::Authentication(_) => Status::unauthenticated(AUTHENTICATION_FAILED),
            Self::Denied(_) | Self::NotOnNode { .. } => Status::unauthenticated(NOT_AUTHORIZED),
            Self::RequestedIdentity(_) | Self::Csr(_) => Status::invalid_argument(INVALID_REQUEST),
            Self::Signing(_) => Status::internal(INTERNAL),
        }
    }
}

/// Logs `refusal` with whatever is known of the caller and the request; returns the status.
fn refuse<E: std::fmt::Display>(
    caller: Option<&Identity>,
    requested: Option<&Identity>,
    refusal: Refusal<E>,
) -> Status {
    let caller = caller.map(tracing::field::display);
    let requested = requested.map(tracing::field::display);
    if matches!(refusal, Refusal::Signing(_)) {
        tracing::error!(src.identity = caller, requested, reason = %refusal, "certificate request failed");
    } else {
        tracing::warn!(src.identity = caller, requested, reason = %refusal, "certificate request refused");
    }
    refusal.status()
}

/// `IstioCertificateService` implementation over a [`Signer`].
pub struct CaService<A, N> {
    signer: Arc<Signer>,
    authenticator: A,
    node_authorizer: N,
    config: CaServiceConfig,
}

impl<A: CallerAuthenticator, N: NodeAuthorizer> CaService<A, N> {
    /// Builds the service; mount it with `IstioCertificateServiceServer::new(service)`.
    pub fn new(
        signer: Arc<Signer>,
        authenticator: A,
        node_authorizer: N,
        config: CaServiceConfig,
    ) -> Self {
        Self {
            signer,
            authenticator,
            node_authorizer,
            config,
        }
    }

    /// Authenticates, authorizes and signs; every `Err` is already logged and opaque.
    async fn issue(
        &self,
        request: &Request<IstioCertificateRequest>,
    ) -> Result<Vec<String>, Status> {
        let body = request.get_ref();
        let asked = requested_identity(body);
        let caller = match self.authenticator.authenticate(request.metadata()).await {
            Ok(caller) => caller,
            Err(e) => {
                let requested = asked.as_ref().ok().and_then(Option::as_ref);
                return Err(refuse(None, requested, Refusal::Authentication(e)));
            }
        };
        let deny = |requested: Option<&Identity>, refusal: Refusal<A::Error>| {
            refuse(Some(&caller.identity), requested, refusal)
        };
        let requested = match asked {
            Ok(requested) => requested.unwrap_or_else(|| caller.identity.clone()),
            Err(e) => return Err(deny(None, Refusal::RequestedIdentity(e))),
        };
        match authorize(&self.config, &caller, &requested) {
            Decision::Allow => {}
            Decision::AskNode(node) => {
                if !self
                    .node_authorizer
                    .node_may_obtain(&node, &requested)
                    .await
                {
                    return Err(deny(Some(&requested), Refusal::NotOnNode { node }));
                }
            }
            Decision::Deny(why) => return Err(deny(Some(&requested), Refusal::Denied(why))),
        }
        let validity = validity(&self.config, body.validity_duration);
        self.signer
            .sign(&body.csr, &requested, validity)
            .map_err(|e| {
                let refusal = match e {
                    CaError::CsrIdentity { .. } | CaError::Sign { .. } => Refusal::Csr(e),
                    other => Refusal::Signing(other),
                };
                deny(Some(&requested), refusal)
            })
            .inspect(|_| {
                tracing::debug!(src.identity = %caller.identity, identity = %requested, ?validity, "certificate issued");
            })
    }
}

#[tonic::async_trait]
impl<A: CallerAuthenticator, N: NodeAuthorizer> IstioCertificateService for CaService<A, N> {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let cert_chain = self.issue(&request).await?;
        Ok(Response::new(IstioCertificateResponse { cert_chain }))
    }
}

#[cfg(test)]
mod tests;
