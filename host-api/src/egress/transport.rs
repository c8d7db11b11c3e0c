//! The wire: resolve once (or take a `--resolve` pin), classify every address, connect to the
//! first checked one that answers, negotiate TLS for the canonical name, exchange one request
//! over HTTP/1.1 under the first-byte timeout, and hand back a size- and idle-limited body.
//!
//! Shared by guest requests and the host's own (OAuth token calls), so both pass the same
//! address checks: a token URL is no way around the SSRF defence.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use wasmtime_wasi_http::RequestOptions;
use wasmtime_wasi_http::io::TokioIo;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wasmtime_wasi_http::Error;

use super::body::LimitedResponseBody;
use super::event::Traffic;
use super::settings::{EgressLimits, EgressSettings};

/// A failure after admission: the guest-visible error and a reason code for the event.
pub(crate) type DialError = (Error, String);

/// Drives the connection after the response head, until the body is read.
pub(crate) type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// The timeouts of one exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
}

impl Timeouts {
    /// The operator's limits, shortened (never lengthened) by what the guest asked for.
    pub(crate) fn clamped(limits: &EgressLimits, options: Option<RequestOptions>) -> Self {
        let clamp = |asked: Option<Duration>, max: Duration| {
            asked.map_or(max, |d| d.clamp(Duration::from_millis(1), max))
        };
        Self {
            connect: clamp(
                options.and_then(|o| o.connect_timeout),
                limits.connect_timeout,
            ),
            first_byte: clamp(
                options.and_then(|o| o.first_byte_timeout),
                limits.first_byte_timeout,
            ),
            idle: clamp(
                options.and_then(|o| o.between_bytes_timeout),
                limits.between_bytes_timeout,
            ),
        }
    }
}

/// Dials `host:port` (see [`dial`]) and exchanges `request`; the response body is capped at
/// the operator's response-body limit. The peer address and body bytes go into `traffic`.
pub(crate) async fn exchange<B>(
    settings: &EgressSettings,
    host: &str,
    port: u16,
    request: Request<B>,
    timeouts: Timeouts,
    traffic: Arc<Traffic>,
) -> Result<(Response<LimitedResponseBody>, IoFuture), DialError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = dial(settings, host, port, timeouts.connect).await?;
    if let Ok(peer) = tls.get_ref().0.peer_addr() {
        let _ = traffic.peer.set(peer.ip());
    }
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_header_size(settings.limits.response_head)
        // The read buffer holds the response head, then one body chunk at a time: bounded, as
        // the host budget charges it (`PER_EXCHANGE`).
        .max_buf_size(settings.limits.response_head.max(8 * 1024) + 16 * 1024)
        .handshake(TokioIo::new(tls))
        .await
        .map_err(|e| (Error::from(e), "http-handshake".to_string()))?;
    let mut connection = Box::pin(connection);
    let mut send = Box::pin(tokio::time::timeout(
        timeouts.first_byte,
        sender.send_request(request),
    ));
    // Drive the connection while waiting for the response head.
    let response = loop {
        tokio::select! {
            sent = &mut send => break sent,
            done = &mut connection => {
                if let Err(e) = done {
                    return Err((Error::from(e), "connection-failed".to_string()));
                }
            }
        }
    };
    let response = response
        .map_err(|_| {
            (
                Error::ConnectionReadTimeout,
                "first-byte-timeout".to_string(),
            )
        })?
        .map_err(|e| {
            if e.is_parse_too_large() {
                let limit = u32::try_from(settings.limits.response_head).ok();
                (
                    Error::HttpResponseHeaderSectionSize(limit),
                    "response-head-too-large".to_string(),
                )
            } else {
                (Error::from(e), "exchange-failed".to_string())
            }
        })?;
    let limit = settings.limits.response_body;
    let response =
        response.map(|incoming| LimitedResponseBody::new(incoming, limit, timeouts.idle, traffic));
    Ok((
        response,
        Box::new(async move { connection.await.map_err(Error::from) }),
    ))
}

/// Resolves `host`, checks every address, connects to a checked one and verifies its
/// certificate for `host`.
pub(crate) async fn dial(
    settings: &EgressSettings,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, DialError> {
    let resolved = resolve(settings, host, port).await?;
    let checked = settings.classifier.filter(&resolved).map_err(|reason| {
        (
            Error::DestinationIpProhibited,
            format!("destination-ip-prohibited:{}", reason.code()),
        )
    })?;
    let tcp = connect(&checked, timeout).await?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| (Error::HttpRequestUriInvalid, "invalid-url".to_string()))?;
    tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(settings.tls.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| (Error::ConnectionTimeout, "tls-timeout".to_string()))?
    .map_err(|e| {
        let certificate = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
        if certificate {
            (Error::TlsCertificateError, "tls-certificate".to_string())
        } else {
            (Error::TlsProtocolError, "tls-protocol".to_string())
        }
    })
}

/// The addresses to try: the `--resolve` pins for this host, else one lookup (EG-05: the
/// addresses dialed are the ones this single answer gave and the classifier passed).
async fn resolve(
    settings: &EgressSettings,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, (Error, String)> {
    let pinned: Vec<SocketAddr> = settings
        .resolve
        .iter()
        .filter(|pin| pin.matches(host))
        .map(|pin| pin.socket_addr(port))
        .collect();
    if !pinned.is_empty() {
        return Ok(pinned);
    }
    let lookup = settings.resolver.lookup(host, port);
    let dns_error = |reason: &str| {
        let error = Error::DnsError {
            rcode: None,
            info_code: None,
        };
        (error, reason.to_string())
    };
    match tokio::time::timeout(settings.limits.dns_timeout, lookup).await {
        Err(_) => Err((Error::DnsTimeout, "dns-timeout".to_string())),
        Ok(Err(_)) => Err(dns_error("dns-error")),
        // An empty answer is a failed lookup (EG-21), not a denied address.
        Ok(Ok(addrs)) if addrs.is_empty() => Err(dns_error("dns-no-addresses")),
        Ok(Ok(addrs)) => Ok(addrs),
    }
}

/// Connects to the first checked address that answers.
async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, (Error, String)> {
    let mut last = (Error::DestinationUnavailable, "no-address".to_string());
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = (Error::ConnectionRefused, "connection-refused".to_string());
            }
            Ok(Err(_)) => last = (Error::DestinationUnavailable, "connect-failed".to_string()),
            Err(_) => last = (Error::ConnectionTimeout, "connect-timeout".to_string()),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Catalogue SB-13: whatever a guest asks (0, 1 ns, `u64::MAX` ns), each timeout lands in
    /// [1 ms, the operator's limit], and no addition with it can overflow.
    #[test]
    fn guest_timeouts_are_clamped_to_the_operators() {
        let limits = EgressLimits::default();
        let asked = |d: Duration| RequestOptions {
            connect_timeout: Some(d),
            first_byte_timeout: Some(d),
            between_bytes_timeout: Some(d),
        };
        let at = |t: Timeouts| [t.connect, t.first_byte, t.idle];
        let operator = [
            limits.connect_timeout,
            limits.first_byte_timeout,
            limits.between_bytes_timeout,
        ];
        let ms = Duration::from_millis(1);
        for tiny in [Duration::ZERO, Duration::from_nanos(1)] {
            assert_eq!(at(Timeouts::clamped(&limits, Some(asked(tiny)))), [ms; 3]);
        }
        let huge = Duration::from_nanos(u64::MAX);
        assert_eq!(at(Timeouts::clamped(&limits, Some(asked(huge)))), operator);
        assert_eq!(at(Timeouts::clamped(&limits, None)), operator);
        let shorter = Duration::from_secs(2);
        assert_eq!(
            at(Timeouts::clamped(&limits, Some(asked(shorter)))),
            [shorter; 3]
        );
        assert!(operator.iter().all(|t| *t <= Duration::from_secs(30)));
    }
}
