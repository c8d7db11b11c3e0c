//! A tap on brokered exchanges, for `airlock test --record` only: each exchange the guest made,
//! in full, with the credential the host injected replaced by `{{credential.NAME}}`.
//!
//! It holds bodies, so nothing but a recording run sets one ([`EgressSettings::tap`]); the
//! audit trail and logs never see what it sees. The response is what the guest read (already
//! redacted); the request is what went on the wire, scrubbed here of the injected credential
//! in every form the redactor knows, and the redactor is handed on so a recorder can scrub the
//! other exchanges of the run with it too.
//!
//! [`EgressSettings::tap`]: super::EgressSettings::tap

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::Error;

use super::redact::Redactor;

/// Receives each exchange once it is over (the guest read the whole response, or dropped it).
pub trait ExchangeTap: Send + Sync {
    fn exchange(&self, exchange: TappedExchange);
}

/// One exchange, scrubbed.
#[derive(Debug, Clone)]
pub struct TappedExchange {
    pub method: String,
    /// `https://host[:port]/path?query` as sent.
    pub url: String,
    pub request_body: Vec<u8>,
    pub status: u16,
    /// In order, names lower-case.
    pub response_headers: Vec<(String, String)>,
    /// What the guest read of the body.
    pub response_body: Vec<u8>,
    /// Whether the body was read to its end without error (else it is cut short).
    pub complete: bool,
    /// The credential injected on this exchange (its name, and its forms as a redactor), so a
    /// recorder can scrub it from the other exchanges too.
    pub injected: Option<(String, Redactor)>,
}

/// A tap shared by a runtime's exchanges.
#[derive(Clone)]
pub struct Tap(pub Arc<dyn ExchangeTap>);

impl fmt::Debug for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tap")
    }
}

/// One exchange being captured, shared by its request and response bodies.
pub(crate) struct Capture {
    tap: Tap,
    request_head: OnceLock<RequestHead>,
    response_head: OnceLock<(u16, Vec<(String, String)>)>,
    request: Mutex<Vec<u8>>,
    response: Mutex<Vec<u8>>,
    complete: AtomicBool,
    emitted: AtomicBool,
}

struct RequestHead {
    method: String,
    url: String,
    /// The injected credential's forms and its name.
    scrub: Option<(Redactor, String)>,
}

/// Never prints what it holds.
impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Capture")
    }
}

impl Capture {
    pub(crate) fn new(tap: Tap) -> Arc<Self> {
        Arc::new(Self {
            tap,
            request_head: OnceLock::new(),
            response_head: OnceLock::new(),
            request: Mutex::default(),
            response: Mutex::default(),
            complete: AtomicBool::new(false),
            emitted: AtomicBool::new(false),
        })
    }

    pub(crate) fn add_request(&self, data: &[u8]) {
        lock(&self.request).extend_from_slice(data);
    }

    /// The request is about to go: what it is, and the credential to scrub from it.
    pub(crate) fn set_request(&self, method: &str, url: String, scrub: Option<(Redactor, String)>) {
        let _ = self.request_head.set(RequestHead {
            method: method.to_string(),
            url,
            scrub,
        });
    }

    /// The response head arrived.
    pub(crate) fn set_response(&self, response: &http::response::Parts) {
        let headers = response
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let _ = self.response_head.set((response.status.as_u16(), headers));
    }

    /// Hands the exchange to the tap, once.
    fn emit(&self) {
        let (Some(head), Some((status, headers))) =
            (self.request_head.get(), self.response_head.get())
        else {
            return;
        };
        if self.emitted.swap(true, Ordering::AcqRel) {
            return;
        }
        let scrub = |bytes: &[u8]| match &head.scrub {
            Some((redactor, name)) => {
                redactor
                    .replace(bytes, format!("{{{{credential.{name}}}}}").as_bytes())
                    .0
            }
            None => bytes.to_vec(),
        };
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        // The response was redacted before the guest read it; the request went out as sent.
        self.tap.0.exchange(TappedExchange {
            method: head.method.clone(),
            url: text(scrub(head.url.as_bytes())),
            request_body: scrub(&lock(&self.request)),
            status: *status,
            response_headers: headers.clone(),
            response_body: lock(&self.response).clone(),
            complete: self.complete.load(Ordering::Acquire),
            injected: head
                .scrub
                .as_ref()
                .map(|(redactor, name)| (name.clone(), redactor.clone())),
        });
    }
}

fn lock(buffer: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    buffer.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The response body as the guest reads it, copied into the capture; the exchange is handed
/// over at its end, or when the guest drops it.
pub(crate) struct TapBody<B> {
    inner: B,
    capture: Arc<Capture>,
}

impl<B> TapBody<B> {
    pub(crate) fn new(inner: B, capture: Arc<Capture>) -> Self {
        Self { inner, capture }
    }
}

impl<B: Body<Data = Bytes, Error = Error> + Unpin> Body for TapBody<B> {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    lock(&self.capture.response).extend_from_slice(data);
                }
            }
            Some(Err(_)) => self.capture.emit(),
            None => {
                self.capture.complete.store(true, Ordering::Release);
                self.capture.emit();
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

impl<B> Drop for TapBody<B> {
    fn drop(&mut self) {
        self.capture.emit();
    }
}
