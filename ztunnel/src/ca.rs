//! Where the tunnel's certificates come from: the Istio CA API at `CA_ADDRESS`, or with
//! `FAKE_CA=true` an in-process self-signed root (one tunnel only: peers would not trust it).

use std::sync::Arc;
use std::time::Duration;

use hbone::Identity;
use hbone::ca::{
    BoxFuture, CaClient, CaClientConfig, CaError, CertificateFetcher, Signer, TokenSource,
    generate_csr, tls_channel,
};
use hbone::tls::WorkloadCertificate;

use crate::config::{CaSource, Config};

#[derive(Debug, thiserror::Error)]
pub enum CaSetupError {
    #[error("reading CA root {path}: {source}")]
    Root {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("CA address {address}: {reason}")]
    Address { address: String, reason: String },
    #[error(transparent)]
    Ca(#[from] CaError),
}

/// Signs our own CSRs with a root generated at start-up.
struct FakeCa {
    signer: Signer,
    validity: Duration,
}

impl CertificateFetcher for FakeCa {
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

/// The certificate fetcher for `config`.
pub fn fetcher(config: &Config) -> Result<Arc<dyn CertificateFetcher>, CaSetupError> {
    match &config.ca {
        CaSource::Fake => Ok(Arc::new(FakeCa {
            signer: Signer::self_signed_root(
                "ztunnel fake CA",
                Duration::from_secs(10 * 365 * 86400),
            )?,
            validity: config.secret_ttl,
        })),
        CaSource::Remote {
            address,
            root_cert,
            alt_hostname,
            token_file,
            headers,
        } => {
            let channel = if address.starts_with("http://") {
                tonic::transport::Endpoint::from_shared(address.clone())
                    .map_err(|e| CaSetupError::Address {
                        address: address.clone(),
                        reason: e.to_string(),
                    })?
                    .connect_lazy()
            } else {
                let path = root_cert
                    .clone()
                    .unwrap_or_else(|| "/var/run/secrets/istio/root-cert.pem".into());
                let root = std::fs::read_to_string(&path).map_err(|source| CaSetupError::Root {
                    path: path.display().to_string(),
                    source,
                })?;
                tls_channel(address, &root, alt_hostname.as_deref())?
            };
            let client = CaClient::new(
                channel,
                CaClientConfig {
                    token: token_file
                        .clone()
                        .map_or(TokenSource::None, TokenSource::File),
                    cluster_id: config.cluster_id.clone(),
                    extra_headers: headers.clone(),
                    validity: config.secret_ttl,
                    impersonate: true,
                },
            );
            Ok(Arc::new(client))
        }
    }
}
