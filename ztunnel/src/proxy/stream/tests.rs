//! Byte accounting of a splice: each byte moved is counted once, in its direction.

#![allow(clippy::unwrap_used)]

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::telemetry::exposition::Format;
use crate::telemetry::metrics::{Reporter, SecurityPolicy};
use crate::telemetry::{CommonTrafficLabels, ConnectionAddrs, Metrics};

fn counter(text: &str, family: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{family}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {family} in {text}"))
}

#[tokio::test]
async fn a_splice_counts_each_byte_once_in_its_direction() {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry, "test"));
    let labels = CommonTrafficLabels {
        reporter: Reporter::Source,
        connection_security_policy: SecurityPolicy::MutualTls,
        ..Default::default()
    };
    let addrs = ConnectionAddrs {
        src: "10.0.0.1:40000".parse().unwrap(),
        dst: "10.0.0.2:80".parse().unwrap(),
        dst_hbone: None,
    };
    let recorder = Arc::new(ConnectionRecorder::new(metrics, labels, addrs));
    let (mut app_client, proxy_client) = tokio::io::duplex(4096);
    let (proxy_upstream, mut app_server) = tokio::io::duplex(4096);
    let copy = tokio::spawn({
        let recorder = recorder.clone();
        async move { copy_counted(&recorder, proxy_client, proxy_upstream, None).await }
    });
    let request = vec![7u8; 100_000];
    let server = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while got.len() < 100_000 {
            let n = app_server.read(&mut buf).await.unwrap();
            assert!(n > 0, "request cut short at {}", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        app_server.write_all(&[9u8; 30_000]).await.unwrap();
        app_server.shutdown().await.unwrap();
        got.len()
    });
    app_client.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    app_client.read_to_end(&mut response).await.unwrap();
    app_client.shutdown().await.unwrap();
    assert_eq!(server.await.unwrap(), 100_000);
    assert_eq!(response.len(), 30_000);
    assert_eq!(copy.await.unwrap().unwrap(), (100_000, 30_000));
    let text = Format::OpenMetrics.encode(&registry).unwrap();
    assert_eq!(counter(&text, "istio_tcp_received_bytes_total"), 100_000);
    assert_eq!(counter(&text, "istio_tcp_sent_bytes_total"), 30_000);
}
