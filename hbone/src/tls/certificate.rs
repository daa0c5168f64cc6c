//! A workload's certificate as returned by the CA: private key, leaf, intermediates, and the
//! trust bundle (several roots allowed), with the derived identity and validity.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::san::{self, SanError};
use crate::identity::Identity;

/// Why a CA response could not become a usable certificate.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("certificate chain for {identity} has {len} elements; need leaf and root bundle")]
    ChainTooShort { identity: Identity, len: usize },
    #[error("certificate chain element {index} for {identity} is not PEM: {reason}")]
    Pem {
        identity: Identity,
        index: usize,
        reason: String,
    },
    #[error("leaf certificate for {expected} carries identity {actual:?}")]
    WrongIdentity {
        expected: Identity,
        actual: Option<Identity>,
    },
    #[error("certificate for {identity}: {source}")]
    San {
        identity: Identity,
        #[source]
        source: SanError,
    },
}

/// Leaf + intermediates + roots + key for one identity. Immutable; rotation swaps the whole value.
pub struct WorkloadCertificate {
    identity: Identity,
    chain: Vec<CertificateDer<'static>>,
    roots: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    not_before: SystemTime,
    not_after: SystemTime,
    serial: String,
    server_config: OnceLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for WorkloadCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCertificate")
            .field("identity", &self.identity)
            .field("serial", &self.serial)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("chain_len", &self.chain.len())
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

fn pem_certs(
    identity: &Identity,
    index: usize,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertificateError::Pem {
            identity: identity.clone(),
            index,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertificateError::Pem {
            identity: identity.clone(),
            index,
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

impl WorkloadCertificate {
    /// Builds from a CA response: `chain` is leaf, intermediates…, and last the root bundle
    /// (spec §6). The leaf's first SPIFFE SAN must equal `expected`.
    pub fn from_ca_response(
        expected: &Identity,
        key_pkcs8_der: Vec<u8>,
        chain: &[String],
    ) -> Result<Self, CertificateError> {
        let Some((root_pem, rest)) = chain.split_last().filter(|(_, rest)| !rest.is_empty()) else {
            return Err(CertificateError::ChainTooShort {
                identity: expected.clone(),
                len: chain.len(),
            });
        };
        let mut certs = Vec::with_capacity(rest.len());
        for (index, pem) in rest.iter().enumerate() {
            certs.extend(pem_certs(expected, index, pem)?);
        }
        let roots = pem_certs(expected, chain.len() - 1, root_pem)?;
        Self::from_der(expected, key_pkcs8_der, certs, roots)
    }

    /// Builds from DER parts; `chain[0]` is the leaf.
    pub fn from_der(
        expected: &Identity,
        key_pkcs8_der: Vec<u8>,
        chain: Vec<CertificateDer<'static>>,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, CertificateError> {
        let san_err = |source| CertificateError::San {
            identity: expected.clone(),
            source,
        };
        let Some(leaf) = chain.first() else {
            return Err(CertificateError::ChainTooShort {
                identity: expected.clone(),
                len: 0,
            });
        };
        let actual = san::spiffe_identities(leaf)
            .map_err(san_err)?
            .into_iter()
            .next();
        if actual.as_ref() != Some(expected) {
            return Err(CertificateError::WrongIdentity {
                expected: expected.clone(),
                actual,
            });
        }
        let (not_before, not_after) = san::validity(leaf).map_err(san_err)?;
        let serial = san::serial(leaf).map_err(san_err)?;
        Ok(Self {
            identity: expected.clone(),
            chain,
            roots,
            key: PrivatePkcs8KeyDer::from(key_pkcs8_der),
            not_before,
            not_after,
            serial,
            server_config: OnceLock::new(),
        })
    }

    /// The identity in the leaf's SAN.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    /// Leaf first, then intermediates (what we present in the handshake).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
    /// Trust anchors from the CA response; they validate peers in both directions.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }
    /// The private key (PKCS#8, kept in memory only).
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
    /// Serial of the leaf (decimal).
    pub fn serial(&self) -> &str {
        &self.serial
    }
    /// Start of validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }
    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
    /// Whether the leaf has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.not_after
    }
    /// Half-life refresh point: `not_before + (not_after − not_before) / 2` (spec §6).
    pub fn refresh_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        self.not_before + life / 2
    }

    pub(crate) fn cached_server_config<E>(
        &self,
        build: impl FnOnce() -> Result<Arc<ServerConfig>, E>,
    ) -> Result<Arc<ServerConfig>, E> {
        if let Some(config) = self.server_config.get() {
            return Ok(config.clone());
        }
        let config = build()?;
        Ok(self.server_config.get_or_init(|| config).clone())
    }
}
