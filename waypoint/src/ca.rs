//! Where the waypoint's certificate comes from: the Istio CA API (authenticated with
//! `AUTH_TOKEN`, asking for the waypoint's own identity only), or a self-signed root with
//! `FAKE_CA=true`.

use std::sync::Arc;
use std::time::Duration;

use hbone::ca::{CaClient, CaClientConfig, CaError, CertificateFetcher, SelfSignedCa, TokenSource};

use crate::config::{CaSource, Config};

/// Requested certificate lifetime.
const VALIDITY: Duration = Duration::from_secs(24 * 3600);

pub fn fetcher(config: &Config) -> Result<Arc<dyn CertificateFetcher>, CaError> {
    match &config.ca {
        CaSource::Fake => Ok(Arc::new(SelfSignedCa::new("waypoint fake CA", VALIDITY)?)),
        CaSource::Remote {
            address,
            root_cert,
            alt_hostname,
        } => {
            let channel =
                hbone::ca::channel(address, root_cert.as_deref(), alt_hostname.as_deref())?;
            Ok(Arc::new(CaClient::new(
                channel,
                CaClientConfig {
                    token: config
                        .token_file
                        .clone()
                        .map_or(TokenSource::None, TokenSource::File),
                    cluster_id: config.cluster_id.clone(),
                    extra_headers: Vec::new(),
                    validity: VALIDITY,
                    impersonate: false,
                },
            )))
        }
    }
}
