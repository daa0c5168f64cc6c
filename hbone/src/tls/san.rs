//! Reads SPIFFE identities and validity out of DER certificates (x509-parser).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::Identity;

/// Why a certificate could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SanError {
    #[error("certificate is not valid DER X.509: {0}")]
    Parse(String),
    #[error("certificate subjectAltName extension is malformed: {0}")]
    Extension(String),
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, SanError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| SanError::Parse(e.to_string()))?;
    Ok(cert)
}

/// All URI SANs of `der` that parse as SPIFFE identities, in certificate order.
/// Non-SPIFFE URIs are skipped; a peer's identity is the first element (spec §2.1).
pub fn spiffe_identities(der: &[u8]) -> Result<Vec<Identity>, SanError> {
    let cert = parse(der)?;
    let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| SanError::Extension(e.to_string()))?
    else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.parse::<Identity>().ok(),
            _ => None,
        })
        .collect())
}

/// `(not_before, not_after)` of `der`.
pub(crate) fn validity(der: &[u8]) -> Result<(SystemTime, SystemTime), SanError> {
    let cert = parse(der)?;
    let to_time = |secs: i64| {
        u64::try_from(secs)
            .map(|s| UNIX_EPOCH + Duration::from_secs(s))
            .map_err(|_| SanError::Parse(format!("validity time {secs} before 1970")))
    };
    Ok((
        to_time(cert.validity().not_before.timestamp())?,
        to_time(cert.validity().not_after.timestamp())?,
    ))
}

/// Serial number in decimal, as upstream ztunnel's config dump writes it and istioctl parses it.
pub(crate) fn serial(der: &[u8]) -> Result<String, SanError> {
    Ok(parse(der)?.tbs_certificate.serial.to_string())
}

/// Serial number (decimal) and validity window of a DER certificate, for diagnostics.
pub fn certificate_summary(der: &[u8]) -> Result<(String, SystemTime, SystemTime), SanError> {
    let (from, to) = validity(der)?;
    Ok((serial(der)?, from, to))
}
