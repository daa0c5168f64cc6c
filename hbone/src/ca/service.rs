//! The server side of the CA API as a tonic service, for the control plane to mount.
//!
//! Authentication (who is calling, from which node) is pluggable via [`CallerAuthenticator`];
//! the impersonation decision is the pure [`authorize`] function; whether a node may obtain an
//! identity is answered by the pluggable [`NodeAuthorizer`] (spec §6: some pod on the caller's
//! node must run the requested service account).

use std::sync::Arc;
use std::time::Duration;

use proto::istio::v1::auth::istio_certificate_service_server::IstioCertificateService;
use proto::istio::v1::auth::{IstioCertificateRequest, IstioCertificateResponse};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::{BoxFuture, CaError, IMPERSONATED_IDENTITY, Signer};
use crate::identity::Identity;

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
    /// `Err` is returned to the client as is (normally `Unauthenticated`).
    fn authenticate<'a>(
        &'a self,
        metadata: &'a MetadataMap,
    ) -> BoxFuture<'a, Result<Caller, Status>>;
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
    /// Validity when the request asks for none.
    pub default_validity: Duration,
}

/// What the caller may get, before asking the node authorizer.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Own identity.
    Allow,
    /// Impersonation by a trusted node agent: allowed iff the node authorizer agrees.
    AskNode(String),
    /// Refused with this reason.
    Deny(&'static str),
}

fn authorize(config: &CaServiceConfig, caller: &Caller, requested: &Identity) -> Decision {
    if *requested == caller.identity {
        return Decision::Allow;
    }
    let trusted = config.trusted_node_accounts.iter().any(|(ns, sa)| {
        ns == caller.identity.namespace() && sa == caller.identity.service_account()
    });
    if !trusted {
        return Decision::Deny("caller may not impersonate");
    }
    if requested.trust_domain() != caller.identity.trust_domain() {
        return Decision::Deny("impersonated identity in another trust domain");
    }
    match &caller.node {
        Some(node) => Decision::AskNode(node.clone()),
        None => Decision::Deny("caller credential is not bound to a node"),
    }
}

fn requested_identity(request: &IstioCertificateRequest) -> Result<Option<Identity>, Status> {
    let Some(value) = request
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(IMPERSONATED_IDENTITY))
    else {
        return Ok(None);
    };
    match &value.kind {
        Some(prost_types::value::Kind::StringValue(s)) => s
            .parse()
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("{IMPERSONATED_IDENTITY}: {e}"))),
        _ => Err(Status::invalid_argument(format!(
            "{IMPERSONATED_IDENTITY} is not a string"
        ))),
    }
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
}

#[tonic::async_trait]
impl<A: CallerAuthenticator, N: NodeAuthorizer> IstioCertificateService for CaService<A, N> {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let caller = self.authenticator.authenticate(request.metadata()).await?;
        let body = request.get_ref();
        let requested = requested_identity(body)?.unwrap_or_else(|| caller.identity.clone());
        match authorize(&self.config, &caller, &requested) {
            Decision::Allow => {}
            Decision::AskNode(node) => {
                if !self
                    .node_authorizer
                    .node_may_obtain(&node, &requested)
                    .await
                {
                    tracing::info!(src.identity = %caller.identity, node, requested = %requested, "impersonation denied: no such pod on node");
                    return Err(Status::unauthenticated(
                        "no pod with the requested identity on the caller's node",
                    ));
                }
            }
            Decision::Deny(why) => {
                tracing::info!(src.identity = %caller.identity, requested = %requested, why, "certificate request denied");
                return Err(Status::unauthenticated(why));
            }
        }
        let validity = u64::try_from(body.validity_duration)
            .ok()
            .filter(|s| *s > 0)
            .map_or(self.config.default_validity, Duration::from_secs);
        let chain = self
            .signer
            .sign(&body.csr, &requested, validity)
            .map_err(|e| match e {
                CaError::CsrIdentity { .. } | CaError::Sign { .. } => {
                    Status::invalid_argument(e.to_string())
                }
                other => Status::internal(other.to_string()),
            })?;
        tracing::debug!(src.identity = %caller.identity, identity = %requested, "certificate issued");
        Ok(Response::new(IstioCertificateResponse {
            cert_chain: chain,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(s: &str) -> Identity {
        s.parse().unwrap()
    }

    #[test]
    fn impersonation_table() {
        let config = CaServiceConfig {
            trusted_node_accounts: vec![("istio-system".into(), "ztunnel".into())],
            default_validity: Duration::from_secs(60),
        };
        let ztunnel = Caller {
            identity: id("spiffe://cluster.local/ns/istio-system/sa/ztunnel"),
            node: Some("node-a".into()),
        };
        let app = Caller {
            identity: id("spiffe://cluster.local/ns/default/sa/app"),
            node: Some("node-a".into()),
        };
        let unbound = Caller {
            node: None,
            ..ztunnel.clone()
        };
        let target = id("spiffe://cluster.local/ns/default/sa/app");
        let foreign = id("spiffe://other.domain/ns/default/sa/app");
        let cases = [
            (&app, &target, Decision::Allow),
            (&ztunnel, &ztunnel.identity, Decision::Allow),
            (&ztunnel, &target, Decision::AskNode("node-a".into())),
            (
                &app,
                &id("spiffe://cluster.local/ns/default/sa/other"),
                Decision::Deny("caller may not impersonate"),
            ),
            (
                &unbound,
                &target,
                Decision::Deny("caller credential is not bound to a node"),
            ),
            (
                &ztunnel,
                &foreign,
                Decision::Deny("impersonated identity in another trust domain"),
            ),
        ];
        for (caller, requested, want) in cases {
            assert_eq!(
                authorize(&config, caller, requested),
                want,
                "{caller:?} -> {requested}"
            );
        }
    }
}
