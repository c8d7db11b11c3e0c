//! Metrics in the Prometheus text format, derived from audit records.
//!
//! Counting the trail (rather than keeping separate counters) means the numbers an operator
//! alerts on are the numbers the signed trail proves. Label values come from Airlock's own
//! vocabularies (outcome classes, decisions, reason codes, event types) and are checked again
//! here: anything else becomes `other`, so no customer data can reach a label.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use airlock_host_api::audit::AuditEvent;
use airlock_host_api::egress::Decision;

use super::record::{self, Envelope};
use super::{AuditError, AuditTrail};

/// Upper bounds (seconds) of the invocation duration histogram.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// Counters accumulated from records.
#[derive(Debug, Default)]
pub struct Metrics {
    records: u64,
    invocations: BTreeMap<String, u64>,
    buckets: [u64; BUCKETS.len()],
    duration_sum: f64,
    duration_count: u64,
    egress: BTreeMap<String, u64>,
    denials: BTreeMap<String, u64>,
    redactions: u64,
    security: BTreeMap<String, u64>,
}

impl Metrics {
    /// Counts the trail's records from sequence number `from` on (damaged ones are skipped:
    /// `audit verify` reports them); returns the next sequence number to count.
    pub fn count(&mut self, trail: &AuditTrail, from: u64) -> Result<u64, AuditError> {
        let mut next = from;
        for line in trail.lines_from(from) {
            let (seq, line) = line?;
            if let Ok(record) = record::open(&line) {
                self.observe(&record.envelope);
            }
            next = seq + 1;
        }
        Ok(next)
    }

    /// Counts one record.
    pub fn observe(&mut self, envelope: &Envelope) {
        self.records += 1;
        if envelope.security {
            *self
                .security
                .entry(label(envelope.event.kind()))
                .or_default() += 1;
        }
        let AuditEvent::Invocation(record) = &envelope.event else {
            return;
        };
        *self.invocations.entry(label(&record.outcome)).or_default() += 1;
        let seconds = record.duration_us as f64 / 1e6;
        for (bucket, bound) in self.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.duration_sum += seconds;
        self.duration_count += 1;
        self.redactions += record.redactions;
        let detailed = record
            .egress
            .iter()
            .map(|e| (e.decision, e.reason.as_deref(), 1));
        let suppressed = record
            .egress_suppressed
            .iter()
            .map(|s| (s.decision, s.reason.as_deref(), s.count));
        for (decision, reason, count) in detailed.chain(suppressed) {
            self.count_egress(decision, reason, count);
        }
    }

    fn count_egress(&mut self, decision: Decision, reason: Option<&str>, count: u64) {
        let name = match decision {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Failed => "failed",
        };
        *self.egress.entry(name.to_string()).or_default() += count;
        if decision == Decision::Denied {
            let reason = label(reason.unwrap_or("unspecified"));
            *self.denials.entry(reason).or_default() += count;
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        counter(
            &mut out,
            "airlock_audit_records_total",
            "Records in the audit trail.",
        );
        let _ = writeln!(out, "airlock_audit_records_total {}", self.records);
        labelled(
            &mut out,
            "airlock_invocations_total",
            "Invocations by outcome class.",
            "outcome",
            &self.invocations,
        );
        self.render_durations(&mut out);
        labelled(
            &mut out,
            "airlock_egress_requests_total",
            "Egress attempts by decision.",
            "decision",
            &self.egress,
        );
        labelled(
            &mut out,
            "airlock_egress_denials_total",
            "Denied egress attempts by reason code.",
            "reason",
            &self.denials,
        );
        counter(
            &mut out,
            "airlock_redactions_total",
            "Echoes of injected credentials scrubbed from responses.",
        );
        let _ = writeln!(out, "airlock_redactions_total {}", self.redactions);
        labelled(
            &mut out,
            "airlock_security_events_total",
            "Security-flagged audit records by event type.",
            "type",
            &self.security,
        );
        out
    }

    fn render_durations(&self, out: &mut String) {
        let name = "airlock_invocation_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Invocation wall-clock duration.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (count, bound) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.duration_count);
        let _ = writeln!(out, "{name}_sum {}", self.duration_sum);
        let _ = writeln!(out, "{name}_count {}", self.duration_count);
    }
}

fn counter(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
}

fn labelled(out: &mut String, name: &str, help: &str, key: &str, values: &BTreeMap<String, u64>) {
    counter(out, name, help);
    for (value, count) in values {
        let _ = writeln!(out, "{name}{{{key}=\"{value}\"}} {count}");
    }
}

/// A label value from Airlock's vocabularies: short kebab-case, else `other`.
fn label(value: &str) -> String {
    let ok = !value.is_empty()
        && value.len() <= 48
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { value } else { "other" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_outside_the_vocabulary_become_other() {
        assert_eq!(label("host-not-allowed"), "host-not-allowed");
        assert_eq!(label("Canary\"} 1\nfake 2"), "other");
        assert_eq!(label(""), "other");
        assert_eq!(label(&"a".repeat(49)), "other");
    }
}
