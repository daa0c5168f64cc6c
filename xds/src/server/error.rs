//! Errors of the ADS server: why a stream is ended, and why serving failed.

use std::net::SocketAddr;

/// Why a stream is refused or ended. Each maps to the gRPC status the client sees.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("the stream ended before its first request")]
    NoFirstRequest,
    #[error("the first request of a stream must carry a node with an id")]
    MissingNode,
    #[error("a request without a type_url")]
    MissingTypeUrl,
    #[error("more than {max} resource types on one stream")]
    TooManyTypes { max: usize },
}

impl From<StreamError> for tonic::Status {
    fn from(e: StreamError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

/// Serving the ADS service failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("xDS server on {addr:?}: {source}")]
    Transport {
        addr: Option<SocketAddr>,
        #[source]
        source: tonic::transport::Error,
    },
}
