//! The W3C trace context that requests of a rule with `trace = true` carry (docs/operate.md,
//! "Traces"). The host's tracer, when it has one, says what a span's `traceparent` is; without
//! one, no request carries any.

use std::sync::OnceLock;

use http::HeaderValue;
use tracing::Span;

/// The header's name.
pub const TRACEPARENT: &str = "traceparent";

static CONTEXT: OnceLock<fn(&Span) -> Option<String>> = OnceLock::new();

/// Sets how a span's `traceparent` is found: once per process; `false` if it was set already.
pub fn set_context(context: fn(&Span) -> Option<String>) -> bool {
    CONTEXT.set(context).is_ok()
}

/// The `traceparent` naming `span` as the parent, if the host traces.
pub(crate) fn traceparent(span: &Span) -> Option<HeaderValue> {
    let context = CONTEXT.get()?;
    HeaderValue::from_str(&context(span)?).ok()
}
