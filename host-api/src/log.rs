//! The `log` capability and captured stdio: the author's debugging text, kept apart from audit.
//!
//! Guest text may quote customer data, so it is capped per invocation, escaped so that no
//! guest-controlled byte can forge a line or drive a terminal (CWE-117), and handed only to
//! whoever ran the action.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use crate::bindings::log;

/// Where a guest log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogSource {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Stdout,
    Stderr,
}

impl LogSource {
    /// A fixed-width label for terminal output.
    pub fn label(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

impl From<log::Level> for LogSource {
    fn from(level: log::Level) -> Self {
        match level {
            log::Level::Trace => Self::Trace,
            log::Level::Debug => Self::Debug,
            log::Level::Info => Self::Info,
            log::Level::Warn => Self::Warn,
            log::Level::Error => Self::Error,
        }
    }
}

/// One line of guest output, already escaped: safe to print or store as one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub source: LogSource,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    /// The message and its fields as `message key=value …`, as every report shows a line.
    pub fn text(&self) -> String {
        let mut text = self.message.clone();
        for (key, value) in &self.fields {
            text.push_str(&format!(" {key}={value}"));
        }
        text
    }
}

/// Everything a guest said in one invocation, and how much was dropped past the cap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GuestLog {
    pub lines: Vec<LogLine>,
    /// Lines (or stdio fragments) dropped because the cap was reached.
    pub dropped: u64,
}

/// The shared, capped buffer behind the `log` import and the guest's stdout and stderr.
///
/// Cloning shares the buffer: the stdio streams wasmtime-wasi holds and the `log` host impl
/// all write into the one the invocation reads at the end.
#[derive(Debug, Clone)]
pub struct LogCtx {
    inner: Arc<Mutex<Buffer>>,
}

#[derive(Debug)]
struct Buffer {
    log: GuestLog,
    /// Bytes of escaped text kept so far, with each line's overhead, against `cap`.
    used: u64,
    cap: u64,
    /// Unterminated stdout/stderr text waiting for its newline.
    partial: [Vec<u8>; 2],
}

/// What a kept line costs besides its text (the `LogLine` and its strings' headers), and each
/// field's pair of strings.
const LINE_OVERHEAD: u64 = 64;
const FIELD_OVERHEAD: u64 = 48;

impl LogCtx {
    /// Bytes the host holds for this log: kept lines with their overhead, and stdio text
    /// waiting for its newline. Bounded by the cap (twice over, at most, with pending stdio).
    pub fn held(&self) -> u64 {
        let buf = self.lock();
        buf.used + buf.partial.iter().map(|p| p.capacity() as u64).sum::<u64>()
    }

    /// A buffer that keeps at most `cap` bytes of escaped text.
    pub fn new(cap: u64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Buffer {
                log: GuestLog::default(),
                used: 0,
                cap,
                partial: [Vec::new(), Vec::new()],
            })),
        }
    }

    /// Takes what was logged, flushing unterminated stdio text as final lines.
    pub fn take(&self) -> GuestLog {
        let mut buf = self.lock();
        for (slot, source) in [(0, LogSource::Stdout), (1, LogSource::Stderr)] {
            let rest = std::mem::take(&mut buf.partial[slot]);
            if !rest.is_empty() {
                buf.push(
                    source,
                    String::from_utf8_lossy(&rest).into_owned(),
                    Vec::new(),
                );
            }
        }
        std::mem::take(&mut buf.log)
    }

    /// Appends raw stdio bytes, splitting them into lines.
    pub(crate) fn write_stdio(&self, source: LogSource, bytes: &[u8]) {
        let slot = usize::from(source == LogSource::Stderr);
        let mut buf = self.lock();
        if buf.used >= buf.cap {
            buf.log.dropped += 1;
            return;
        }
        let mut pending = std::mem::take(&mut buf.partial[slot]);
        pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&pending[start..start + end]).into_owned();
            buf.push(source, line, Vec::new());
            start += end + 1;
        }
        pending.drain(..start);
        // A guest that never writes a newline must not grow the pending buffer past the cap.
        if pending.len() as u64 > buf.cap {
            let line = String::from_utf8_lossy(&pending).into_owned();
            buf.push(source, line, Vec::new());
            pending.clear();
        }
        buf.partial[slot] = pending;
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // The buffer holds plain data: a panic elsewhere cannot leave it inconsistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Buffer {
    fn push(&mut self, source: LogSource, message: String, fields: Vec<(String, String)>) {
        let remaining = self.cap.saturating_sub(self.used);
        if remaining == 0 {
            self.log.dropped += 1;
            return;
        }
        let mut budget = remaining as usize;
        let message = escape(message, &mut budget);
        let fields: Vec<_> = fields
            .into_iter()
            .map(|(k, v)| (escape(k, &mut budget), escape(v, &mut budget)))
            .collect();
        // A line costs its bookkeeping too, so a flood of empty lines meets the cap as well.
        let overhead = LINE_OVERHEAD + FIELD_OVERHEAD * fields.len() as u64;
        self.used += (remaining as usize - budget) as u64 + overhead;
        self.log.lines.push(LogLine {
            source,
            message,
            fields,
        });
    }
}

impl log::Host for LogCtx {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        self.lock().push(level.into(), message, fields);
    }
}

/// Escapes control characters and bidirectional overrides, spending at most `budget` bytes.
///
/// Newlines, escape sequences and bidi controls are what let logged text forge records or
/// rewrite a terminal; everything else printable passes through unchanged, a run at a time.
/// Text past the budget is cut at a character boundary and ends in `…`. Text with nothing to
/// escape that fits is kept as it is, without a copy.
fn escape(text: String, budget: &mut usize) -> String {
    if text.len() <= *budget && !text.contains(dangerous) {
        *budget -= text.len();
        return text;
    }
    let mut out = String::with_capacity(text.len().min(*budget));
    let mut rest = text.as_str();
    loop {
        let (run, tail) = rest.split_at(rest.find(dangerous).unwrap_or(rest.len()));
        if run.len() > *budget {
            let mut cut = *budget;
            while !run.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push_str(&run[..cut]);
            return cut_short(out, budget);
        }
        out.push_str(run);
        *budget -= run.len();
        let Some(c) = tail.chars().next() else {
            return out;
        };
        let escaped = c.escape_default();
        if escaped.len() > *budget {
            return cut_short(out, budget);
        }
        *budget -= escaped.len();
        out.extend(escaped);
        rest = &tail[c.len_utf8()..];
    }
}

fn dangerous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Ends text that ran out of budget with `…`, and spends the rest.
fn cut_short(mut out: String, budget: &mut usize) -> String {
    out.push('…');
    *budget = 0;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::log::Host;

    #[test]
    fn a_line_shows_its_fields_after_its_message() {
        let line = LogLine {
            source: LogSource::Info,
            message: "normalized".into(),
            fields: vec![
                ("name_words".into(), "2".into()),
                ("ok".into(), "true".into()),
            ],
        };
        assert_eq!(line.text(), "normalized name_words=2 ok=true");
    }

    #[test]
    fn control_characters_and_bidi_overrides_are_escaped() {
        let cases = [
            ("plain text", "plain text"),
            ("two\nlines", "two\\nlines"),
            ("\u{1b}[31mred", "\\u{1b}[31mred"),
            ("carriage\rreturn", "carriage\\rreturn"),
            ("rtl \u{202E}txt", "rtl \\u{202e}txt"),
            ("nul\0byte", "nul\\u{0}byte"),
            ("accents: é ü 日本", "accents: é ü 日本"),
        ];
        for (input, expected) in cases {
            let mut budget = usize::MAX;
            assert_eq!(escape(input.into(), &mut budget), expected, "{input:?}");
        }
    }

    #[test]
    fn escaping_spends_the_budget_a_character_at_a_time() {
        // What escaping one character at a time gives, cut where the next one does not fit.
        fn by_character(text: &str, budget: &mut usize) -> String {
            let mut out = String::new();
            for c in text.chars() {
                let piece: String = if dangerous(c) {
                    c.escape_default().collect()
                } else {
                    c.into()
                };
                if piece.len() > *budget {
                    *budget = 0;
                    return out + "…";
                }
                *budget -= piece.len();
                out += &piece;
            }
            out
        }
        let texts = ["plain ascii", "é日本\n\u{202E}x\u{1b}", "\0\0", "", "ü\tü"];
        for text in texts {
            for limit in 0..=text.len() * 10 + 1 {
                let (mut fast, mut slow) = (limit, limit);
                let escaped = escape(text.into(), &mut fast);
                assert_eq!(
                    escaped,
                    by_character(text, &mut slow),
                    "{text:?} in {limit}"
                );
                assert_eq!(fast, slow, "budget left, {text:?} in {limit}");
            }
        }
    }

    #[test]
    fn log_lines_stop_at_the_cap_and_count_what_was_dropped() {
        let mut ctx = LogCtx::new(100);
        for i in 0..50 {
            ctx.log(log::Level::Info, format!("line {i:02} padding"), vec![]);
        }
        let log = ctx.take();
        let kept: usize = log.lines.iter().map(|l| l.message.len()).sum();
        assert!(kept <= 100 + '…'.len_utf8(), "kept {kept} bytes");
        assert_eq!(log.lines.len() as u64 + log.dropped, 50);
        assert!(log.dropped > 40);
    }

    #[test]
    fn stdio_is_split_into_lines_and_flushed_at_the_end() {
        let ctx = LogCtx::new(1 << 20);
        ctx.write_stdio(LogSource::Stdout, b"hello\nwor");
        ctx.write_stdio(LogSource::Stderr, b"oops\n");
        ctx.write_stdio(LogSource::Stdout, b"ld\ntail");
        let lines: Vec<_> = ctx
            .take()
            .lines
            .into_iter()
            .map(|l| (l.source, l.message))
            .collect();
        assert_eq!(
            lines,
            [
                (LogSource::Stdout, "hello".to_string()),
                (LogSource::Stderr, "oops".to_string()),
                (LogSource::Stdout, "world".to_string()),
                (LogSource::Stdout, "tail".to_string()),
            ]
        );
    }

    #[test]
    fn stdio_without_newlines_cannot_grow_past_the_cap() {
        let ctx = LogCtx::new(64);
        for _ in 0..1000 {
            ctx.write_stdio(LogSource::Stdout, &[b'x'; 50]);
        }
        let log = ctx.take();
        let kept: usize = log.lines.iter().map(|l| l.message.len()).sum();
        assert!(kept <= 64 + '…'.len_utf8());
        assert!(log.dropped > 900);
    }
}
