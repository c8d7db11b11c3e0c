//! [`Reply`]: how the upstream answers, including bodies far larger than memory and bodies
//! whose size is never announced.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::{Body, Frame, SizeHint};

use crate::recorded::Recorded;

/// How an [`Upstream`](crate::Upstream) answers: status, headers, body.
///
/// Invalid statuses and header names or values panic where the response is built (in the
/// test's closure), so a typo fails loudly rather than as a dropped connection. Do not set
/// `content-length` or `transfer-encoding` yourself: hyper frames the body (see
/// [`Reply::chunked`]).
#[derive(Debug, Clone)]
pub struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    /// How many times the body is sent (1 unless [`Self::repeated`]).
    copies: u64,
    chunked: bool,
    pub(crate) delay: Option<Duration>,
}

impl Reply {
    /// An empty body with `code`.
    pub fn status(code: u16) -> Self {
        Self {
            status: StatusCode::from_u16(code)
                .unwrap_or_else(|e| panic!("invalid status {code}: {e}")),
            headers: Vec::new(),
            body: Bytes::new(),
            copies: 1,
            chunked: false,
            delay: None,
        }
    }

    /// `value` serialised as the body, with `content-type: application/json`.
    pub fn json(code: u16, value: serde_json::Value) -> Self {
        Self::status(code)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&value).expect("JSON value serialises"))
    }

    /// A redirect (301, 302, 303, 307, 308) to `location`, taken verbatim (relative, absolute,
    /// or deliberately odd: redirect-to-internal tests need exactly what they wrote).
    pub fn redirect(code: u16, location: &str) -> Self {
        Self::status(code).header("location", location)
    }

    /// Raw bytes with `content-type: application/octet-stream`, framed with `content-length`
    /// and written as the client reads. For response-size limits; add [`Self::chunked`] so
    /// the size is not announced up front.
    pub fn bytes(code: u16, body: Vec<u8>) -> Self {
        Self::status(code)
            .header("content-type", "application/octet-stream")
            .body(body)
    }

    /// 200 with a JSON body echoing the request, for credential-redaction tests: shows exactly
    /// which headers (e.g. an injected `authorization`) reached the upstream.
    /// Shape: `{"method": "GET", "path": "/x?y", "headers": {"name": ["value", ...]}}`.
    pub fn echo_headers(request: &Recorded) -> Self {
        let mut headers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, value) in &request.headers {
            headers.entry(name).or_default().push(value);
        }
        Self::json(
            200,
            serde_json::json!({
                "method": request.method,
                "path": request.path_and_query,
                "headers": headers,
            }),
        )
    }

    /// Adds a header (repeatable: each call adds one more value).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("invalid header name {name:?}: {e}"));
        let value = HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("invalid header value {value:?}: {e}"));
        self.headers.push((name, value));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends the body with `transfer-encoding: chunked` in 16 KiB chunks and no
    /// `content-length`, so a client can only enforce a size limit while reading.
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// Sends the body `copies` times over (the length announced is the total unless
    /// [`Self::chunked`]), made as it is written: a body of gigabytes costs the mock one copy.
    pub fn repeated(mut self, copies: u64) -> Self {
        self.copies = copies;
        self
    }

    /// Waits this long before sending the response head, for timeout tests. (The handler is a
    /// plain closure; sleeping inside it would stall the mock's runtime.)
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub(crate) fn into_response(self) -> Response<ReplyBody> {
        let mut response = Response::new(ReplyBody {
            data: self.body.clone(),
            copy: self.body,
            more: self.copies.saturating_sub(1),
            chunked: self.chunked,
        });
        *response.status_mut() = self.status;
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// A response body that either announces its exact length (hyper sends `content-length`) or
/// hides it and yields 16 KiB frames (hyper sends chunked encoding).
pub(crate) struct ReplyBody {
    data: Bytes,
    /// The whole body, and how many more times it follows `data`.
    copy: Bytes,
    more: u64,
    chunked: bool,
}

const CHUNK: usize = 16 * 1024;

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            if self.more == 0 || self.copy.is_empty() {
                return Poll::Ready(None);
            }
            self.more -= 1;
            self.data = self.copy.clone();
        }
        let take = if self.chunked {
            self.data.len().min(CHUNK)
        } else {
            self.data.len()
        };
        let frame = self.data.split_to(take);
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty() && (self.more == 0 || self.copy.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        if self.chunked {
            SizeHint::default()
        } else {
            let rest = (self.copy.len() as u64).saturating_mul(self.more);
            SizeHint::with_exact(self.data.len() as u64 + rest)
        }
    }
}

/// A response a handler made whole (the demo's stand-ins, the fixture server): its status,
/// every header and the body, sent with `content-length`.
impl From<Response<Bytes>> for Reply {
    fn from(response: Response<Bytes>) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            status: parts.status,
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            body,
            copies: 1,
            chunked: false,
            delay: None,
        }
    }
}
