//! The Istio CA API (`istio.v1.auth.IstioCertificateService/CreateCertificate`, spec §6).
//!
//! Client side: [`CaClient`] generates a fresh ECDSA P-256 key and CSR per request and turns
//! the response into a [`crate::tls::WorkloadCertificate`]. Server side: [`Signer`] signs CSRs
//! with a CA key, and [`CaService`] is the tonic service a control plane serves, enforcing
//! node-bound impersonation through the pluggable [`NodeAuthorizer`]. The certificate manager
//! consumes any [`CertificateFetcher`].

mod client;
mod csr;
mod local;
mod service;
mod signer;

use std::future::Future;
use std::pin::Pin;

pub use client::{CaClient, CaClientConfig, TokenSource, tls_channel};
pub use csr::{Csr, generate_csr};
pub use local::{SelfSignedCa, channel};
pub use service::{CaService, CaServiceConfig, Caller, CallerAuthenticator, NodeAuthorizer};
pub use signer::Signer;

use crate::identity::Identity;
use crate::tls::{CertificateError, WorkloadCertificate};

/// A boxed, sendable future (object-safe async traits).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Metadata key carrying the impersonated identity in shared mode.
pub const IMPERSONATED_IDENTITY: &str = "ImpersonatedIdentity";

/// Errors of the CA client, signer and service.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("generating CSR for {identity}: {reason}")]
    Csr { identity: Identity, reason: String },
    #[error("CA request for {identity} failed: {status}")]
    Rpc {
        identity: Identity,
        status: Box<tonic::Status>,
    },
    #[error("CA response for {identity} unusable: {source}")]
    Response {
        identity: Identity,
        #[source]
        source: CertificateError,
    },
    #[error("reading CA token {path}: {reason}")]
    Token { path: String, reason: String },
    #[error("CA channel to {address}: {reason}")]
    Channel { address: String, reason: String },
    #[error("signing for {identity}: {reason}")]
    Sign { identity: Identity, reason: String },
    #[error("CSR does not carry exactly the URI SAN {identity}")]
    CsrIdentity { identity: Identity },
    #[error("loading CA key material: {0}")]
    CaMaterial(String),
    #[error("certificate source unavailable for {identity}: {reason}")]
    Unavailable { identity: Identity, reason: String },
}

/// Anything that can produce a fresh certificate for an identity (the CA client, a test CA).
pub trait CertificateFetcher: Send + Sync + 'static {
    /// Fetches a newly signed certificate for `identity`.
    fn fetch<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> BoxFuture<'a, Result<WorkloadCertificate, CaError>>;
}
