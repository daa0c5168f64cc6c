//! Where the tunnel's certificates come from: the Istio CA API at `CA_ADDRESS`, or with
//! `FAKE_CA=true` an in-process self-signed root (one tunnel only: peers would not trust it).

use std::sync::Arc;

use hbone::ca::{CaClient, CaClientConfig, CaError, CertificateFetcher, SelfSignedCa, TokenSource};

use crate::config::{CaSource, Config};

#[derive(Debug, thiserror::Error)]
pub enum CaSetupError {
    #[error(transparent)]
    Ca(#[from] CaError),
}

/// The certificate fetcher for `config`.
pub fn fetcher(config: &Config) -> Result<Arc<dyn CertificateFetcher>, CaSetupError> {
    match &config.ca {
        CaSource::Fake => Ok(Arc::new(SelfSignedCa::new(
            "ztunnel fake CA",
            config.secret_ttl,
        )?)),
        CaSource::Remote {
            address,
            root_cert,
            alt_hostname,
            token_file,
            headers,
        } => {
            let channel =
                hbone::ca::channel(address, root_cert.as_deref(), alt_hostname.as_deref())?;
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
