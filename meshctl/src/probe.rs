//! A minimal HTTP/1.1 GET made from inside a network namespace: how the demo (and tests) drive traffic as a pod.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub latency: Duration,
}

/// GET `/` from `addr`, connecting from namespace `netns`.
pub fn http_get(netns: &str, addr: SocketAddr, timeout: Duration) -> Result<Reply, Error> {
    http_get_path(netns, addr, "/", timeout)
}

/// `GET path` from inside `netns`.
pub fn http_get_path(
    netns: &str,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<Reply, Error> {
    let fail = |detail: String| Error::Command {
        command: format!("GET http://{addr}{path} from {netns}"),
        detail,
    };
    let start = Instant::now();
    let mut stream = crate::netns::run_in(netns, || TcpStream::connect_timeout(&addr, timeout))?
        .map_err(|e| fail(e.to_string()))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| fail(e.to_string()))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: meshctl\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| fail(e.to_string()))?;
    let latency = start.elapsed();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("no HTTP response".into()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail(format!("bad status line {:?}", head.lines().next())))?;
    Ok(Reply {
        status,
        body: body.to_string(),
        latency,
    })
}

/// The `q`-quantile (0..=1) of durations, by nearest rank.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut v = samples.to_vec();
    v.sort();
    let idx = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[idx]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&ms, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&ms, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&ms, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
