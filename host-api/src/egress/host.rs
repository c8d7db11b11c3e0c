//! The host's own HTTPS requests (OAuth token calls, alert notifications): through the same
//! transport and address checks as a guest's, on a fresh connection each time, never from a
//! guest's pool.

use std::sync::Arc;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use wasmtime_wasi_http::WasiBody;

use super::EgressSettings;
use super::body::LimitedRequestBody;
use super::event::Traffic;
use super::transport::{self, Timeouts};
use crate::policy::egress::RequestTarget;

/// Why a host request got no response it could read. Codes only, never a URL or a body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRequestError {
    /// The URL is not one egress can send to (not https, bad host, …): its denial code.
    #[error("{0}")]
    Url(String),
    /// The exchange failed: the transport's reason (`connect-failed`, `private-address`, …).
    #[error("{0}")]
    Exchange(String),
    /// The response body was cut short or over the limit.
    #[error("response-unreadable")]
    Unreadable,
}

/// Sends `body` to `url` with `headers` and reads the response, at most `max_response` bytes
/// of its body.
pub async fn send(
    settings: &EgressSettings,
    method: Method,
    url: &str,
    headers: HeaderMap,
    body: Bytes,
    max_response: usize,
) -> Result<(StatusCode, Bytes), HostRequestError> {
    let target =
        RequestTarget::parse(url).map_err(|d| HostRequestError::Url(d.code().to_string()))?;
    let mut request = Request::builder()
        .method(method)
        .uri(target.path_and_query())
        .header(HOST, target.authority())
        .body(Full::new(body))
        .map_err(|_| HostRequestError::Url("invalid-url".to_string()))?;
    request.headers_mut().extend(headers);
    let timeouts = Timeouts::clamped(&settings.limits, None);
    let traffic = Arc::<Traffic>::default();
    let request = request.map(|body| {
        let body: WasiBody = body.map_err(|never| match never {}).boxed_unsync();
        LimitedRequestBody::new(body, settings.limits.request_body, traffic.clone())
    });
    let response = transport::exchange(
        settings,
        (target.host(), target.port()),
        request,
        timeouts,
        traffic,
        None,
    )
    .await
    .map_err(|(_, reason)| HostRequestError::Exchange(reason))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), max_response)
        .collect()
        .await
        .map_err(|_| HostRequestError::Unreadable)?
        .to_bytes();
    Ok((status, body))
}
