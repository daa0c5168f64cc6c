//! The backend every target reaches (`waypoint-bench backend`, a child process of the bench): a
//! minimal HTTP/1.1 keep-alive server on one tokio thread. Every request gets `200` with a fixed
//! 100-byte body, except `GET /route-check`, whose body says which `x-bench-route` value the
//! request carried (so the bench can check that a proxy applied the route's header filter), and
//! `GET /backend-stats`, the counters of `backend/stats.rs`.
//! Requests may be pipelined; bodies are skipped by `Content-Length`; chunked request bodies are
//! refused (no client of the bench sends them). It prints `listening <addr>` once bound.

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod stats;

pub(crate) use stats::Stats;
use stats::{ACCEPTED, HEAD_BYTES, READS, REQUESTS, add};

/// The header the route adds, and the path that reports it.
pub(crate) const ROUTE_HEADER: &str = "x-bench-route";
pub(crate) const ROUTE_CHECK_PATH: &str = "/route-check";
pub(crate) const STATS_PATH: &str = "/backend-stats";
/// The body of every other response: 100 bytes.
const BODY: &[u8; 100] =
    b"waypoint-bench backend: a fixed body of one hundred bytes, the same for every target...............\n";
/// A request head larger than this closes the connection.
const MAX_HEAD: usize = 64 * 1024;

/// Serves on `listen` until killed.
pub(crate) fn serve(listen: SocketAddr) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        println!("listening {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        loop {
            let (stream, _) = listener.accept().await?;
            add(&ACCEPTED, 1);
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = connection(stream).await;
            });
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    Fixed,
    RouteCheck,
    Stats,
}

/// One parsed request head.
#[derive(Debug, PartialEq)]
struct Head {
    /// Bytes of head + body.
    len: usize,
    head_len: usize,
    path: Path,
    route_header: Option<String>,
    close: bool,
    chunked: bool,
}

/// Parses the request at the start of `buf`, if all of it (head and body) is there.
fn parse(buf: &[u8]) -> Option<Head> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let mut parts = request_line.split(' ');
    let _method = parts.next()?;
    let path = parts.next()?;
    let http10 = parts.next() == Some("HTTP/1.0");
    let mut head = Head {
        len: end,
        head_len: end,
        path: match path {
            ROUTE_CHECK_PATH => Path::RouteCheck,
            STATS_PATH => Path::Stats,
            _ => Path::Fixed,
        },
        route_header: None,
        close: http10,
        chunked: false,
    };
    let mut body = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            body = value.parse().unwrap_or(0);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case(ROUTE_HEADER) {
            head.route_header = Some(value.to_owned());
        }
    }
    head.len = end.checked_add(body)?;
    (buf.len() >= head.len).then_some(head)
}

fn respond(head: &Head, out: &mut Vec<u8>) {
    if head.chunked {
        out.extend_from_slice(
            b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let body: Vec<u8>;
    let body: &[u8] = match head.path {
        Path::Fixed => BODY,
        Path::RouteCheck => {
            let value = head.route_header.as_deref().unwrap_or("");
            body = format!("{ROUTE_HEADER}={value}\n").into_bytes();
            &body
        }
        Path::Stats => {
            body = Stats::now().to_string().into_bytes();
            &body
        }
    };
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if head.close {
            "Connection: close\r\n"
        } else {
            ""
        }
    );
    out.extend_from_slice(body);
}

async fn connection(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    let mut out = Vec::with_capacity(4096);
    loop {
        let mut close = false;
        while let Some(head) = parse(&buf) {
            add(&REQUESTS, 1);
            add(&HEAD_BYTES, head.head_len as u64);
            respond(&head, &mut out);
            buf.drain(..head.len);
            if head.close || head.chunked {
                close = true;
                break;
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if close || buf.len() > MAX_HEAD {
            return Ok(());
        }
        add(&READS, 1);
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pipelined_requests_and_bodies() {
        let two = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /route-check HTTP/1.1\r\nX-Bench-Route: 1\r\n\r\n";
        let first = parse(two).expect("first");
        assert_eq!(first.len, 27);
        assert_eq!(first.path, Path::Fixed);
        assert!(!first.close);
        let second = parse(&two[first.len..]).expect("second");
        assert_eq!(second.path, Path::RouteCheck);
        assert_eq!(second.route_header.as_deref(), Some("1"));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        let post = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab";
        assert_eq!(parse(post), None);
        let full = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(parse(full).map(|h| h.len), Some(full.len()));
        let close = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").expect("close");
        assert!(close.close);
    }

    #[test]
    fn fixed_body_is_100_bytes() {
        assert_eq!(BODY.len(), 100);
        let mut out = Vec::new();
        respond(&parse(b"GET / HTTP/1.1\r\n\r\n").expect("head"), &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 100\r\n"), "{text}");
    }
}
