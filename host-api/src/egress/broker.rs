//! [`BrokeredHttp`]: the one choke point every guest HTTP request passes.
//!
//! In order (architecture §4): the guest URL is canonicalised and matched against the
//! integration's rules; per-invocation caps apply; the request is rewritten from the canonical
//! target (origin-form URI, `Host` from the checked authority); the name is resolved once (or
//! taken from a `--resolve` pin) and every address classified; only a checked address is
//! dialed, over TLS verified for the canonical name. Redirects are never followed and proxy
//! variables never read: a 3xx goes back to the guest, whose follow-up is judged anew.
//!
//! A request matched by a rule that names a credential gets it from the [`CredentialBroker`],
//! over https only, on exactly that request; the response's headers and body are then redacted
//! of every form of the value before the guest reads a byte.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use http::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, HOST, HeaderName, HeaderValue,
};
use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use wasmtime_wasi_http::{Error, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks};

use super::body::{LimitedRequestBody, RedactedResponseBody};
use super::event::{Decision, DenialHint, EgressEvent, EgressLog, RedactionTally, Traffic};
use super::fields;
use super::pool::Scope;
use super::redact::{BodyFilter, Encoding, RedactError, Redactor};
use super::settings::EgressSettings;
use super::tap::{Capture, TapBody};
use super::transport::{self, DialError, Timeouts};
use crate::audit::{EgressJournal, Subject};
use crate::budget::{BODY_BUFFER_CHUNKS, BODY_CHUNK_SIZE};
use crate::credentials::{CredentialBroker, CredentialSpec, Injection};
use crate::log::GuestLog;
use crate::policy::egress::{EgressPolicy, Method, RequestTarget};

/// What one integration may reach: its rules, and the credentials those rules name.
#[derive(Debug, Clone, Default)]
pub struct IntegrationEgress {
    policy: EgressPolicy,
    credentials: BTreeMap<String, CredentialSpec>,
    /// Header names the credentials travel in, which the guest may therefore never set.
    credential_headers: Vec<HeaderName>,
}

impl IntegrationEgress {
    pub fn new(policy: EgressPolicy, credentials: BTreeMap<String, CredentialSpec>) -> Self {
        let credential_headers = credentials
            .values()
            .filter_map(|spec| match spec {
                CredentialSpec::ApiKeyHeader(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        Self {
            policy,
            credentials,
            credential_headers,
        }
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// The declared credentials, by name.
    pub fn credentials(&self) -> &BTreeMap<String, CredentialSpec> {
        &self.credentials
    }
}

/// The per-invocation broker behind the guest's `wasi:http/outgoing-handler`.
pub struct BrokeredHttp {
    egress: Arc<IntegrationEgress>,
    settings: Arc<EgressSettings>,
    credentials: Arc<dyn CredentialBroker>,
    journal: Arc<dyn EgressJournal>,
    log: EgressLog,
    redactions: Arc<AtomicU64>,
    /// The redactor of every credential injected so far, to scrub the guest log with.
    injected: Arc<Mutex<Vec<Redactor>>>,
    sent: u32,
    in_flight: Arc<Semaphore>,
    /// Shared by every invocation of the same tenant (EG-26).
    tenant_in_flight: Arc<Semaphore>,
    /// Cancelled when the invocation ends: every request and connection still open stops.
    ended: CancellationToken,
    /// Whose pooled connections its requests may reuse.
    scope: Scope,
}

/// What the host holds per request in flight, charged to the host budget: the connection's
/// read buffer (response head and one body chunk), TLS records, one request body chunk.
pub const PER_EXCHANGE: u64 = 256 * 1024;

impl BrokeredHttp {
    /// A broker for one invocation for `subject`: `journal` makes each request's intent
    /// durable before it is sent; connections are reused only within the subject's tenant,
    /// installation and user.
    pub fn new(
        egress: Arc<IntegrationEgress>,
        settings: Arc<EgressSettings>,
        credentials: Arc<dyn CredentialBroker>,
        journal: Arc<dyn EgressJournal>,
        subject: &Subject,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(settings.limits.concurrent));
        let tenant_in_flight = settings
            .tenants
            .of(&subject.tenant, settings.limits.tenant_concurrent);
        let scope = Scope::new(
            &subject.tenant,
            &subject.installation,
            subject.user.as_deref(),
        );
        Self {
            egress,
            settings,
            credentials,
            journal,
            log: EgressLog::default(),
            redactions: Arc::default(),
            injected: Arc::default(),
            sent: 0,
            in_flight,
            tenant_in_flight,
            ended: CancellationToken::new(),
            scope,
        }
    }

    /// Aborts every request still waiting for its response and every connection still
    /// streaming a body: the invocation is over. [`EgressLog::take`] records them as aborted.
    pub fn end(&self) {
        self.ended.cancel();
    }

    /// Bytes the host holds for requests in flight (see [`PER_EXCHANGE`]).
    pub fn held(&self) -> u64 {
        let busy = self
            .settings
            .limits
            .concurrent
            .saturating_sub(self.in_flight.available_permits());
        busy as u64 * PER_EXCHANGE
    }

    /// The events of this invocation's requests.
    pub fn log(&self) -> &EgressLog {
        &self.log
    }

    /// How many echoes of injected credentials were scrubbed from responses so far.
    pub fn redactions(&self) -> u64 {
        self.redactions.load(Ordering::Relaxed)
    }

    /// Scrubs every form of every credential injected in this invocation from `log`, counting
    /// each as a redaction. The guest should never have held one (responses are scrubbed before
    /// it reads them); this covers what response redaction cannot see, such as a value an
    /// upstream split across two headers and the guest joined.
    pub fn scrub_log(&self, log: &mut GuestLog) {
        let injected = self.injected.lock().unwrap_or_else(PoisonError::into_inner);
        for redactor in injected.iter() {
            let scrubbed = redactor.scrub_log(log);
            self.redactions.fetch_add(scrubbed, Ordering::Relaxed);
        }
    }

    /// Decides a request before anything touches the network, rewriting it to its canonical
    /// form. On refusal, returns the guest-visible error and the event to record.
    fn admit(&mut self, request: &mut Request<WasiBody>) -> Result<Admitted, Box<Refusal>> {
        // Only a method a rule could allow is kept as sent: any other token is the guest's
        // own text (it could carry data) and is recorded as `OTHER`.
        let method = Method::from_request(request.method().as_str())
            .map_or("OTHER", Method::as_str)
            .to_string();
        let deny = |reason: &str, target: Option<String>, rule: Option<usize>, error: Error| {
            let event = EgressEvent {
                hint: None,
                method: method.clone(),
                target,
                via: None,
                target_hash: None,
                rule,
                credential: None,
                decision: Decision::Denied,
                reason: Some(reason.to_string()),
                status: None,
                retry_after_s: None,
                duration_us: 0,
                address: None,
                bytes_out: 0,
                bytes_in: 0,
                redactions: 0,
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
            .map_err(|denial| {
                let mut refusal = deny(denial.code(), None, None, Error::HttpRequestDenied);
                if self.settings.explain_denials {
                    let method = request.method().as_str();
                    // Without its query, as every report shows a target: a query carries the
                    // caller's data and the guest's, and a report may end up in a CI log.
                    let url = uri.split(['?', '#']).next().unwrap_or_default().to_string();
                    refusal.1.hint = Some(DenialHint {
                        rules: self.egress.policy.explain_denial(method, &uri),
                        url,
                    });
                }
                refusal
            })?;
        let target = allowed.target.to_string();
        let credential = match allowed.rule.credential() {
            None => None,
            Some(name) => {
                // Never over plain http, whatever switches are on (CR-18, EG-15).
                let spec = self
                    .egress
                    .credentials
                    .get(name)
                    .filter(|_| allowed.target.scheme() == "https");
                let Some(spec) = spec else {
                    let mut refused = deny(
                        "credential-unavailable",
                        Some(target),
                        Some(allowed.rule_index),
                        Error::HttpRequestDenied,
                    );
                    refused.1.via = Some(allowed.rule.url().to_string());
                    return Err(refused);
                };
                Some((name.to_string(), spec.clone()))
            }
        };
        if let Some(reason) = guest_smuggles(request, &allowed.target, credential.as_ref()) {
            return Err(deny(
                reason,
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
            via: allowed.rule.url().to_string(),
            rule_origin: allowed.rule.origin().to_string(),
            method,
            credential,
            trace: allowed.rule.traces(),
        })
    }
}

impl Drop for BrokeredHttp {
    /// A store dropped without [`BrokeredHttp::end`] (a cancelled invocation) still stops its
    /// requests.
    fn drop(&mut self) {
        self.ended.cancel();
    }
}

/// Why a request must not go out as the guest built it, judged once its rule is known (the
/// header names refused outright never get this far: docs/security-model.md):
/// `method-override` when a query parameter overrides the method the rule allowed;
/// `guest-credential` when a request the host injects `credential` into also carries one of the
/// guest's own, in a header or a query parameter (including the injected parameter's own name).
fn guest_smuggles(
    request: &Request<WasiBody>,
    target: &RequestTarget,
    credential: Option<&(String, CredentialSpec)>,
) -> Option<&'static str> {
    let query = target.query().unwrap_or_default();
    if fields::query_names(query).any(|name| fields::is_method_override_param(&name)) {
        return Some("method-override");
    }
    let (_, spec) = credential?;
    let injected_param = match spec {
        CredentialSpec::ApiKeyQuery(name) => Some(name.as_str()),
        _ => None,
    };
    let header = request
        .headers()
        .keys()
        .any(|name| fields::is_credential_carrier(name.as_str()));
    let param = fields::query_names(query).any(|name| {
        fields::is_credential_carrier(&name)
            || injected_param.is_some_and(|injected| injected.eq_ignore_ascii_case(&name))
    });
    (header || param).then_some("guest-credential")
}

/// A refused request: the guest-visible error and the event to record.
type Refusal = (Error, EgressEvent);

/// A request the policy let through, with what the dialer and the event need.
struct Admitted {
    host: String,
    port: u16,
    target: String,
    rule: usize,
    /// The matched rule's canonical URL, which the audit trail records in place of the target.
    via: String,
    /// The matched rule's origin, which a stored credential must be bound to.
    rule_origin: String,
    method: String,
    /// The credential to inject: its name and how it travels.
    credential: Option<(String, CredentialSpec)>,
    /// Whether the rule sends the trace context.
    trace: bool,
}

/// What `wasi:http` runs beside a response until its body is read; here it holds the
/// request's concurrency permits.
type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

type SendFuture = Box<dyn Future<Output = Result<(Response<WasiBody>, IoFuture), Error>> + Send>;

impl WasiHttpHooks for BrokeredHttp {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let credential_headers = self.egress.credential_headers.clone();
        Arc::new(move |name| {
            fields::is_refused_header(name)
                || credential_headers
                    .iter()
                    .any(|header| fields::same_header(header, name))
        })
    }

    // `is_supported_scheme` keeps its default (http and https) on purpose: the policy refuses
    // plain http itself, so the refusal is recorded like every other denial.

    fn set_host_header(&mut self) -> bool {
        // The broker sets `Host` from the checked target, never from the guest's authority.
        false
    }

    // What an outgoing body buffers while nobody reads it is host memory: keep it small and
    // charged (wasmtime-wasi-http's defaults are one chunk of 1 MiB, twice).
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        BODY_BUFFER_CHUNKS
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK_SIZE
    }

    fn send_request(
        &mut self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_error: IoFuture,
    ) -> SendFuture {
        let started = Instant::now();
        let admitted = self.admit(&mut request);
        // Metadata only, as the audit record: the method, the rule's number and origin, the
        // decision, its reason and the status; never the URL, a header or a body.
        let span = tracing::info_span!(
            "egress",
            http.request.method = tracing::field::Empty,
            airlock.egress.rule = tracing::field::Empty,
            airlock.egress.via = tracing::field::Empty,
            airlock.egress.decision = tracing::field::Empty,
            airlock.egress.reason = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        );
        let traced = span.clone();
        // The rule's choice, never the guest's: the host's context replaces whatever it sent.
        if let Ok(admitted) = &admitted
            && admitted.trace
            && let Some(context) = super::trace::traceparent(&span)
        {
            request
                .headers_mut()
                .insert(super::trace::TRACEPARENT, context);
        }
        let log = self.log.clone();
        let settings = self.settings.clone();
        let credentials = self.credentials.clone();
        let journal = self.journal.clone();
        let redactions = (self.redactions.clone(), self.injected.clone());
        let in_flight = self.in_flight.clone();
        let tenant_in_flight = self.tenant_in_flight.clone();
        let ended = self.ended.clone();
        let scope = self.scope.clone();
        Box::new(
            async move {
                let admitted = match admitted {
                    Ok(admitted) => admitted,
                    Err(refused) => {
                        let (error, event) = *refused;
                        trace(&traced, &event);
                        log.push(event, None);
                        return Err(error);
                    }
                };
                let mut event = EgressEvent {
                    hint: None,
                    method: admitted.method.clone(),
                    target: Some(admitted.target.clone()),
                    via: Some(admitted.via.clone()),
                    target_hash: None,
                    rule: Some(admitted.rule),
                    credential: admitted.credential.as_ref().map(|(name, _)| name.clone()),
                    decision: Decision::Allowed,
                    reason: None,
                    status: None,
                    retry_after_s: None,
                    duration_us: 0,
                    address: None,
                    bytes_out: 0,
                    bytes_in: 0,
                    redactions: 0,
                };
                // Registered first: if the invocation ends before this request does, it is recorded
                // as aborted, and the request stops with it.
                let pending = log.start(event.clone(), started);
                let traffic = Arc::new(Traffic {
                    capture: settings.tap.clone().map(Capture::new),
                    ..Traffic::default()
                });
                let exchange = async {
                    // No record, no request (AL-06/07).
                    let durable = journal.intent(&event).await;
                    if durable.is_err() {
                        return Err((Error::HttpRequestDenied, "audit-unavailable".to_string()));
                    }
                    let Ok(permit) = in_flight.try_acquire_owned() else {
                        return Err((
                            Error::ConnectionLimitReached,
                            "concurrency-limit".to_string(),
                        ));
                    };
                    // The tenant's other invocations may hold every slot: wait for one, as long
                    // as this invocation lasts (its end cancels the wait).
                    let tenant_permit = tenant_in_flight.acquire_owned().await.map_err(|_| {
                        (
                            Error::ConnectionLimitReached,
                            "tenant-concurrency-limit".to_string(),
                        )
                    })?;
                    let response = send(
                        &settings,
                        credentials.as_ref(),
                        &admitted,
                        (request, options),
                        redactions,
                        (traffic.clone(), &scope),
                    )
                    .await?;
                    // The permits live as long as the exchange: the body is still being read after
                    // the response head. They go when it ends, is dropped, or the invocation ends.
                    let ended = ended.clone();
                    let exchange = traffic.clone();
                    let io: IoFuture = Box::new(async move {
                        let _permits = (permit, tenant_permit);
                        tokio::select! {
                            biased;
                            () = ended.cancelled() => Ok(()),
                            () = exchange.settled() => Ok(()),
                        }
                    });
                    Ok((response, io))
                };
                let result = tokio::select! {
                    biased;
                    // Left pending in the log, which records it as aborted.
                    () = ended.cancelled() => return Err(Error::ConnectionTerminated),
                    result = exchange => result,
                };
                event.duration_us = started.elapsed().as_micros() as u64;
                let outcome = match result {
                    Ok((response, io)) => {
                        event.status = Some(response.status().as_u16());
                        event.retry_after_s = super::event::retry_after(
                            response.status().as_u16(),
                            response
                                .headers()
                                .get(http::header::RETRY_AFTER)
                                .map(|v| v.as_bytes()),
                            std::time::SystemTime::now(),
                        );
                        Ok((response, io))
                    }
                    Err((error, reason)) => {
                        event.decision = if reason.starts_with("destination-ip")
                            || reason.starts_with("credential-")
                            || reason == "audit-unavailable"
                        {
                            Decision::Denied
                        } else {
                            Decision::Failed
                        };
                        event.reason = Some(reason);
                        Err(error)
                    }
                };
                trace(&traced, &event);
                log.finish(pending, event, traffic);
                outcome
            }
            .instrument(span),
        )
    }
}

/// Records what the audit record of a request holds on its span.
fn trace(span: &tracing::Span, event: &EgressEvent) {
    span.record("http.request.method", event.method.as_str());
    if let Some(rule) = event.rule {
        span.record("airlock.egress.rule", rule);
    }
    if let Some(via) = &event.via {
        span.record("airlock.egress.via", via.as_str());
    }
    let decision = match event.decision {
        Decision::Allowed => "allowed",
        Decision::Denied => "denied",
        Decision::Failed => "failed",
    };
    span.record("airlock.egress.decision", decision);
    if let Some(reason) = &event.reason {
        span.record("airlock.egress.reason", reason.as_str());
    }
    if let Some(status) = event.status {
        span.record("http.response.status_code", status);
    }
}

/// Injects the credential (if the rule names one), exchanges the request, and wraps the
/// response in the redactor when a credential went out.
async fn send(
    settings: &EgressSettings,
    credentials: &dyn CredentialBroker,
    admitted: &Admitted,
    (mut request, options): (Request<WasiBody>, Option<RequestOptions>),
    (redactions, injected): (Arc<AtomicU64>, Arc<Mutex<Vec<Redactor>>>),
    (traffic, scope): (Arc<Traffic>, &Scope),
) -> Result<Response<WasiBody>, DialError> {
    let redactor = match &admitted.credential {
        None => None,
        Some((name, spec)) => {
            let refused = |code: &str| (Error::HttpRequestDenied, code.to_string());
            let secret = credentials
                .current(name, spec, &admitted.rule_origin)
                .await
                .map_err(|e| refused(e.code()))?;
            let injection =
                Injection::new(spec, &secret).map_err(|_| refused("credential-malformed"))?;
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let rewritten = injection.apply(request.headers_mut(), &path);
            *request.uri_mut() = rewritten
                .parse()
                .map_err(|_| refused("credential-malformed"))?;
            // Ask for a plain body: the redactor must see the bytes the guest will read.
            request
                .headers_mut()
                .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            // No redactor means no injection: never send a value we could not scrub.
            let redactor =
                Redactor::new(injection.forms()).ok_or_else(|| refused("credential-malformed"))?;
            injected
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(redactor.clone());
            Some(redactor)
        }
    };
    let limits = &settings.limits;
    let capture = traffic.capture.clone();
    if let Some(capture) = &capture {
        // A recording keeps the body the guest read, which must be the plain one.
        request
            .headers_mut()
            .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let scrub = redactor
            .clone()
            .zip(admitted.credential.as_ref().map(|(name, _)| name.clone()));
        capture.set_request(&admitted.method, sent_url(admitted, path), scrub);
    }
    let request =
        request.map(|body| LimitedRequestBody::new(body, limits.request_body, traffic.clone()));
    let timeouts = Timeouts::clamped(limits, options);
    let response = transport::exchange(
        settings,
        (&admitted.host, admitted.port),
        request,
        timeouts,
        traffic.clone(),
        Some(scope),
    )
    .await?;
    let Some(redactor) = redactor else {
        let response = response.map(|body| body.boxed_unsync());
        return Ok(tapped(response, capture));
    };
    let (mut parts, body) = response.into_parts();
    let encoding = Encoding::of_response(&parts.headers).map_err(|e| {
        let reason = match e {
            RedactError::UnsupportedTransferEncoding => "unsupported-transfer-encoding",
            _ => "unsupported-content-encoding",
        };
        (Error::HttpProtocolError, reason.to_string())
    })?;
    let tally = RedactionTally {
        invocation: redactions,
        exchange: traffic,
    };
    tally.add(redactor.redact_headers(&mut parts.headers));
    if !matches!(encoding, Encoding::Identity) {
        // The guest gets the decoded body, so the framing headers no longer describe it.
        parts.headers.remove(CONTENT_ENCODING);
    }
    // Redaction changes the length.
    parts.headers.remove(CONTENT_LENGTH);
    let filter = BodyFilter::new(&redactor, encoding, limits.response_body);
    let body = RedactedResponseBody::new(body, filter, redactor, tally);
    let response = Response::from_parts(parts, body.boxed_unsync());
    Ok(tapped(response, capture))
}

/// With a tap (recording only), the response body is copied for it as the guest reads it.
fn tapped(response: Response<WasiBody>, capture: Option<Arc<Capture>>) -> Response<WasiBody> {
    let Some(capture) = capture else {
        return response;
    };
    let (parts, body) = response.into_parts();
    capture.set_response(&parts);
    Response::from_parts(parts, TapBody::new(body, capture).boxed_unsync())
}

/// The URL a request went to, as a recording names it: scheme, host, the port unless it is the
/// default, then `path` (and query) as sent.
fn sent_url(admitted: &Admitted, path: &str) -> String {
    let scheme = if admitted.target.starts_with("http://") {
        "http"
    } else {
        "https"
    };
    let port = match (scheme, admitted.port) {
        ("https", 443) | ("http", 80) => String::new(),
        (_, port) => format!(":{port}"),
    };
    format!("{scheme}://{}{port}{path}", admitted.host)
}
