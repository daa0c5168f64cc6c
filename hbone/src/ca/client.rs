//! The CA client: one `CreateCertificate` call per certificate, with a fresh key each time.

use std::path::PathBuf;
use std::time::Duration;

use proto::istio::v1::auth::IstioCertificateRequest;
use proto::istio::v1::auth::istio_certificate_service_client::IstioCertificateServiceClient;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::{BoxFuture, CaError, CertificateFetcher, IMPERSONATED_IDENTITY, generate_csr};
use crate::identity::Identity;
use crate::tls::WorkloadCertificate;

/// Where the bearer token comes from. A file is re-read per request (projected tokens rotate).
#[derive(Debug, Clone, Default)]
pub enum TokenSource {
    /// No `authorization` header.
    #[default]
    None,
    /// A fixed token.
    Static(String),
    /// Read from this path on every request (e.g. `/var/run/secrets/tokens/istio-token`).
    File(PathBuf),
}

/// CA client settings (spec §6 and §13).
#[derive(Debug, Clone)]
pub struct CaClientConfig {
    /// Bearer token for `authorization`.
    pub token: TokenSource,
    /// `clusterid` header value.
    pub cluster_id: String,
    /// Extra headers (`CA_HEADER_*`).
    pub extra_headers: Vec<(String, String)>,
    /// Requested validity (`SECRET_TTL`, default 24 h).
    pub validity: Duration,
    /// Shared mode: ask for identities other than our own via `ImpersonatedIdentity`.
    pub impersonate: bool,
}

impl Default for CaClientConfig {
    fn default() -> Self {
        Self {
            token: TokenSource::None,
            cluster_id: "Kubernetes".into(),
            extra_headers: Vec::new(),
            validity: Duration::from_secs(24 * 3600),
            impersonate: true,
        }
    }
}

/// A TLS gRPC channel to the CA (`CA_ADDRESS`), trusting `root_pem`, verifying `domain`
/// (`ALT_CA_HOSTNAME`) or the address's host. Connects lazily.
pub fn tls_channel(
    address: &str,
    root_pem: &str,
    domain: Option<&str>,
) -> Result<Channel, CaError> {
    let err = |e: tonic::transport::Error| CaError::Channel {
        address: address.to_owned(),
        reason: e.to_string(),
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(root_pem));
    if let Some(domain) = domain {
        tls = tls.domain_name(domain);
    }
    let endpoint = Endpoint::from_shared(address.to_owned())
        .map_err(err)?
        .tls_config(tls)
        .map_err(err)?;
    Ok(endpoint.connect_lazy())
}

/// Client of `IstioCertificateService`.
#[derive(Debug, Clone)]
pub struct CaClient {
    client: IstioCertificateServiceClient<Channel>,
    config: CaClientConfig,
}

impl CaClient {
    /// Wraps a channel (see [`tls_channel`]).
    pub fn new(channel: Channel, config: CaClientConfig) -> Self {
        Self {
            client: IstioCertificateServiceClient::new(channel),
            config,
        }
    }

    async fn token(&self) -> Result<Option<String>, CaError> {
        match &self.config.token {
            TokenSource::None => Ok(None),
            TokenSource::Static(t) => Ok(Some(t.clone())),
            TokenSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map(|t| Some(t.trim().to_owned()))
                .map_err(|e| CaError::Token {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }),
        }
    }

    fn request(
        &self,
        identity: &Identity,
        csr: String,
        token: Option<String>,
    ) -> Result<tonic::Request<IstioCertificateRequest>, CaError> {
        let bad = |what: &str| CaError::Csr {
            identity: identity.clone(),
            reason: format!("invalid header {what}"),
        };
        let metadata = self.config.impersonate.then(|| prost_types::Struct {
            fields: [(
                IMPERSONATED_IDENTITY.to_owned(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue(identity.to_uri())),
                },
            )]
            .into_iter()
            .collect(),
        });
        let validity_duration = i64::try_from(self.config.validity.as_secs()).unwrap_or(i64::MAX);
        let mut request = tonic::Request::new(IstioCertificateRequest {
            csr,
            validity_duration,
            metadata,
        });
        let md = request.metadata_mut();
        if let Some(token) = token {
            let value = AsciiMetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| bad("authorization"))?;
            md.insert("authorization", value);
        }
        let cluster = AsciiMetadataValue::try_from(self.config.cluster_id.as_str())
            .map_err(|_| bad("clusterid"))?;
        md.insert("clusterid", cluster);
        for (k, v) in &self.config.extra_headers {
            let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|_| bad(k))?;
            let value = AsciiMetadataValue::try_from(v.as_str()).map_err(|_| bad(k))?;
            md.insert(key, value);
        }
        Ok(request)
    }

    /// Requests a certificate for `identity`; checks the leaf carries exactly that identity.
    pub async fn fetch_certificate(
        &self,
        identity: &Identity,
    ) -> Result<WorkloadCertificate, CaError> {
        let csr = generate_csr(identity)?;
        let token = self.token().await?;
        let request = self.request(identity, csr.pem, token)?;
        let response = self
            .client
            .clone()
            .create_certificate(request)
            .await
            .map_err(|status| CaError::Rpc {
                identity: identity.clone(),
                status: Box::new(status),
            })?
            .into_inner();
        WorkloadCertificate::from_ca_response(identity, csr.key_pkcs8_der, &response.cert_chain)
            .map_err(|source| CaError::Response {
                identity: identity.clone(),
                source,
            })
    }
}

impl CertificateFetcher for CaClient {
    fn fetch<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> BoxFuture<'a, Result<WorkloadCertificate, CaError>> {
        Box::pin(self.fetch_certificate(identity))
    }
}
