//! A stream wrapper that counts bytes into a [`ConnectionRecorder`] as they pass and fails
//! both directions once a cancellation token fires (policy revoked, drain deadline).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::telemetry::ConnectionRecorder;

/// Which recorder counter each direction feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The wrapped stream is the server (app or upstream): writes to it are "received"
    /// (client → server), reads from it are "sent".
    Server,
    /// The wrapped stream is the client: reads from it are "received", writes are "sent".
    Client,
}

pub struct Observed<S> {
    inner: S,
    recorder: Arc<ConnectionRecorder>,
    side: Side,
    /// `false` for the far side of a splice: the near side already counted the same bytes.
    counts: bool,
    cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Kept alive as long as the stream (e.g. the policy tracker's registration).
    _hold: Option<super::tracker::TrackGuard>,
}

impl<S> Observed<S> {
    pub fn new(
        inner: S,
        recorder: Arc<ConnectionRecorder>,
        side: Side,
        cancel: Option<CancellationToken>,
    ) -> Self {
        Self {
            inner,
            recorder,
            side,
            counts: true,
            cancelled: cancel.map(|t| Box::pin(t.cancelled_owned())),
            _hold: None,
        }
    }

    /// Counts nothing: only cancels (the bytes are counted where they enter or leave the other side).
    pub fn uncounted(mut self) -> Self {
        self.counts = false;
        self
    }

    /// Keeps `guard` alive with the stream; its token cancels the stream.
    pub fn tracked(mut self, guard: super::tracker::TrackGuard) -> Self {
        self.cancelled = Some(Box::pin(guard.token().clone().cancelled_owned()));
        self._hold = Some(guard);
        self
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let fired = match &mut self.cancelled {
            Some(f) => f.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if fired {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed: no longer authorized",
            ));
        }
        Ok(())
    }

    fn count_read(&self, n: u64) {
        if !self.counts {
            return;
        }
        match self.side {
            Side::Server => self.recorder.add_sent(n),
            Side::Client => self.recorder.add_received(n),
        }
    }

    fn count_write(&self, n: u64) {
        if !self.counts {
            return;
        }
        match self.side {
            Side::Server => self.recorder.add_received(n),
            Side::Client => self.recorder.add_sent(n),
        }
    }
}

use std::future::Future;

impl<S: AsyncRead + Unpin> AsyncRead for Observed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.count_read((buf.filled().len() - before) as u64);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Observed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.count_write(n as u64);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Copies both ways between the accepted client and the upstream, counting bytes into a new
/// recorder for `labels` once (as they cross the client side), until either side ends or `guard`'s
/// token (policy revoked) fires.
pub(crate) async fn splice<U>(
    ctx: &super::ProxyContext,
    labels: crate::telemetry::CommonTrafficLabels,
    addrs: crate::telemetry::ConnectionAddrs,
    client: tokio::net::TcpStream,
    upstream: U,
    guard: Option<super::tracker::TrackGuard>,
) where
    U: AsyncRead + AsyncWrite + Unpin,
{
    use crate::telemetry::ConnectionFailure;
    let recorder = Arc::new(ConnectionRecorder::new(ctx.metrics.clone(), labels, addrs));
    let result = copy_counted(&recorder, client, upstream, guard).await;
    if let Ok(recorder) = Arc::try_unwrap(recorder) {
        match result {
            Ok(_) => recorder.finish::<ConnectionFailure>(Ok(())),
            Err(e) => recorder.finish(Err(&ConnectionFailure::new(None, e.to_string()))),
        }
    }
}

/// The copy of [`splice`]: the client side counts each byte once, the upstream side only carries the
/// policy guard (counting there too made the source reporter's byte counters twice the bytes moved).
async fn copy_counted<C, U>(
    recorder: &Arc<ConnectionRecorder>,
    client: C,
    upstream: U,
    guard: Option<super::tracker::TrackGuard>,
) -> io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = Observed::new(client, recorder.clone(), Side::Client, None);
    let mut upstream = Observed::new(upstream, recorder.clone(), Side::Server, None).uncounted();
    if let Some(g) = guard {
        upstream = upstream.tracked(g);
    }
    hbone::stream::copy_bidirectional(&mut client, &mut upstream).await
}

#[cfg(test)]
mod tests;
