//! The channel endpoint to an xDS server as the data-plane binaries configure it: `http://` is
//! plaintext; anything else is TLS verified against a root file (`XDS_ROOT_CA`, default
//! `/var/run/secrets/istio/root-cert.pem`), optionally for another name (`ALT_XDS_HOSTNAME`).
//! TCP_NODELAY, a 5 s connect budget and HTTP/2 keep-alive every 30 s, also when idle.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Why the xDS server address is unusable.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("XDS_ADDRESS={address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("reading XDS_ROOT_CA {path}: {source}")]
    Root {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The endpoint for `address`.
pub fn endpoint(
    address: &str,
    root_cert: Option<&Path>,
    alt_hostname: Option<&str>,
) -> Result<Endpoint, EndpointError> {
    let bad = |reason: String| EndpointError::Address {
        address: address.to_owned(),
        reason,
    };
    let endpoint = Endpoint::from_shared(address.to_owned())
        .map_err(|e| bad(e.to_string()))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    if address.starts_with("http://") {
        return Ok(endpoint);
    }
    let path = root_cert.unwrap_or(Path::new("/var/run/secrets/istio/root-cert.pem"));
    let root = std::fs::read_to_string(path).map_err(|source| EndpointError::Root {
        path: path.display().to_string(),
        source,
    })?;
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(root));
    if let Some(h) = alt_hostname {
        tls = tls.domain_name(h);
    }
    endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))
}
