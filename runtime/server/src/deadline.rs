//! What a slow client may hold: each connection is one of `--max-connections`, so a client
//! must not keep one for as long as it likes by going slow.
//!
//! - A request body must arrive by a deadline, counted from the request head for the whole
//!   body: a client that trickles it (a byte every few seconds) is never idle for long.
//! - A response must be taken: a connection whose writes make no progress for
//!   [`WRITE_STALL`] fails. Without this, a client that pipelines requests and never reads
//!   the responses (needing no key: `/healthz` will do) holds its connection forever.
//!
//! Headers, and the idle time before each request, are bounded by hyper's header timeout
//! (`HEADER_READ_TIMEOUT` in `server/mod.rs`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a client may leave the server's writes without taking a byte.
pub(crate) const WRITE_STALL: Duration = Duration::from_secs(30);

/// How long a request body may take to arrive (bundle uploads aside).
pub(crate) const BODY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a bundle upload (up to 128 MiB) may take to arrive.
pub(crate) const BUNDLE_DEADLINE: Duration = Duration::from_secs(300);

/// The body did not arrive within its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the body did not arrive within {} s", .0.as_secs())]
pub(crate) struct BodyDeadline(pub Duration);

/// `request` with a body that fails with [`BodyDeadline`] once `limit` has passed.
pub(crate) fn within(limit: Duration, request: Request) -> Request {
    request.map(|inner| {
        Body::new(Deadline {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
        })
    })
}

struct Deadline {
    inner: Body,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyDeadline(this.limit)))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The [`BodyDeadline`] that `error` (a body extractor's rejection) comes from, if it does.
pub(crate) fn missed<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyDeadline> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(missed) = error.downcast_ref::<BodyDeadline>() {
            return Some(missed);
        }
        cause = error.source();
    }
    None
}

/// A connection whose writes fail once they have made no progress for [`WRITE_STALL`].
pub(crate) struct Taken<T> {
    inner: T,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> Taken<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            stalled: None,
        }
    }

    /// After a write made progress (`ready`), or not (`Pending`): the clock restarts, or runs.
    fn progress<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took nothing for {} s", WRITE_STALL.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Taken<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Taken<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(cx, polled)
    }
}
