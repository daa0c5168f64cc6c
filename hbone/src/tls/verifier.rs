//! The two certificate verifiers of spec §2.1.
//!
//! Both validate the chain against the anchors from our own CA response with rustls-webpki,
//! then apply the SPIFFE check: the client wants one of the hop's expected identities, the
//! server wants the client in its own trust domain.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};

use super::san::spiffe_identities;
use crate::identity::Identity;

/// Anchors + algorithms shared by both verifiers.
#[derive(Debug)]
struct Anchors {
    anchors: Vec<TrustAnchor<'static>>,
    subjects: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl Anchors {
    fn new(
        roots: &[CertificateDer<'static>],
        algs: WebPkiSupportedAlgorithms,
    ) -> Result<Self, Error> {
        let mut anchors = Vec::with_capacity(roots.len());
        for root in roots {
            let anchor = webpki::anchor_from_trusted_cert(root)
                .map_err(|e| Error::InvalidCertificate(other(e)))?
                .to_owned();
            anchors.push(anchor);
        }
        // A trust anchor's subject is the *contents* of its Name; the CertificateRequest hint must carry the
        // whole DER Name (a SEQUENCE), or strict clients such as OpenSSL refuse it (`parse_ca_names`).
        let subjects = anchors
            .iter()
            .map(|a| DistinguishedName::in_sequence(a.subject.as_ref()))
            .collect();
        Ok(Self {
            anchors,
            subjects,
            algs,
        })
    }

    /// Chain validation; returns the SPIFFE identities of the leaf.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<Vec<Identity>, Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| Error::InvalidCertificate(map_webpki(e)))?;
        cert.verify_for_usage(
            self.algs.all,
            &self.anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(|e| Error::InvalidCertificate(map_webpki(e)))?;
        spiffe_identities(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))
    }
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> CertificateError {
    CertificateError::Other(OtherError(Arc::new(e)))
}

fn map_webpki(e: webpki::Error) -> CertificateError {
    use webpki::Error as W;
    match e {
        W::CertExpired { .. } => CertificateError::Expired,
        W::CertNotValidYet { .. } => CertificateError::NotValidYet,
        W::UnknownIssuer => CertificateError::UnknownIssuer,
        W::BadDer | W::BadDerTime => CertificateError::BadEncoding,
        W::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        e => other(e),
    }
}

/// Client side: the server must present one of the hop's expected identities.
#[derive(Debug)]
pub struct ExpectedIdentityServerVerifier {
    anchors: Anchors,
    expected: Vec<Identity>,
}

impl ExpectedIdentityServerVerifier {
    /// `roots` from our CA response; `expected` = the hop's identity list (spec §2.1 table).
    pub fn new(
        roots: &[CertificateDer<'static>],
        expected: Vec<Identity>,
        algs: WebPkiSupportedAlgorithms,
    ) -> Result<Self, Error> {
        Ok(Self {
            anchors: Anchors::new(roots, algs)?,
            expected,
        })
    }
}

impl ServerCertVerifier for ExpectedIdentityServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let ids = self.anchors.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        if ids.iter().any(|id| self.expected.contains(id)) {
            return Ok(ServerCertVerified::assertion());
        }
        tracing::debug!(peer.identities = ?ids, expected = ?self.expected, "server identity mismatch");
        Err(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.anchors.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.anchors.algs.supported_schemes()
    }
}

/// Server side: a client certificate is mandatory and must be in `trust_domain`.
#[derive(Debug)]
pub struct TrustDomainClientVerifier {
    anchors: Anchors,
    trust_domain: String,
}

impl TrustDomainClientVerifier {
    /// `trust_domain` is the one of the server's own leaf.
    pub fn new(
        roots: &[CertificateDer<'static>],
        trust_domain: String,
        algs: WebPkiSupportedAlgorithms,
    ) -> Result<Self, Error> {
        Ok(Self {
            anchors: Anchors::new(roots, algs)?,
            trust_domain,
        })
    }
}

impl ClientCertVerifier for TrustDomainClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.anchors.subjects
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let ids = self.anchors.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        )?;
        if ids.iter().any(|id| id.trust_domain() == self.trust_domain) {
            return Ok(ClientCertVerified::assertion());
        }
        tracing::debug!(peer.identities = ?ids, trust_domain = %self.trust_domain, "client trust domain mismatch");
        Err(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.anchors.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.anchors.algs.supported_schemes()
    }
}
