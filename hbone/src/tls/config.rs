//! Builds the rustls client and server configurations from a [`WorkloadCertificate`].

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

use super::ALPN_H2;
use super::certificate::WorkloadCertificate;
use super::verifier::{ExpectedIdentityServerVerifier, TrustDomainClientVerifier};
use crate::identity::Identity;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("building TLS config for {identity}: {source}")]
    Config {
        identity: Identity,
        #[source]
        source: rustls::Error,
    },
}

/// Key-exchange policy (`COMPLIANCE_POLICY`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyExchange {
    /// The provider's default groups (X25519MLKEM768 preferred, then X25519, P-256, P-384).
    #[default]
    Default,
    /// Only the X25519MLKEM768 post-quantum hybrid (`COMPLIANCE_POLICY=pqc`).
    PostQuantumOnly,
}

/// aws-lc-rs, restricted to TLS 1.3 AES-256-GCM and AES-128-GCM (no ChaCha20, spec §2.1).
pub fn crypto_provider(kx: KeyExchange) -> Arc<CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    provider.cipher_suites = vec![
        aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
        aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
    ];
    if kx == KeyExchange::PostQuantumOnly {
        provider.kx_groups = vec![aws_lc_rs::kx_group::X25519MLKEM768];
    }
    Arc::new(provider)
}

/// Client config for one hop: presents `cert`, accepts only a server in `expected`.
pub fn client_config(
    cert: &WorkloadCertificate,
    expected: Vec<Identity>,
    kx: KeyExchange,
) -> Result<Arc<ClientConfig>, TlsError> {
    let err = |source| TlsError::Config {
        identity: cert.identity().clone(),
        source,
    };
    let provider = crypto_provider(kx);
    let verifier = ExpectedIdentityServerVerifier::new(
        cert.roots(),
        expected,
        provider.signature_verification_algorithms,
    )
    .map_err(err)?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(cert.chain().to_vec(), cert.key())
        .map_err(err)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.enable_sni = false;
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// Server config presenting `cert`; requires a client certificate from the same trust domain.
/// The default-policy config is cached on the certificate, so rotation naturally yields a
/// fresh one; other policies are built per call.
pub fn server_config(
    cert: &WorkloadCertificate,
    kx: KeyExchange,
) -> Result<Arc<ServerConfig>, TlsError> {
    match kx {
        KeyExchange::Default => cert.cached_server_config(|| build_server_config(cert, kx)),
        KeyExchange::PostQuantumOnly => build_server_config(cert, kx),
    }
}

fn build_server_config(
    cert: &WorkloadCertificate,
    kx: KeyExchange,
) -> Result<Arc<ServerConfig>, TlsError> {
    let err = |source| TlsError::Config {
        identity: cert.identity().clone(),
        source,
    };
    let provider = crypto_provider(kx);
    let verifier = TrustDomainClientVerifier::new(
        cert.roots(),
        cert.identity().trust_domain().to_owned(),
        provider.signature_verification_algorithms,
    )
    .map_err(err)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(err)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(cert.chain().to_vec(), cert.key())
        .map_err(err)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}
