//! OpenTelemetry traces (docs/operate.md, "Traces"): a tracing layer that turns Airlock's own
//! spans (targets `airlock…`: each API request, invocation, instantiation, guest run, egress
//! attempt, audit append and queued run) into OTLP spans and exports them over OTLP/HTTP as
//! JSON, in batches, from a thread of its own.
//!
//! Span attributes are the fields the code gives its spans, which are metadata only (the audit
//! trail's rule: ids, classes, decisions, rule numbers; never an input, output, body, header
//! value, path or query). A caller's W3C `traceparent` on an API request makes its span a child
//! of the caller's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use http::{Method, Request, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Spans waiting for the exporter; beyond this, new ones are dropped (and counted).
const QUEUE: usize = 8192;
/// The most spans in one export.
const BATCH: usize = 512;
/// How long finished spans wait for a batch to fill.
const INTERVAL: Duration = Duration::from_secs(1);
/// The field that carries a caller's W3C trace context into a span (named as its header);
/// never an attribute.
pub use airlock_host_api::egress::trace::TRACEPARENT;

/// Why traces cannot be exported to an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// Not echoed: a URL with a password in it would be.
    #[error(
        "--otlp-endpoint: give http://HOST:PORT[/PATH] of a collector, with no user, password or \
         query (OTLP/HTTP; put the collector beside the server and let it forward with TLS)"
    )]
    Endpoint,
    #[error("cannot start the trace exporter: {0}")]
    Start(std::io::Error),
}

/// Whether a span is one of Airlock's own.
pub fn is_ours(metadata: &Metadata<'_>) -> bool {
    metadata.is_span() && metadata.target().starts_with("airlock")
}

/// A span being recorded.
struct Open {
    trace: [u8; 16],
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    start: u64,
    attributes: Vec<(String, Value)>,
}

/// A span ended, ready to export.
struct Finished {
    name: &'static str,
    trace: [u8; 16],
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    start: u64,
    end: u64,
    attributes: Vec<(String, Value)>,
}

/// The layer: records Airlock's spans and hands each ended one to the exporter.
pub struct OtlpLayer {
    finished: SyncSender<Finished>,
    /// Spans dropped because the queue was full; the exporter says how many.
    dropped: Arc<AtomicU64>,
}

impl OtlpLayer {
    /// Starts the exporter thread, sending to `endpoint` (`http://HOST:PORT[/PATH]`; spans go
    /// to `PATH/v1/traces`) as `service.name = airlock` on `node`.
    pub fn start(endpoint: &str, node: &str) -> Result<Self, OtlpError> {
        let url = url::Url::parse(endpoint)
            .ok()
            .filter(|u| {
                u.scheme() == "http"
                    && u.host_str().is_some()
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.query().is_none()
                    && u.fragment().is_none()
            })
            .ok_or(OtlpError::Endpoint)?;
        let (finished, queue) = std::sync::mpsc::sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let exporter = Exporter {
            dropped: dropped.clone(),
            url,
            resource: json!({"attributes": [
                attribute("service.name", json!("airlock")),
                attribute("service.version", json!(env!("CARGO_PKG_VERSION"))),
                attribute("service.instance.id", json!(node)),
            ]}),
        };
        std::thread::Builder::new()
            .name("airlock-otlp".into())
            .spawn(move || exporter.run(queue))
            .map_err(OtlpError::Start)?;
        airlock_host_api::egress::trace::set_context(traceparent_of);
        Ok(Self { finished, dropped })
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let from_parent = span.parent().and_then(|parent| {
            let extensions = parent.extensions();
            extensions.get::<Open>().map(|open| (open.trace, open.id))
        });
        let (trace, parent) = match (from_parent, fields.traceparent.as_deref().and_then(parse)) {
            (Some((trace, parent)), _) | (None, Some((trace, parent))) => (trace, Some(parent)),
            (None, None) => (rand::random(), None),
        };
        span.extensions_mut().insert(Open {
            trace,
            id: nonzero_id(),
            parent,
            start: now_ns(),
            attributes: fields.attributes,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(open) = span.extensions_mut().get_mut::<Open>() {
            for (key, value) in fields.attributes {
                open.attributes.retain(|(k, _)| *k != key);
                open.attributes.push((key, value));
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let finished = Finished {
            name: span.name(),
            trace: open.trace,
            id: open.id,
            parent: open.parent,
            start: open.start,
            end: now_ns(),
            attributes: open.attributes,
        };
        if let Err(TrySendError::Full(_)) = self.finished.try_send(finished) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A span's fields: its attributes, and the caller's trace context if it carries one.
#[derive(Default)]
struct Fields {
    attributes: Vec<(String, Value)>,
    traceparent: Option<String>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        self.attributes.push((field.name().to_string(), value));
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == TRACEPARENT {
            self.traceparent = Some(value.to_string());
        } else {
            self.put(field, json!({"stringValue": value}));
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, json!({"boolValue": value}));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, json!({"intValue": value.to_string()}));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, json!({"intValue": value.to_string()}));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, json!({"doubleValue": value}));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// The `traceparent` that names `span` as the parent, for egress rules with `trace = true`.
fn traceparent_of(span: &tracing::Span) -> Option<String> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let data = registry.span(id)?;
        let extensions = data.extensions();
        let open = extensions.get::<Open>()?;
        Some(format!(
            "00-{}-{}-01",
            hex::encode(open.trace),
            hex::encode(open.id)
        ))
    })
    .flatten()
}

/// The trace id and parent span id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`),
/// if it is one: version 00, neither id all zeros.
pub fn parse(traceparent: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "00" || flags.len() != 2 {
        return None;
    }
    let lower = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower(trace) || !lower(parent) || !lower(flags) {
        return None;
    }
    let trace: [u8; 16] = hex::decode(trace).ok()?.try_into().ok()?;
    let parent: [u8; 8] = hex::decode(parent).ok()?.try_into().ok()?;
    (trace != [0; 16] && parent != [0; 8]).then_some((trace, parent))
}

fn nonzero_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn attribute(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

/// Sends batches of finished spans to the collector.
struct Exporter {
    dropped: Arc<AtomicU64>,
    url: url::Url,
    resource: Value,
}

impl Exporter {
    fn run(self, queue: Receiver<Finished>) {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            match queue.recv_timeout(INTERVAL) {
                Ok(span) => {
                    batch.push(span);
                    if batch.len() < BATCH {
                        continue;
                    }
                }
                Err(RecvTimeoutError::Timeout) if batch.is_empty() => continue,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let body = self.document(&batch);
            batch.clear();
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                tracing::warn!(dropped, "spans were dropped: the exporter fell behind");
            }
            if let Err(e) = runtime.block_on(self.post(body)) {
                tracing::warn!(error = %e, "traces could not be exported");
            }
        }
    }

    /// An `ExportTraceServiceRequest`, in OTLP's JSON encoding.
    fn document(&self, spans: &[Finished]) -> Bytes {
        let spans: Vec<Value> = spans
            .iter()
            .map(|span| {
                let mut value = json!({
                    "traceId": hex::encode(span.trace),
                    "spanId": hex::encode(span.id),
                    "name": span.name,
                    "kind": kind(span.name),
                    "startTimeUnixNano": span.start.to_string(),
                    "endTimeUnixNano": span.end.to_string(),
                    "attributes": span
                        .attributes
                        .iter()
                        .map(|(k, v)| attribute(k, v.clone()))
                        .collect::<Vec<_>>(),
                });
                if let Some(parent) = span.parent {
                    value["parentSpanId"] = json!(hex::encode(parent));
                }
                value
            })
            .collect();
        let document = json!({"resourceSpans": [{
            "resource": self.resource,
            "scopeSpans": [{"scope": {"name": "airlock", "version": env!("CARGO_PKG_VERSION")}, "spans": spans}],
        }]});
        Bytes::from(document.to_string())
    }

    async fn post(&self, body: Bytes) -> Result<(), String> {
        let host = self.url.host_str().unwrap_or_default().to_string();
        let port = self.url.port_or_known_default().unwrap_or(80);
        let path = format!("{}/v1/traces", self.url.path().trim_end_matches('/'));
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, format!("{host}:{port}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .map_err(|_| "the collector did not answer".to_string())?
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {}", response.status()))
        }
    }
}

/// OTLP's span kind: a request served (`SERVER`), a request sent upstream (`CLIENT`), or work
/// inside one (`INTERNAL`), whatever the span's parent.
fn kind(name: &str) -> u8 {
    match name {
        "api.request" => 2,
        "egress" => 3,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_traceparent_is_taken() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (trace, parent) = parse(good).expect("valid");
        assert_eq!(hex::encode(trace), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(parent), "00f067aa0ba902b7");
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
