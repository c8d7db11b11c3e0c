//! Bodies with limits: a request body the guest streams out and a response body it reads, each
//! capped in size, the response also in silence between chunks; and the redacted response body
//! of a request that carried a credential.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::{Error, WasiBody};

use super::event::{RedactionTally, Traffic};
use super::pool::Lease;
use super::redact::{BodyFilter, RedactError, Redactor};

/// The guest's request body, failing once it exceeds `limit` bytes.
pub(crate) struct LimitedRequestBody {
    inner: WasiBody,
    sent: u64,
    limit: u64,
    traffic: Arc<Traffic>,
}

impl LimitedRequestBody {
    pub(crate) fn new(inner: WasiBody, limit: u64, traffic: Arc<Traffic>) -> Self {
        Self {
            inner,
            sent: 0,
            limit,
            traffic,
        }
    }
}

impl Body for LimitedRequestBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            // A chunk that would cross the limit is not sent, so it is not counted as sent.
            if self.sent + data.len() as u64 > self.limit {
                return Poll::Ready(Some(Err(Error::HttpRequestBodySize(Some(self.limit)))));
            }
            self.sent += data.len() as u64;
            self.traffic.add_sent(data.len());
            if let Some(capture) = &self.traffic.capture {
                capture.add_request(data);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The upstream's response body as the guest reads it: capped at `limit` bytes, and failed
/// after `idle` without a frame (slowloris upstreams). It holds the connection it arrives on,
/// which goes back to its pool once the body ended cleanly, and closes otherwise.
pub(crate) struct LimitedResponseBody {
    incoming: hyper::body::Incoming,
    received: u64,
    limit: u64,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    traffic: Arc<Traffic>,
    lease: Option<Lease<LimitedRequestBody>>,
}

impl LimitedResponseBody {
    pub(crate) fn new(
        incoming: hyper::body::Incoming,
        limit: u64,
        idle: Duration,
        traffic: Arc<Traffic>,
        lease: Lease<LimitedRequestBody>,
    ) -> Self {
        let mut body = Self {
            incoming,
            received: 0,
            limit,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            traffic,
            lease: Some(lease),
        };
        if body.incoming.is_end_stream() {
            body.ended();
        }
        body
    }

    /// The body was read to its end within its limits: nothing is in flight, and the
    /// connection may carry another request.
    fn ended(&mut self) {
        self.traffic.settle();
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }

    /// The body failed as `class`: the connection is in an unknown state and closes.
    fn failed(&mut self, class: &'static str) {
        self.lease = None;
        self.traffic.fail_body(class);
    }
}

impl Drop for LimitedResponseBody {
    /// A body the guest dropped is no longer in flight, read or not; one dropped with its
    /// invocation's store was in flight when the invocation ended, and was recorded so first.
    /// A connection whose body was not read to its end closes with it.
    fn drop(&mut self) {
        self.traffic.settle();
    }
}

impl Body for LimitedResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                    self.traffic.add_received(data.len());
                    if self.received > self.limit {
                        self.failed("response-body-too-large");
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(
                            self.limit,
                        )))));
                    }
                }
                if self.incoming.is_end_stream() {
                    self.ended();
                }
                let deadline = tokio::time::Instant::now() + self.idle;
                self.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.failed(body_failure(&e));
                Poll::Ready(Some(Err(Error::from(e))))
            }
            Poll::Ready(None) => {
                self.ended();
                Poll::Ready(None)
            }
            Poll::Pending => {
                ready!(self.timer.as_mut().poll(cx));
                self.failed("response-body-timeout");
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

/// A response body after a credential went out: decoded if the upstream compressed it anyway,
/// and scrubbed of every form of the credential, across chunk boundaries, before the guest
/// reads a byte. Trailers are scrubbed like headers.
pub(crate) struct RedactedResponseBody {
    inner: LimitedResponseBody,
    filter: BodyFilter,
    redactor: Redactor,
    /// Replacements already added to `tally`.
    counted: usize,
    tally: RedactionTally,
    finished: bool,
}

impl RedactedResponseBody {
    pub(crate) fn new(
        inner: LimitedResponseBody,
        filter: BodyFilter,
        redactor: Redactor,
        tally: RedactionTally,
    ) -> Self {
        Self {
            inner,
            filter,
            redactor,
            counted: 0,
            tally,
            finished: false,
        }
    }

    fn account(&mut self) {
        let now = self.filter.count();
        self.tally.add((now - self.counted) as u64);
        self.counted = now;
    }
}

impl Body for RedactedResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let decode_error = |e: RedactError| match e {
            RedactError::TooLarge { limit } => Error::HttpResponseBodySize(Some(limit)),
            _ => Error::HttpProtocolError,
        };
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
            let out = match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self
                        .filter
                        .push(&data)
                        .map(|out| Frame::data(Bytes::from(out))),
                    Err(frame) => match frame.into_trailers() {
                        Ok(mut trailers) => {
                            let n = self.redactor.redact_headers(&mut trailers);
                            self.tally.add(n);
                            Ok(Frame::trailers(trailers))
                        }
                        Err(_) => continue,
                    },
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    self.finished = true;
                    self.filter
                        .finish()
                        .map(|out| Frame::data(Bytes::from(out)))
                }
            };
            self.account();
            match out {
                Err(e) => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(decode_error(e))));
                }
                // Held back (a possible partial match) or consumed by the decoder: read on.
                Ok(frame) if frame.data_ref().is_some_and(|d| d.is_empty()) => continue,
                Ok(frame) => return Poll::Ready(Some(Ok(frame))),
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        // Redaction and decoding change the length: promise nothing.
        SizeHint::default()
    }
}

/// The class recorded for a response body the upstream broke off or malformed.
fn body_failure(error: &hyper::Error) -> &'static str {
    if error.is_incomplete_message() {
        return "response-body-truncated";
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    "response-body-reset"
                }
                std::io::ErrorKind::UnexpectedEof => "response-body-truncated",
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
                    "response-body-invalid"
                }
                _ => "response-body-failed",
            };
        }
        source = cause.source();
    }
    "response-body-failed"
}
