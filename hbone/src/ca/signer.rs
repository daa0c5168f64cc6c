//! The signing half of the CA: turns an authorized CSR into a chain `[leaf, intermediates…, roots]`.
//!
//! Only the CSR's public key is used; everything else in the leaf (SAN, usages, validity) is
//! set here, after checking that the CSR asks for exactly the authorized identity.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    SanType, SerialNumber,
};

use super::CaError;
use crate::identity::Identity;

/// A CA key plus the chain it hands out. Cheap to share behind an `Arc`.
pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
    /// PEM intermediates between the leaf and the roots (empty when the issuer is a root).
    intermediates: Vec<String>,
    /// PEM bundle of all roots (last chain element).
    roots_pem: String,
    max_validity: Duration,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("intermediates", &self.intermediates.len())
            .field("max_validity", &self.max_validity)
            .finish_non_exhaustive()
    }
}

/// How far back `not_before` is set, to tolerate clock skew between peers.
const BACKDATE: Duration = Duration::from_secs(1);

impl Signer {
    /// A signer whose issuer is a brand-new self-signed ECDSA P-256 root.
    pub fn self_signed_root(common_name: &str, max_validity: Duration) -> Result<Self, CaError> {
        let err = |e: rcgen::Error| CaError::CaMaterial(e.to_string());
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, common_name);
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // Ten years from an hour ago (clock skew), not rcgen's defaults of 1975 to 4096.
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(10 * 365 * 86400)).into();
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            intermediates: Vec::new(),
            roots_pem: cert.pem(),
            max_validity,
        })
    }

    /// A signer from existing PEM material: issuer certificate and key, the intermediates
    /// above the issuer (if the issuer is not itself a root, include it here first), and the
    /// root bundle.
    pub fn from_pem(
        issuer_cert_pem: &str,
        issuer_key_pem: &str,
        intermediates: Vec<String>,
        roots_pem: String,
        max_validity: Duration,
    ) -> Result<Self, CaError> {
        let err = |e: rcgen::Error| CaError::CaMaterial(e.to_string());
        let key = KeyPair::from_pem(issuer_key_pem).map_err(err)?;
        let issuer = Issuer::from_ca_cert_pem(issuer_cert_pem, key).map_err(err)?;
        Ok(Self {
            issuer,
            intermediates,
            roots_pem,
            max_validity,
        })
    }

    /// The PEM root bundle (what clients trust).
    pub fn roots_pem(&self) -> &str {
        &self.roots_pem
    }

    /// Signs `csr_pem` for `identity`, valid from now (minus a second) for
    /// `min(validity, max_validity)`.
    pub fn sign(
        &self,
        csr_pem: &str,
        identity: &Identity,
        validity: Duration,
    ) -> Result<Vec<String>, CaError> {
        let now = SystemTime::now();
        let validity = validity.min(self.max_validity);
        self.sign_window(csr_pem, identity, now - BACKDATE, now + validity)
    }

    /// Signs with an explicit validity window (tests use this for expired certificates).
    pub fn sign_window(
        &self,
        csr_pem: &str,
        identity: &Identity,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Vec<String>, CaError> {
        let err = |e: rcgen::Error| CaError::Sign {
            identity: identity.clone(),
            reason: e.to_string(),
        };
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(err)?;
        let uri = identity.to_uri();
        let asks_exactly = matches!(
            csr.params.subject_alt_names.as_slice(),
            [SanType::URI(u)] if u.as_str() == uri
        );
        if !asks_exactly {
            return Err(CaError::CsrIdentity {
                identity: identity.clone(),
            });
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(err)?)];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let mut serial = rand::random::<[u8; 16]>();
        serial[0] = (serial[0] & 0x7f) | 0x01; // positive, no leading zero byte
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let leaf = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(err)?;
        let mut chain = Vec::with_capacity(self.intermediates.len() + 2);
        chain.push(leaf.pem());
        chain.extend(self.intermediates.iter().cloned());
        chain.push(self.roots_pem.clone());
        Ok(chain)
    }
}
