//! Logs on stderr: `--log-format human` (the default) or `json`, one object per line for a log
//! collector; `AIRLOCK_LOG` filters them (docs/cli.md, "Logs").
//!
//! A JSON line is `{"timestamp", "level", "target", "fields": {"message", …}, "spans": [{"name",
//! …}]}`, the shape of tracing-subscriber's own JSON layer, written here with serde_json.
//! `serve`'s own notices (where it listens, the store check, warnings) go through [`info`] and
//! [`warn`], so in JSON mode every line on stderr is JSON.

use std::fmt;
use std::sync::OnceLock;

use airlock_server::telemetry::{self, OtlpLayer};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Lines for people
    #[default]
    Human,
    /// One JSON object per line
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Installs the subscriber: log lines filtered by `AIRLOCK_LOG` if set, else warnings (and
/// `serve`'s notices in JSON mode, where a collector wants them); and, given `traces`,
/// Airlock's spans exported as OpenTelemetry traces whatever the log filter says.
pub(crate) fn init(format: LogFormat, traces: Option<OtlpLayer>) {
    let _ = FORMAT.set(format);
    let fallback = match format {
        LogFormat::Human => "warn",
        LogFormat::Json => "info",
    };
    let filter =
        EnvFilter::try_from_env("AIRLOCK_LOG").unwrap_or_else(|_| EnvFilter::new(fallback));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Human => lines.boxed(),
        LogFormat::Json => lines.fmt_fields(JsonFields).event_format(JsonLines).boxed(),
    };
    let traces = traces.map(|layer| layer.with_filter(filter_fn(telemetry::is_ours)));
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(traces)
        .init();
}

fn json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

/// A notice for the operator: a plain line, or an INFO record in JSON mode.
pub(crate) fn info(message: &str) {
    if json() {
        tracing::info!(target: "airlock", "{message}");
    } else {
        eprintln!("{message}");
    }
}

/// A warning: `warning: …`, or a WARN record in JSON mode.
pub(crate) fn warn(message: &str) {
    if json() {
        tracing::warn!(target: "airlock", "{message}");
    } else {
        eprintln!("warning: {message}");
    }
}

/// The error a command ends with: `error: …`, or an ERROR record in JSON mode.
pub(crate) fn error(message: &str, exit: u8) {
    if json() {
        tracing::error!(target: "airlock", exit, "{message}");
    } else {
        eprintln!("error: {message}");
    }
}

/// An event's or span's fields as a JSON object.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

/// Keeps each span's fields as JSON text, for [`JsonLines`] to read back.
struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = Fields::default();
        fields.record(&mut visitor);
        write!(writer, "{}", Value::Object(visitor.0))
    }

    /// Fields a span records after it began join its object (the default would append a
    /// second object to the text, which then no longer parses).
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut object: Map<String, Value> =
            serde_json::from_str(&current.fields).unwrap_or_default();
        let mut visitor = Fields::default();
        fields.record(&mut visitor);
        object.extend(visitor.0);
        current.fields = Value::Object(object).to_string();
        Ok(())
    }
}

/// Writes each event as one JSON object on its own line.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        line.insert("fields".into(), Value::Object(fields.0));
        let spans: Vec<Value> = ctx
            .event_scope()
            .into_iter()
            .flat_map(|scope| scope.from_root())
            .map(|span| {
                let mut object = span
                    .extensions()
                    .get::<FormattedFields<N>>()
                    .and_then(|text| serde_json::from_str::<Map<String, Value>>(text).ok())
                    .unwrap_or_default();
                object.insert("name".into(), span.name().into());
                Value::Object(object)
            })
            .collect();
        if !spans.is_empty() {
            line.insert("spans".into(), Value::Array(spans));
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn every_event_is_one_json_object_with_its_fields_and_spans() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "invoke",
                tenant = "acme",
                attempt = 2u64,
                outcome = tracing::field::Empty
            );
            span.record("outcome", "ok");
            let _entered = span.enter();
            tracing::warn!(
                denied = true,
                host = "evil.test",
                "egress \"denied\"\nnext line"
            );
        });
        let text =
            String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: Value = serde_json::from_str(lines[0]).expect("a JSON line");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["message"], "egress \"denied\"\nnext line");
        assert_eq!(line["fields"]["denied"], true);
        assert_eq!(line["fields"]["host"], "evil.test");
        assert_eq!(line["spans"][0]["name"], "invoke");
        assert_eq!(line["spans"][0]["tenant"], "acme");
        assert_eq!(line["spans"][0]["attempt"], 2);
        assert_eq!(
            line["spans"][0]["outcome"], "ok",
            "recorded after the span began"
        );
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
