//! Byte-stream helpers: protocol sniffing on the first bytes of a connection, and a stream that
//! replays those bytes before reading on.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What the first bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Http1,
    Http2,
    /// Anything else (including a client that sent nothing before the sniff deadline: a
    /// server-first protocol).
    Opaque,
    /// The client closed before sending a byte.
    Closed,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest method token we wait for (RFC 9110 methods are short; extensions too in practice).
const MAX_METHOD: usize = 32;

fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Classifies a prefix: `None` while more bytes could change the answer. HTTP/1 is a request
/// line's method token followed by a space (after any empty lines, which RFC 9112 says servers
/// ignore); HTTP/2 is the connection preface.
pub fn classify(prefix: &[u8]) -> Option<Sniffed> {
    let n = prefix.len().min(H2_PREFACE.len());
    if prefix[..n] == H2_PREFACE[..n] {
        return if prefix.len() >= H2_PREFACE.len() {
            Some(Sniffed::Http2)
        } else {
            None
        };
    }
    let line = {
        let mut p = prefix;
        while let Some(rest) = p.strip_prefix(b"\r\n").or_else(|| p.strip_prefix(b"\n")) {
            p = rest;
        }
        p
    };
    let token = line.iter().take_while(|b| tchar(**b)).count();
    match line.get(token) {
        Some(b' ') if token > 0 => Some(Sniffed::Http1),
        Some(_) => Some(Sniffed::Opaque),
        None if token <= MAX_METHOD && prefix.len() < 1024 => None,
        None => Some(Sniffed::Opaque),
    }
}

/// A stream that first yields `prefix`.
pub struct Rewind<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: BytesMut, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Resolves once `shutdown` turns true (never, if its sender is gone without doing so).
pub async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Reads until the protocol is known (or `deadline` passes with nothing conclusive: opaque).
pub async fn sniff<S: AsyncRead + Unpin>(
    mut io: S,
    deadline: Duration,
) -> io::Result<(Sniffed, Rewind<S>)> {
    let mut buf = BytesMut::with_capacity(64);
    let verdict = tokio::time::timeout(deadline, async {
        loop {
            if let Some(v) = classify(&buf) {
                return Ok::<_, io::Error>(v);
            }
            if io.read_buf(&mut buf).await? == 0 {
                return Ok(if buf.is_empty() {
                    Sniffed::Closed
                } else {
                    Sniffed::Opaque
                });
            }
        }
    })
    .await
    .unwrap_or(Ok(Sniffed::Opaque))?;
    Ok((verdict, Rewind::new(buf, io)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[test]
    fn classifies_prefixes() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Sniffed::Http1));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(classify(H2_PREFACE), Some(Sniffed::Http2));
        assert_eq!(classify(b"\x16\x03\x01"), Some(Sniffed::Opaque));
        assert_eq!(classify(b"SSH-2.0-OpenSSH_9.6\r\n"), Some(Sniffed::Opaque));
        assert_eq!(classify(b"GETX"), None);
        assert_eq!(classify(b"GET/"), Some(Sniffed::Opaque));
        assert_eq!(classify(b"\r\nGET / HTTP/1.1"), Some(Sniffed::Http1));
        assert_eq!(classify(b"PROPFIND / HTTP/1.1"), Some(Sniffed::Http1));
        assert_eq!(classify(b"\r\n"), None);
    }

    #[tokio::test]
    async fn sniffed_bytes_are_replayed() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"GET /x HTTP/1.1\r\n\r\n").await.unwrap();
        drop(a);
        let (v, mut s) = sniff(b, Duration::from_secs(1)).await.unwrap();
        assert_eq!(v, Sniffed::Http1);
        let mut all = String::new();
        s.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "GET /x HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn silent_client_is_opaque_after_the_deadline() {
        let (_a, b) = tokio::io::duplex(64);
        let (v, _) = sniff(b, Duration::from_millis(20)).await.unwrap();
        assert_eq!(v, Sniffed::Opaque);
    }
}
