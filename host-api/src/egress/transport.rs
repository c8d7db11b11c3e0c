//! The wire: resolve once (or take a `--resolve` pin), classify every address, reuse an idle
//! connection of the guest's scope to one of the checked addresses or connect to the first
//! checked one that answers and negotiate TLS for the canonical name, exchange one request
//! over HTTP/1.1 under the first-byte timeout, and hand back a size- and idle-limited body.
//!
//! Shared by guest requests and the host's own (OAuth token calls), so both pass the same
//! address checks: a token URL is no way around the SSRF defence.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use wasmtime_wasi_http::RequestOptions;
use wasmtime_wasi_http::io::TokioIo;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wasmtime_wasi_http::Error;

use super::body::{LimitedRequestBody, LimitedResponseBody};
use super::event::Traffic;
use super::pool::{Conn, Lease, Scope};
use super::settings::{EgressLimits, EgressSettings};

/// A failure after admission: the guest-visible error and a reason code for the event.
pub(crate) type DialError = (Error, String);

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

/// Where an exchange's connection may come from and go back to: the pool of a guest's
/// [`Scope`]; `None` for the host's own requests, which dial afresh every time.
pub(crate) type Reuse<'a> = Option<&'a Scope>;

/// Resolves and checks `host:port` (see [`checked_addresses`]), then exchanges `request` on an
/// idle connection of the scope's pool to one of those addresses, else on a new one
/// ([`dial`]); the response body is capped at the operator's response-body limit, and gives
/// the connection back to the pool once read to its end. The peer address and body bytes go
/// into `traffic`.
pub(crate) async fn exchange(
    settings: &EgressSettings,
    (host, port): (&str, u16),
    mut request: Request<LimitedRequestBody>,
    timeouts: Timeouts,
    traffic: Arc<Traffic>,
    reuse: Reuse<'_>,
) -> Result<Response<LimitedResponseBody>, DialError> {
    let checked = checked_addresses(settings, host, port).await?;
    let pooled = reuse.and_then(|scope| {
        checked.iter().find_map(|addr| {
            let lease = settings.pool.take(&scope.key(host, port, *addr))?;
            Some((lease, *addr))
        })
    });
    let (mut lease, mut peer, mut reused) = match pooled {
        Some((lease, addr)) => (lease, addr, true),
        None => {
            let (lease, addr) =
                connect_new(settings, (host, port), &checked, timeouts, reuse).await?;
            (lease, addr, false)
        }
    };
    let response = loop {
        let sent = tokio::time::timeout(
            timeouts.first_byte,
            lease.sender().try_send_request(request),
        )
        .await
        .map_err(|_| {
            (
                Error::ConnectionReadTimeout,
                "first-byte-timeout".to_string(),
            )
        })?;
        match sent {
            Ok(response) => break response,
            // A pooled connection the server closed before the request went out: the request
            // was not sent, so it goes out once more on a new connection.
            Err(mut failed) if reused && failed.message().is_some() => {
                request = failed.take_message().expect("checked above");
                (lease, peer) =
                    connect_new(settings, (host, port), &checked, timeouts, reuse).await?;
                reused = false;
            }
            Err(failed) => {
                let e = failed.into_error();
                if e.is_parse_too_large() {
                    let limit = u32::try_from(settings.limits.response_head).ok();
                    return Err((
                        Error::HttpResponseHeaderSectionSize(limit),
                        "response-head-too-large".to_string(),
                    ));
                }
                let reason = if reused || !e.is_canceled() {
                    "exchange-failed"
                } else {
                    "connection-failed"
                };
                return Err((Error::from(e), reason.to_string()));
            }
        }
    };
    let _ = traffic.peer.set(peer.ip());
    let limit = settings.limits.response_body;
    // The connection is driven by a task of its own, owned by the response body: nothing is
    // left for the caller to drive.
    Ok(response
        .map(|incoming| LimitedResponseBody::new(incoming, limit, timeouts.idle, traffic, lease)))
}

/// Dials one of the `checked` addresses and opens an HTTP/1.1 connection on it, leased from
/// the scope's pool (TLS sessions resumed from the scope's own cache) or, without a scope, for
/// this exchange alone.
async fn connect_new(
    settings: &EgressSettings,
    (host, port): (&str, u16),
    checked: &[SocketAddr],
    timeouts: Timeouts,
    reuse: Reuse<'_>,
) -> Result<(Lease<LimitedRequestBody>, SocketAddr), DialError> {
    let tls_config = match reuse {
        Some(scope) => settings.pool.tls(scope, &settings.tls),
        None => settings.tls.clone(),
    };
    let tls = dial(checked, host, tls_config, timeouts.connect).await?;
    let peer = tls
        .get_ref()
        .0
        .peer_addr()
        .map_err(|_| (Error::ConnectionTerminated, "connection-failed".to_string()))?;
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_header_size(settings.limits.response_head)
        // The read buffer holds the response head, then one body chunk at a time: bounded, as
        // the host budget charges it (`PER_EXCHANGE`).
        .max_buf_size(settings.limits.response_head.max(8 * 1024) + 16 * 1024)
        .handshake(TokioIo::new(tls))
        .await
        .map_err(|e| (Error::from(e), "http-handshake".to_string()))?;
    let conn = Conn::spawn(sender, connection);
    let lease = match reuse {
        Some(scope) => settings.pool.lease(scope.key(host, port, peer), conn),
        None => Lease::single(conn),
    };
    Ok((lease, peer))
}

/// Resolves `host` once (or takes its `--resolve` pins) and keeps the addresses the classifier
/// passes: the only ones a request may be sent to, on a new connection or a pooled one.
async fn checked_addresses(
    settings: &EgressSettings,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, DialError> {
    let resolved = resolve(settings, host, port).await?;
    settings.classifier.filter(&resolved).map_err(|reason| {
        (
            Error::DestinationIpProhibited,
            format!("destination-ip-prohibited:{}", reason.code()),
        )
    })
}

/// Connects to a checked address and verifies the certificate for `host`.
async fn dial(
    checked: &[SocketAddr],
    host: &str,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, DialError> {
    let tcp = connect(checked, timeout).await?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| (Error::HttpRequestUriInvalid, "invalid-url".to_string()))?;
    tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
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
