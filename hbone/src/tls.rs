//! rustls configuration for HBONE (spec §2.1): TLS 1.3 only, AES-GCM suites, ALPN `h2`,
//! client certificates required, no SNI, no resumption.
//!
//! Owns the crypto provider choice (aws-lc-rs, with X25519MLKEM768 available), the workload
//! certificate type, SAN extraction, and the two verifiers: the client accepts a server only if
//! its chain reaches our anchors *and* one SPIFFE SAN is among the identities expected for the
//! hop; the server accepts a client only if its chain reaches our anchors *and* one SPIFFE SAN
//! is in the server's own trust domain. Authorization beyond that is the caller's job.

mod certificate;
mod config;
mod san;
mod verifier;

pub use certificate::{CertificateError, WorkloadCertificate};
pub use config::{KeyExchange, TlsError, client_config, crypto_provider, server_config};
pub use san::{SanError, certificate_summary, spiffe_identities};
pub use verifier::{ExpectedIdentityServerVerifier, TrustDomainClientVerifier};

/// The only ALPN protocol HBONE speaks.
pub const ALPN_H2: &[u8] = b"h2";

#[cfg(test)]
mod tests;
