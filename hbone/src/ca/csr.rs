//! CSR generation: fresh ECDSA P-256 key, SHA-256 signature, empty subject, one URI SAN.

use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};

use super::CaError;
use crate::identity::Identity;

/// A PEM CSR and the PKCS#8 DER private key it was made with (kept in memory only).
pub struct Csr {
    /// PEM `CERTIFICATE REQUEST`.
    pub pem: String,
    /// PKCS#8 DER of the new private key.
    pub key_pkcs8_der: Vec<u8>,
}

/// Generates a new key and a CSR for `identity` (spec §6).
pub fn generate_csr(identity: &Identity) -> Result<Csr, CaError> {
    let err = |e: rcgen::Error| CaError::Csr {
        identity: identity.clone(),
        reason: e.to_string(),
    };
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(identity.to_uri().try_into().map_err(err)?)];
    let csr = params.serialize_request(&key).map_err(err)?;
    Ok(Csr {
        pem: csr.pem().map_err(err)?,
        key_pkcs8_der: key.serialize_der(),
    })
}
