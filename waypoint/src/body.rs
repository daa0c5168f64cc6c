//! Body types of the data path: one boxed body for everything we send, and a wrapper that
//! reports how many bytes went through once the body ends or is dropped (response sizes,
//! durations and access logs are recorded then).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};

/// Errors of any body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every request and response the proxy sends.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body with these bytes.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// Counts data bytes; calls `done(bytes, ended_cleanly)` once, at the end of the stream, on an
/// error, or on drop (a client that went away).
pub struct Observed<B> {
    inner: B,
    bytes: u64,
    done: Option<Box<dyn FnOnce(u64, bool) + Send + Sync>>,
    /// `inner.is_end_stream()`, captured where `B: Body` is known.
    ended: fn(&B) -> bool,
}

impl<B: Body> Observed<B> {
    pub fn new(inner: B, done: impl FnOnce(u64, bool) + Send + Sync + 'static) -> Self {
        Self {
            inner,
            bytes: 0,
            done: Some(Box::new(done)),
            ended: B::is_end_stream,
        }
    }
}

impl<B> Observed<B> {
    fn inner_end_stream(&self) -> bool {
        (self.ended)(&self.inner)
    }

    fn finish(&mut self, clean: bool) {
        if let Some(done) = self.done.take() {
            done(self.bytes, clean);
        }
    }
}

impl<B> Drop for Observed<B> {
    fn drop(&mut self) {
        // hyper drops an empty body without polling it: that is a clean end, not a disconnect.
        let clean = self.inner_end_stream();
        self.finish(clean);
    }
}

impl<B> Body for Observed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.bytes += d.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Ready(None) => self.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn observed_reports_bytes_once() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let body = Observed::new(full("hello"), move |n, clean| {
            s.lock().unwrap().push((n, clean))
        });
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "hello");
        assert_eq!(*seen.lock().unwrap(), vec![(5, true)]);
    }

    #[tokio::test]
    async fn dropped_body_reports_unclean_unless_it_was_empty() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        drop(Observed::new(full("x"), move |n, clean| {
            s.lock().unwrap().push((n, clean))
        }));
        let s = seen.clone();
        drop(Observed::new(crate::body::empty(), move |n, clean| {
            s.lock().unwrap().push((n, clean))
        }));
        assert_eq!(*seen.lock().unwrap(), vec![(0, false), (0, true)]);
    }
}
