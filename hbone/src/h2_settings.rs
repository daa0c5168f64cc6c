//! HTTP/2 parameters of spec §2.2, and the PING keepalive both sides run.

use std::time::Duration;

use h2::{Ping, PingPong};

/// Tunables shared by the client and server sides.
#[derive(Debug, Clone)]
pub struct H2Settings {
    /// Per-stream receive window (`HTTP2_STREAM_WINDOW_SIZE`, 4 MiB).
    pub stream_window: u32,
    /// Connection receive window (`HTTP2_CONNECTION_WINDOW_SIZE`, 16 MiB).
    pub connection_window: u32,
    /// Largest DATA frame we accept (`HTTP2_FRAME_SIZE`, 1 MiB).
    pub max_frame_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE we advertise.
    pub max_header_list_size: u32,
    /// PING interval (10 s).
    pub ping_interval: Duration,
    /// No PONG within this tears the connection down (20 s).
    pub ping_timeout: Duration,
}

impl H2Settings {
    /// Client side: 4 MiB / 16 MiB windows, 1 MiB frames, header list ≤ 16 KiB.
    pub fn client() -> Self {
        Self {
            stream_window: 4 << 20,
            connection_window: 16 << 20,
            max_frame_size: 1 << 20,
            max_header_list_size: 16 << 10,
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(20),
        }
    }

    /// Server side: same windows and frames, header list 64 KiB.
    pub fn server() -> Self {
        Self {
            max_header_list_size: 64 << 10,
            ..Self::client()
        }
    }
}

/// Largest buffered, unsent DATA per stream.
pub(crate) const MAX_SEND_BUFFER: usize = 1 << 20;

/// Why the keepalive gave up.
#[derive(Debug, thiserror::Error)]
pub enum KeepaliveError {
    #[error("no PONG within {0:?}")]
    Timeout(Duration),
    #[error("PING failed: {0}")]
    H2(#[from] h2::Error),
}

/// Sends a PING every `interval` and waits up to `timeout` for the PONG. Returns only on
/// failure; callers race it against the connection.
pub(crate) async fn keepalive(
    mut ping_pong: PingPong,
    interval: Duration,
    timeout: Duration,
) -> KeepaliveError {
    loop {
        tokio::time::sleep(interval).await;
        let pong = async {
            ping_pong.send_ping(Ping::opaque())?;
            futures_util::future::poll_fn(|cx| ping_pong.poll_pong(cx)).await
        };
        match tokio::time::timeout(timeout, pong).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return KeepaliveError::H2(e),
            Err(_) => return KeepaliveError::Timeout(timeout),
        }
    }
}
