//! Pieces every CA client needs besides the client itself: a self-signed in-process CA
//! (`FAKE_CA=true`: one process only, peers would not trust it) and the channel to a CA address
//! (`http://` = plaintext, otherwise TLS verified against a root file).

use std::path::Path;
use std::time::Duration;

use tonic::transport::Channel;

use super::{BoxFuture, CaError, CertificateFetcher, Signer, generate_csr, tls_channel};
use crate::identity::Identity;
use crate::tls::WorkloadCertificate;

/// Signs our own CSRs with a root generated at start-up.
pub struct SelfSignedCa {
    signer: Signer,
    validity: Duration,
}

impl SelfSignedCa {
    /// A new root named `name`, issuing certificates valid for `validity`.
    pub fn new(name: &str, validity: Duration) -> Result<Self, CaError> {
        Ok(Self {
            signer: Signer::self_signed_root(name, Duration::from_secs(10 * 365 * 86400))?,
            validity,
        })
    }
}

impl CertificateFetcher for SelfSignedCa {
    fn fetch<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> BoxFuture<'a, Result<WorkloadCertificate, CaError>> {
        Box::pin(async move {
            let csr = generate_csr(identity)?;
            let chain = self.signer.sign(&csr.pem, identity, self.validity)?;
            WorkloadCertificate::from_ca_response(identity, csr.key_pkcs8_der, &chain).map_err(
                |source| CaError::Response {
                    identity: identity.clone(),
                    source,
                },
            )
        })
    }
}

/// A lazy channel to `address`: plaintext for `http://`, else TLS trusting the PEM root at
/// `root` (default `/var/run/secrets/istio/root-cert.pem`), verifying `alt_hostname` if given.
pub fn channel(
    address: &str,
    root: Option<&Path>,
    alt_hostname: Option<&str>,
) -> Result<Channel, CaError> {
    if address.starts_with("http://") {
        return Ok(tonic::transport::Endpoint::from_shared(address.to_owned())
            .map_err(|e| CaError::Channel {
                address: address.to_owned(),
                reason: e.to_string(),
            })?
            .connect_lazy());
    }
    let path = root.unwrap_or(Path::new("/var/run/secrets/istio/root-cert.pem"));
    let pem = std::fs::read_to_string(path).map_err(|e| CaError::Channel {
        address: address.to_owned(),
        reason: format!("reading root {}: {e}", path.display()),
    })?;
    tls_channel(address, &pem, alt_hostname)
}
