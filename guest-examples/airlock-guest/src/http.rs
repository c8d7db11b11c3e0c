//! A small blocking HTTP client over the `wasi:http/outgoing-handler` import.
//!
//! Every request goes to the host, which judges it against the manifest's `[[egress]]` rules
//! (https only, declared hosts and methods, public addresses only), injects the rule's credential
//! if it names one, and never follows redirects. So this client has no credentials, no retries
//! and no redirect handling: a 3xx is an ordinary [`Response`], and following it is a new
//! request that the host judges on its own.
//!
//! ```ignore
//! use airlock_guest::http::Request;
//!
//! let response = Request::post("https://api.example.com/v1/things")
//!     .header("accept", "application/json")
//!     .json(&serde_json::json!({ "name": "widget" }))
//!     .send()?;                     // Err(HttpError) says why, e.g. `HttpRequestDenied`
//! if response.is_success() {
//!     let thing: Thing = response.json()?;
//! }
//! ```
//!
//! `HttpError` converts into [`crate::Error`] with `?`; its code is the kebab-case form of
//! [`HttpError::code`] (`http-request-denied`, `dns-error`, `connection-refused`, …).
//!
//! The URL is split by hand into scheme, authority and path-with-query; nothing is normalised
//! or validated beyond that, because the host canonicalises and judges the URL itself. The
//! response body is read whole, up to [`DEFAULT_MAX_RESPONSE_BODY`] unless
//! [`Request::max_response_body`] says otherwise.

use std::borrow::Cow;
use std::fmt;

use serde::{Serialize, de::DeserializeOwned};

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    Fields, FutureIncomingResponse, IncomingResponse, OutgoingBody, OutgoingRequest, Scheme,
    http_error_code,
};
use crate::bindings::wasi::io::streams::StreamError;

pub use crate::bindings::wasi::http::types::{ErrorCode, HeaderError, Method};

/// The response body cap when [`Request::max_response_body`] is not called: 8 MiB.
pub const DEFAULT_MAX_RESPONSE_BODY: usize = 8 << 20;

/// How much one `blocking-read` of the response body asks for.
const READ_CHUNK: u64 = 64 * 1024;

/// A header as `wasi:http` carries it: a name and a value of raw bytes.
pub type Header = (String, Vec<u8>);

/// An HTTP request being built; [`Request::send`] sends it and waits for the whole response.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<Header>,
    body: Option<Body>,
    max_response_body: usize,
    /// A failure while building (a body that would not serialize), reported by `send`.
    error: Option<HttpError>,
}

#[derive(Debug, Clone)]
struct Body {
    content_type: String,
    bytes: Vec<u8>,
}

impl Request {
    /// A request with any method, e.g. `Request::new(Method::Put, url)`.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            max_response_body: DEFAULT_MAX_RESPONSE_BODY,
            error: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }

    /// A `PATCH` request.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new(Method::Patch, url)
    }

    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// Appends a header (repeating a name sends it twice). The host's fields API may refuse a
    /// name (`HeaderForbidden`, e.g. `host`); that is reported by [`send`](Self::send), before
    /// anything is sent. Never set credentials here: the host injects them.
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body to `value` as JSON, with `content-type: application/json` unless a
    /// `content-type` header is set explicitly.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.body("application/json", bytes),
            Err(e) => {
                self.error = Some(HttpError::InvalidJson(e.to_string()));
                self
            }
        }
    }

    /// Sets a raw body and its content type (used unless a `content-type` header is set).
    pub fn body(mut self, content_type: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(Body {
            content_type: content_type.into(),
            bytes: bytes.into(),
        });
        self
    }

    /// Caps the response body at `bytes`; a longer body fails with
    /// [`HttpError::BodyTooLarge`].
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.max_response_body = bytes;
        self
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers that will be sent: those given, then `content-type` and `content-length` for
    /// a body unless given explicitly.
    pub fn header_entries(&self) -> Vec<Header> {
        let mut headers = self.headers.clone();
        if let Some(body) = &self.body {
            let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
            let content_type = !has("content-type");
            let content_length = !has("content-length");
            if content_type {
                headers.push(("content-type".into(), body.content_type.clone().into()));
            }
            if content_length {
                headers.push(("content-length".into(), body.bytes.len().to_string().into()));
            }
        }
        headers
    }

    /// Sends the request and reads the whole response.
    ///
    /// Blocks until the response (or an error) arrives. A response with any status, 3xx and 5xx
    /// included, is `Ok`; check [`Response::status`]. `Err` means no response: the guest-side
    /// build failed, the host refused the request (`HttpRequestDenied`, …), or the network or
    /// the upstream failed it.
    pub fn send(self) -> Result<Response, HttpError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let parts = split_url(&self.url)?;

        let fields = Fields::new();
        for (name, value) in self.header_entries() {
            fields
                .append(&name, &value)
                .map_err(|error| HttpError::Header { name, error })?;
        }
        let request = OutgoingRequest::new(fields);
        let refused = |part: &str| HttpError::InvalidUrl(format!("the host refused the {part}"));
        request
            .set_method(&self.method)
            .map_err(|()| refused("method"))?;
        request
            .set_scheme(Some(&parts.scheme()))
            .map_err(|()| refused("scheme"))?;
        request
            .set_authority(Some(parts.authority))
            .map_err(|()| refused("authority"))?;
        request
            .set_path_with_query(Some(&parts.path_with_query))
            .map_err(|()| refused("path"))?;
        let body = match &self.body {
            Some(body) => Some((
                request
                    .body()
                    .map_err(|()| HttpError::Stream("the request body was refused".into()))?,
                body.bytes.as_slice(),
            )),
            None => None,
        };

        // Hand the request over before writing the body: the body pipe is bounded, so a large
        // body written first would wait for a reader that does not exist yet.
        let future = outgoing_handler::handle(request, None).map_err(HttpError::Code)?;
        let written = match body {
            Some((body, bytes)) => write_body(body, bytes),
            None => Ok(()),
        };
        // A body that failed to write was dropped unfinished, which aborts the request; the
        // response future then carries the host's reason, which says more than the stream did.
        let response = wait_for_response(&future);
        match (written, response) {
            (_, Ok(response)) => read_response(response, self.max_response_body),
            (Err(write_error), Err(HttpError::Stream(_))) => Err(write_error),
            (_, Err(error)) => Err(error),
        }
    }
}

/// Writes `bytes` to the request body, respecting `check-write`, then finishes the body. On
/// failure the body is dropped unfinished, which tells the host the request is corrupt.
fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
    {
        let stream = body
            .write()
            .map_err(|()| HttpError::Stream("the request body stream was refused".into()))?;
        let pollable = stream.subscribe();
        let mut rest = bytes;
        while !rest.is_empty() {
            let permit = stream.check_write().map_err(stream_error)?;
            if permit == 0 {
                pollable.block();
                continue;
            }
            let n = rest
                .len()
                .min(usize::try_from(permit).unwrap_or(usize::MAX));
            stream.write(&rest[..n]).map_err(stream_error)?;
            rest = &rest[n..];
        }
        stream.flush().map_err(stream_error)?;
        // `check-write` answers 0 until the flush completes, and the pollable fires then.
        while stream.check_write().map_err(stream_error)? == 0 {
            pollable.block();
        }
        // `pollable`, then `stream` (children of `body`) drop here, before `finish`.
    }
    OutgoingBody::finish(body, None).map_err(HttpError::Code)
}

/// Blocks until the response head (or an error) is ready.
fn wait_for_response(future: &FutureIncomingResponse) -> Result<IncomingResponse, HttpError> {
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => Ok(response),
        Some(Ok(Err(code))) => Err(HttpError::Code(code)),
        Some(Err(())) => Err(HttpError::Stream("the response was already taken".into())),
        None => Err(HttpError::Stream("the response was not ready".into())),
    }
}

/// Reads status, headers and the whole body (up to `limit` bytes).
fn read_response(response: IncomingResponse, limit: usize) -> Result<Response, HttpError> {
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| HttpError::Stream("the response body was already taken".into()))?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| HttpError::Stream("the response body stream was refused".into()))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => {
                    if chunk.len() > limit - body.len() {
                        return Err(HttpError::BodyTooLarge { limit });
                    }
                    body.extend_from_slice(&chunk);
                }
                Err(StreamError::Closed) => break,
                Err(e) => return Err(stream_error(e)),
            }
        }
        // `stream` (a child of `incoming`) drops here, before `incoming` and `response`.
    }
    drop(incoming);
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Maps a stream failure to the HTTP error code behind it when the host gives one.
fn stream_error(error: StreamError) -> HttpError {
    match error {
        StreamError::Closed => HttpError::Stream("the stream was closed".into()),
        StreamError::LastOperationFailed(e) => match http_error_code(&e) {
            Some(code) => HttpError::Code(code),
            None => HttpError::Stream(e.to_debug_string()),
        },
    }
}

/// A complete response: any status, 3xx included (the host follows no redirects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names as the host gives them (lower-case) with raw values, in order.
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

impl Response {
    /// `true` for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `true` for a 3xx status: see [`Response::header`]`("location")`.
    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive), if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// Parses the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::InvalidJson(e.to_string()))
    }
}

/// Why a request got no response (or its body could not be used).
///
/// [`code`](Self::code) names the cause: the `wasi:http` `error-code` case for host and network
/// failures (`HttpRequestDenied`, `DnsError`, …), or a guest-side name for the rest.
#[derive(Debug, Clone)]
pub enum HttpError {
    /// The URL has no `scheme://authority`, or the host refused a part of it while the request
    /// was being built. Nothing was sent.
    InvalidUrl(String),
    /// The fields API refused a header, e.g. [`HeaderError::Forbidden`]. Nothing was sent.
    Header { name: String, error: HeaderError },
    /// The host or the network failed the request with this `wasi:http` `error-code`:
    /// `HttpRequestDenied` when the egress policy refused it.
    Code(ErrorCode),
    /// The response body was longer than the cap.
    BodyTooLarge { limit: usize },
    /// A request body would not serialize, or a response body is not the expected JSON.
    InvalidJson(String),
    /// A body stream failed without an `error-code`.
    Stream(String),
}

impl HttpError {
    /// The cause's name: an `error-code` case in UpperCamelCase (`HttpRequestDenied`,
    /// `DnsError`, `ConnectionRefused`, `TlsCertificateError`, …), or `InvalidUrl`,
    /// `HeaderForbidden`, `HeaderInvalidSyntax`, `HeaderImmutable`, `BodyTooLarge`,
    /// `InvalidJson`, `StreamError`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "InvalidUrl",
            Self::Header { error, .. } => match error {
                HeaderError::Forbidden => "HeaderForbidden",
                HeaderError::InvalidSyntax => "HeaderInvalidSyntax",
                HeaderError::Immutable => "HeaderImmutable",
            },
            Self::Code(code) => error_code_name(code),
            Self::BodyTooLarge { .. } => "BodyTooLarge",
            Self::InvalidJson(_) => "InvalidJson",
            Self::Stream(_) => "StreamError",
        }
    }

    /// `true` when the host's egress policy refused the request.
    pub fn is_denied(&self) -> bool {
        matches!(self, Self::Code(ErrorCode::HttpRequestDenied))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.code();
        match self {
            Self::InvalidUrl(detail) | Self::InvalidJson(detail) | Self::Stream(detail) => {
                write!(f, "{code}: {detail}")
            }
            Self::Header { name, .. } => write!(f, "{code}: header {name:?}"),
            Self::BodyTooLarge { limit } => write!(f, "{code}: over {limit} bytes"),
            Self::Code(error) => match error {
                ErrorCode::DnsError(p) => {
                    write!(f, "{code}")?;
                    if let Some(rcode) = &p.rcode {
                        write!(f, ": {rcode}")?;
                    }
                    Ok(())
                }
                ErrorCode::TlsAlertReceived(p) => match &p.alert_message {
                    Some(message) => write!(f, "{code}: {message}"),
                    None => write!(f, "{code}"),
                },
                ErrorCode::InternalError(Some(detail)) => write!(f, "{code}: {detail}"),
                ErrorCode::HttpRequestBodySize(Some(n))
                | ErrorCode::HttpResponseBodySize(Some(n)) => write!(f, "{code}: {n} bytes"),
                _ => write!(f, "{code}"),
            },
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for crate::Error {
    /// `code` is [`HttpError::code`] in kebab-case (`http-request-denied`, `dns-error`, …);
    /// `message` is the error's text.
    fn from(error: HttpError) -> Self {
        crate::Error::new(kebab_case(error.code()), error.to_string())
    }
}

/// `HttpRequestDenied` → `http-request-denied`.
fn kebab_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The UpperCamelCase name of an `error-code` case.
fn error_code_name(code: &ErrorCode) -> &'static str {
    match code {
        ErrorCode::DnsTimeout => "DnsTimeout",
        ErrorCode::DnsError(_) => "DnsError",
        ErrorCode::DestinationNotFound => "DestinationNotFound",
        ErrorCode::DestinationUnavailable => "DestinationUnavailable",
        ErrorCode::DestinationIpProhibited => "DestinationIpProhibited",
        ErrorCode::DestinationIpUnroutable => "DestinationIpUnroutable",
        ErrorCode::ConnectionRefused => "ConnectionRefused",
        ErrorCode::ConnectionTerminated => "ConnectionTerminated",
        ErrorCode::ConnectionTimeout => "ConnectionTimeout",
        ErrorCode::ConnectionReadTimeout => "ConnectionReadTimeout",
        ErrorCode::ConnectionWriteTimeout => "ConnectionWriteTimeout",
        ErrorCode::ConnectionLimitReached => "ConnectionLimitReached",
        ErrorCode::TlsProtocolError => "TlsProtocolError",
        ErrorCode::TlsCertificateError => "TlsCertificateError",
        ErrorCode::TlsAlertReceived(_) => "TlsAlertReceived",
        ErrorCode::HttpRequestDenied => "HttpRequestDenied",
        ErrorCode::HttpRequestLengthRequired => "HttpRequestLengthRequired",
        ErrorCode::HttpRequestBodySize(_) => "HttpRequestBodySize",
        ErrorCode::HttpRequestMethodInvalid => "HttpRequestMethodInvalid",
        ErrorCode::HttpRequestUriInvalid => "HttpRequestUriInvalid",
        ErrorCode::HttpRequestUriTooLong => "HttpRequestUriTooLong",
        ErrorCode::HttpRequestHeaderSectionSize(_) => "HttpRequestHeaderSectionSize",
        ErrorCode::HttpRequestHeaderSize(_) => "HttpRequestHeaderSize",
        ErrorCode::HttpRequestTrailerSectionSize(_) => "HttpRequestTrailerSectionSize",
        ErrorCode::HttpRequestTrailerSize(_) => "HttpRequestTrailerSize",
        ErrorCode::HttpResponseIncomplete => "HttpResponseIncomplete",
        ErrorCode::HttpResponseHeaderSectionSize(_) => "HttpResponseHeaderSectionSize",
        ErrorCode::HttpResponseHeaderSize(_) => "HttpResponseHeaderSize",
        ErrorCode::HttpResponseBodySize(_) => "HttpResponseBodySize",
        ErrorCode::HttpResponseTrailerSectionSize(_) => "HttpResponseTrailerSectionSize",
        ErrorCode::HttpResponseTrailerSize(_) => "HttpResponseTrailerSize",
        ErrorCode::HttpResponseTransferCoding(_) => "HttpResponseTransferCoding",
        ErrorCode::HttpResponseContentCoding(_) => "HttpResponseContentCoding",
        ErrorCode::HttpResponseTimeout => "HttpResponseTimeout",
        ErrorCode::HttpUpgradeFailed => "HttpUpgradeFailed",
        ErrorCode::HttpProtocolError => "HttpProtocolError",
        ErrorCode::LoopDetected => "LoopDetected",
        ErrorCode::ConfigurationError => "ConfigurationError",
        ErrorCode::InternalError(_) => "InternalError",
    }
}

/// A method from its name: `"get"` or `"GET"` → [`Method::Get`]; unknown names →
/// [`Method::Other`] as given (the host decides whether it is valid).
pub fn method_from_name(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(name.to_owned()),
    }
}

/// A URL split the way `outgoing-request` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// Lower-cased, e.g. `https`.
    pub scheme: String,
    /// Everything between `//` and the path, as written (userinfo and port included).
    pub authority: &'a str,
    /// The path and query (`/` when empty); the fragment is dropped.
    pub path_with_query: Cow<'a, str>,
}

impl UrlParts<'_> {
    /// The scheme as `wasi:http` names it.
    pub fn scheme(&self) -> Scheme {
        match self.scheme.as_str() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            other => Scheme::Other(other.to_owned()),
        }
    }
}

/// Splits `scheme://authority/path?query#fragment`.
///
/// Deliberately literal: no percent-decoding, no dot-segment removal, no IDNA, userinfo kept in
/// the authority. The host canonicalises and judges the URL; this only carries it there. Fails
/// only without `scheme://` or with an empty authority.
pub fn split_url(url: &str) -> Result<UrlParts<'_>, HttpError> {
    let invalid = |why: &str| HttpError::InvalidUrl(format!("{why}: {url:?}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("no scheme://"))?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(invalid("bad scheme"));
    }
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(invalid("no host"));
    }
    let path_with_query = if path.is_empty() {
        Cow::Borrowed("/")
    } else if path.starts_with('?') {
        Cow::Owned(format!("/{path}"))
    } else {
        Cow::Borrowed(path)
    };
    Ok(UrlParts {
        scheme: scheme.to_ascii_lowercase(),
        authority,
        path_with_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, String, String) {
        let parts = split_url(url).unwrap();
        (
            parts.scheme,
            parts.authority.to_owned(),
            parts.path_with_query.into_owned(),
        )
    }

    fn triple(scheme: &str, authority: &str, path: &str) -> (String, String, String) {
        (scheme.into(), authority.into(), path.into())
    }

    #[test]
    fn splits_urls() {
        assert_eq!(
            split("https://api.github.com/repos/a/b/issues?state=open&per_page=5"),
            triple(
                "https",
                "api.github.com",
                "/repos/a/b/issues?state=open&per_page=5"
            )
        );
        assert_eq!(
            split("HTTPS://Example.com"),
            triple("https", "Example.com", "/")
        );
        assert_eq!(
            split("https://example.com?q=1#frag"),
            triple("https", "example.com", "/?q=1")
        );
        assert_eq!(
            split("https://example.com:8443/a#b/c"),
            triple("https", "example.com:8443", "/a")
        );
        assert_eq!(split("http://[::1]:80/x"), triple("http", "[::1]:80", "/x"));
    }

    #[test]
    fn keeps_what_the_host_must_judge() {
        assert_eq!(
            split("https://api.allowed.test@evil.example/"),
            triple("https", "api.allowed.test@evil.example", "/")
        );
        assert_eq!(
            split("https://u:p@api.allowed.test/a/../b"),
            triple("https", "u:p@api.allowed.test", "/a/../b")
        );
        assert_eq!(split("gopher://x/").0, "gopher");
    }

    #[test]
    fn refuses_urls_without_scheme_or_host() {
        for url in [
            "api.github.com/x",
            "https:///x",
            "https://",
            "://x",
            "1https://x",
        ] {
            assert!(
                matches!(split_url(url), Err(HttpError::InvalidUrl(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn adds_content_headers_for_a_body() {
        let request = Request::post("https://x.test/")
            .header("accept", "application/json")
            .json(&serde_json::json!({"a": 1}));
        assert_eq!(
            request.header_entries(),
            vec![
                ("accept".to_owned(), b"application/json".to_vec()),
                ("content-type".to_owned(), b"application/json".to_vec()),
                ("content-length".to_owned(), b"7".to_vec()),
            ]
        );
    }

    #[test]
    fn explicit_content_type_wins_and_get_has_no_body_headers() {
        let request = Request::post("https://x.test/")
            .header("Content-Type", "application/json; charset=utf-8")
            .body("text/plain", "hi");
        let names: Vec<_> = request
            .header_entries()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["Content-Type", "content-length"]);
        let get = Request::get("https://x.test/")
            .header("a", "1")
            .header("a", "2");
        assert_eq!(get.header_entries().len(), 2);
    }

    #[test]
    fn names_error_codes() {
        let denied = HttpError::Code(ErrorCode::HttpRequestDenied);
        assert_eq!(denied.code(), "HttpRequestDenied");
        assert!(denied.is_denied());
        let error = crate::Error::from(denied);
        assert_eq!(error.code, "http-request-denied");
        let tls = crate::Error::from(HttpError::Code(ErrorCode::TlsCertificateError));
        assert_eq!(tls.code, "tls-certificate-error");
        let forbidden = HttpError::Header {
            name: "authorization".into(),
            error: HeaderError::Forbidden,
        };
        assert_eq!(forbidden.code(), "HeaderForbidden");
        assert_eq!(
            forbidden.to_string(),
            "HeaderForbidden: header \"authorization\""
        );
        assert_eq!(
            kebab_case("DestinationIpProhibited"),
            "destination-ip-prohibited"
        );
    }

    #[test]
    fn reads_response_headers_case_insensitively() {
        let response = Response {
            status: 302,
            headers: vec![("location".into(), b"https://x.test/next".to_vec())],
            body: b"{\"n\": 1}".to_vec(),
        };
        assert!(response.is_redirect());
        assert_eq!(response.header("Location"), Some("https://x.test/next"));
        assert_eq!(response.header("link"), None);
        let value: serde_json::Value = response.json().unwrap();
        assert_eq!(value["n"], 1);
    }

    #[test]
    fn parses_method_names() {
        assert!(matches!(method_from_name("get"), Method::Get));
        assert!(matches!(method_from_name("PATCH"), Method::Patch));
        assert!(matches!(method_from_name("PROPFIND"), Method::Other(m) if m == "PROPFIND"));
    }
}
