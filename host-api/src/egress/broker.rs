//! [`BrokeredHttp`]: the one choke point every guest HTTP request passes.
//!
//! In order (architecture §4): the guest URL is canonicalised and matched against the
//! integration's rules; per-invocation caps apply; the request is rewritten from the canonical
//! target (origin-form URI, `Host` from the checked authority); the name is resolved once (or
//! taken from a `--resolve` pin) and every address classified; only a checked address is
//! dialed, over TLS verified for the canonical name. Redirects are never followed and proxy
//! variables never read: a 3xx goes back to the guest, whose follow-up is judged anew.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HOST, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::BodyExt;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error, ForbiddenHeaderFilter, RequestOptions, WasiBody,
    WasiHttpHooks,
};

use super::body::{LimitedRequestBody, LimitedResponseBody};
use super::event::{Decision, EgressEvent, EgressLog};
use super::settings::EgressSettings;
use crate::policy::egress::EgressPolicy;

/// What one integration may reach: its rules, and the header names its credentials travel in
/// (which the guest may therefore never set itself).
#[derive(Debug, Clone, Default)]
pub struct IntegrationEgress {
    pub policy: EgressPolicy,
    pub credential_headers: Vec<HeaderName>,
}

/// Headers a guest may never set: they carry credentials or would re-route the request.
const GUEST_FORBIDDEN: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// The per-invocation broker behind the guest's `wasi:http/outgoing-handler`.
pub struct BrokeredHttp {
    egress: Arc<IntegrationEgress>,
    settings: Arc<EgressSettings>,
    log: EgressLog,
    sent: u32,
    in_flight: Arc<Semaphore>,
}

impl BrokeredHttp {
    pub fn new(egress: Arc<IntegrationEgress>, settings: Arc<EgressSettings>) -> Self {
        let in_flight = Arc::new(Semaphore::new(settings.limits.concurrent));
        Self {
            egress,
            settings,
            log: EgressLog::default(),
            sent: 0,
            in_flight,
        }
    }

    /// The events of this invocation's requests.
    pub fn log(&self) -> &EgressLog {
        &self.log
    }

    /// Decides a request before anything touches the network, rewriting it to its canonical
    /// form. On refusal, returns the guest-visible error and the event to record.
    fn admit(&mut self, request: &mut Request<WasiBody>) -> Result<Admitted, Box<Refusal>> {
        let method = request.method().as_str().to_string();
        let deny = |reason: &str, target: Option<String>, rule: Option<usize>, error: Error| {
            let event = EgressEvent {
                method: method.clone(),
                target,
                rule,
                decision: Decision::Denied,
                reason: Some(reason.to_string()),
                status: None,
                duration_us: 0,
            };
            Box::new((error, event))
        };
        if self.sent >= self.settings.limits.requests {
            return Err(deny(
                "request-limit",
                None,
                None,
                Error::ConnectionLimitReached,
            ));
        }
        self.sent += 1;
        let uri = request.uri().to_string();
        let allowed = self
            .egress
            .policy
            .check(request.method().as_str(), &uri)
            .map_err(|denial| deny(denial.code(), None, None, Error::HttpRequestDenied))?;
        let target = allowed.target.to_string();
        if allowed.rule.credential().is_some() {
            // Credentials are injected only together with response redaction; until both are
            // wired, a request that needs one fails closed rather than going out without it.
            return Err(deny(
                "credential-unavailable",
                Some(target),
                Some(allowed.rule_index),
                Error::HttpRequestDenied,
            ));
        }
        let invalid = || deny("invalid-url", None, None, Error::HttpRequestUriInvalid);
        *request.uri_mut() = allowed
            .target
            .path_and_query()
            .parse()
            .map_err(|_| invalid())?;
        let host = HeaderValue::from_str(&allowed.target.authority()).map_err(|_| invalid())?;
        request.headers_mut().insert(HOST, host);
        Ok(Admitted {
            host: allowed.target.host().to_string(),
            port: allowed.target.port(),
            target,
            rule: allowed.rule_index,
            method,
        })
    }
}

/// A refused request: the guest-visible error and the event to record.
type Refusal = (Error, EgressEvent);

/// A request the policy let through, with what the dialer and the event need.
struct Admitted {
    host: String,
    port: u16,
    target: String,
    rule: usize,
    method: String,
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture = Box<dyn Future<Output = Result<(Response<WasiBody>, IoFuture), Error>> + Send>;

impl WasiHttpHooks for BrokeredHttp {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let credential_headers = self.egress.credential_headers.clone();
        Arc::new(move |name| {
            DEFAULT_FORBIDDEN_HEADERS.contains(name)
                || GUEST_FORBIDDEN.contains(&name.as_str())
                || credential_headers.contains(name)
        })
    }

    // `is_supported_scheme` keeps its default (http and https) on purpose: the policy refuses
    // plain http itself, so the refusal is recorded like every other denial.

    fn set_host_header(&mut self) -> bool {
        // The broker sets `Host` from the checked target, never from the guest's authority.
        false
    }

    fn send_request(
        &mut self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_error: IoFuture,
    ) -> SendFuture {
        let started = Instant::now();
        let admitted = self.admit(&mut request);
        let log = self.log.clone();
        let settings = self.settings.clone();
        let in_flight = self.in_flight.clone();
        Box::new(async move {
            let admitted = match admitted {
                Ok(admitted) => admitted,
                Err(refused) => {
                    let (error, event) = *refused;
                    log.push(event);
                    return Err(error);
                }
            };
            let mut event = EgressEvent {
                method: admitted.method.clone(),
                target: Some(admitted.target.clone()),
                rule: Some(admitted.rule),
                decision: Decision::Allowed,
                reason: None,
                status: None,
                duration_us: 0,
            };
            let result = match in_flight.try_acquire_owned() {
                Ok(permit) => {
                    exchange(&settings, &admitted, request, options)
                        .await
                        .map(|(response, io)| {
                            // The permit lives as long as the connection: the body is still
                            // being read after the response head.
                            let io: IoFuture = Box::new(async move {
                                let _permit = permit;
                                Box::into_pin(io).await
                            });
                            (response, io)
                        })
                }
                Err(_) => Err((
                    Error::ConnectionLimitReached,
                    "concurrency-limit".to_string(),
                )),
            };
            event.duration_us = started.elapsed().as_micros() as u64;
            let outcome = match result {
                Ok((response, io)) => {
                    event.status = Some(response.status().as_u16());
                    Ok((response, io))
                }
                Err((error, reason)) => {
                    event.decision = if reason.starts_with("destination-ip") {
                        Decision::Denied
                    } else {
                        Decision::Failed
                    };
                    event.reason = Some(reason);
                    Err(error)
                }
            };
            log.push(event);
            outcome
        })
    }
}

/// Resolves, classifies, dials a checked address, negotiates TLS and exchanges the request.
/// Errors carry the guest-visible code and a reason code for the event.
async fn exchange(
    settings: &EgressSettings,
    admitted: &Admitted,
    request: Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<
    (
        Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    (Error, String),
> {
    let limits = &settings.limits;
    let clamp = |asked: Option<Duration>, max: Duration| {
        asked.map_or(max, |d| d.clamp(Duration::from_millis(1), max))
    };
    let connect_timeout = clamp(
        options.and_then(|o| o.connect_timeout),
        limits.connect_timeout,
    );
    let first_byte = clamp(
        options.and_then(|o| o.first_byte_timeout),
        limits.first_byte_timeout,
    );
    let idle = clamp(
        options.and_then(|o| o.between_bytes_timeout),
        limits.between_bytes_timeout,
    );

    let resolved = resolve(settings, &admitted.host, admitted.port).await?;
    let dial = settings.classifier.filter(&resolved).map_err(|reason| {
        (
            Error::DestinationIpProhibited,
            format!("destination-ip-prohibited:{}", reason.code()),
        )
    })?;
    let tcp = connect(&dial, connect_timeout).await?;
    let name = ServerName::try_from(admitted.host.clone())
        .map_err(|_| (Error::HttpRequestUriInvalid, "invalid-url".to_string()))?;
    let tls = tokio::time::timeout(
        connect_timeout,
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
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| (Error::from(e), "http-handshake".to_string()))?;

    let request = request.map(|body| LimitedRequestBody::new(body, limits.request_body));
    let mut connection = Box::pin(connection);
    let mut send = Box::pin(tokio::time::timeout(
        first_byte,
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
        .map_err(|e| (Error::from(e), "exchange-failed".to_string()))?;
    let limit = limits.response_body;
    let response =
        response.map(|incoming| LimitedResponseBody::new(incoming, limit, idle).boxed_unsync());
    Ok((
        response,
        Box::new(async move { connection.await.map_err(Error::from) }),
    ))
}

/// The addresses to try: the `--resolve` pins for this host, else one system resolution.
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
    let lookup = tokio::net::lookup_host((host, port));
    match tokio::time::timeout(settings.limits.dns_timeout, lookup).await {
        Err(_) => Err((Error::DnsTimeout, "dns-timeout".to_string())),
        Ok(Err(_)) => Err((
            Error::DnsError {
                rcode: None,
                info_code: None,
            },
            "dns-error".to_string(),
        )),
        Ok(Ok(addrs)) => Ok(addrs.collect()),
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
