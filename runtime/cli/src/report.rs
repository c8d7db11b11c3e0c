//! How invocations are shown: the guest log and any error on stderr; to a person, a one-line
//! summary on stderr and the output alone on stdout so it can be piped; with `run --json`, the
//! output and the summary together as one JSON object on stdout.

use airlock_host_api::egress::{EgressEvent, Suppressed};
use airlock_host_api::log::GuestLog;

use airlock_runtime::invoke::Invocation;
use airlock_runtime::loader::Integration;
use airlock_runtime::units::ByteSize;

/// Prints the guest's log lines (already escaped by the host) to stderr.
pub(crate) fn print_guest_log(log: &GuestLog) {
    for line in &log.lines {
        eprintln!("[guest {:<6}] {}", line.source.label(), line.text());
    }
    if log.dropped > 0 {
        eprintln!(
            "[guest] … {} more line(s) dropped: the guest log is capped per invocation",
            log.dropped
        );
    }
}

/// Prints one line per egress attempt (metadata only: never bodies, header values or queries),
/// then the counts of attempts past the detailed ones.
pub(crate) fn print_egress(events: &[EgressEvent], suppressed: &[Suppressed]) {
    for event in events {
        let target = event.target.as_deref().unwrap_or("(refused)");
        let outcome = match (&event.status, &event.reason) {
            (Some(status), _) => format!("→ {status}"),
            (None, Some(reason)) => format!("({reason})"),
            (None, None) => String::new(),
        };
        let rule = event
            .rule
            .map_or(String::new(), |r| format!(" rule #{}", r + 1));
        eprintln!(
            "[egress {:<7}] {} {target} {outcome}{rule} {:.1} ms",
            format!("{:?}", event.decision).to_lowercase(),
            event.method,
            event.duration_us as f64 / 1000.0
        );
        if let Some(hint) = &event.hint {
            eprintln!("[egress {:<7}]   {}", "", hint.url);
            if let Some(rules) = &hint.rules {
                eprintln!("[egress {:<7}]   {rules}", "");
            }
        }
    }
    for s in suppressed {
        eprintln!(
            "[egress {:<7}] … {} more attempt(s) ({}), counted, not detailed",
            format!("{:?}", s.decision).to_lowercase(),
            s.count,
            s.reason.as_deref().unwrap_or("no reason")
        );
    }
}

/// Prints why the invocation failed, if it did, on stderr (with `--json` too: a person
/// watching a script still sees it).
pub(crate) fn print_error(invocation: &Invocation) {
    if let Err(error) = &invocation.result {
        eprintln!("error: {error}");
    }
}

/// Prints the summary on stderr, as one human line.
pub(crate) fn print_summary(invocation: &Invocation, integration: &Integration) {
    let summary = invocation.summary(integration);
    eprintln!(
        "airlock: {} · {} · {} in {:.2} ms · memory peak {} · host memory peak {}",
        summary.outcome,
        summary.integration,
        summary.action,
        invocation.duration.as_secs_f64() * 1000.0,
        ByteSize(summary.memory_peak_bytes),
        ByteSize(summary.host_memory_peak_bytes),
    );
}

/// `run --json`: one JSON object on stdout, the output (`null` when there is none) beside the
/// summary, so a reader tells the guest's output from the host's account without guessing.
pub(crate) fn print_json(invocation: &Invocation, integration: &Integration) -> anyhow::Result<()> {
    let document = serde_json::json!({
        "output": invocation.result.as_ref().ok(),
        "summary": invocation.summary(integration),
    });
    println!("{document}");
    Ok(())
}
