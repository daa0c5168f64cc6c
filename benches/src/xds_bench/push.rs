//! One full push, seen by the thinnest possible client: a raw delta ADS stream that asks for
//! every `Address` and only lets tonic decode the `DeltaDiscoveryResponse` envelope (the
//! resources stay opaque `Any` bytes). The time from the request to the whole response covers
//! the server's work (open the stream, diff the snapshot, build and encode the response) plus
//! HTTP/2 over loopback and the envelope decode; the size is the response's encoded length.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use xds::pb::envoy::config::core::v3::Node;
use xds::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds::type_url;

use super::clients;

/// A push: its wall time, its size and how many resources it carried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Push {
    pub(crate) time: Duration,
    pub(crate) bytes: usize,
    pub(crate) resources: usize,
}

/// Times the first `Address` response to a fresh stream of node `node`.
pub(crate) async fn full_push(addr: SocketAddr, node: usize, limit: Duration) -> Result<Push> {
    let channel = clients::endpoint(addr)?.connect().await?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(xds::client::MAX_MESSAGE_SIZE);
    let (tx, rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    tx.send(DeltaDiscoveryRequest {
        node: Some(Node {
            id: clients::node_id(node),
            ..Default::default()
        }),
        type_url: type_url::ADDRESS.into(),
        ..Default::default()
    })?;
    let response = tokio::time::timeout(limit, async {
        let mut stream = client
            .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await?
            .into_inner();
        stream.message().await
    })
    .await
    .context("no push in time")??
    .context("the server closed the stream")?;
    let time = start.elapsed();
    Ok(Push {
        time,
        bytes: response.encoded_len(),
        resources: response.resources.len(),
    })
}
