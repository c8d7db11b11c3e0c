//! Metrics derived from audit records, in the OpenMetrics text format (docs/audit.md).
//!
//! Counting the trail (rather than keeping separate counters) means the numbers an operator
//! alerts on are the numbers the signed trail proves. Label values come from Airlock's own
//! vocabularies (outcome classes, decisions, reason codes, event types) and are checked again
//! here: anything else becomes `other`, so no customer data can reach a label (the encoder
//! escapes nothing).
//!
//! `prometheus-client` writes the text: [`Metrics::registry`] is the one place the trail's
//! metrics are registered, for `airlock metrics` and for the server's `/metrics` (which adds
//! its own gauges to the same registry before [`exposition`]).

use std::collections::BTreeMap;

use airlock_host_api::audit::{AuditEvent, Change, InstallChange};
use airlock_host_api::egress::Decision;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::record::{self, Envelope};
use super::{AuditError, AuditTrail};

/// What `/metrics` serves: the text [`exposition`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the invocation duration histogram.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// Upper bounds of one installation's duration buckets: 0.5 ms doubling to 65 s (then +Inf),
/// fine enough to read percentiles from, small enough to keep for every installation.
const INSTALLATION_BUCKETS: usize = 18;

/// The percentiles each installation's durations are reported at.
const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

fn installation_bound(bucket: usize) -> f64 {
    0.0005 * f64::from(1u32 << bucket.min(31))
}

/// One installation's invocations: how many succeeded and failed, and their durations.
#[derive(Debug, Clone, Default)]
struct Installation {
    ok: u64,
    failed: u64,
    sum: f64,
    /// Counts per bucket of [`installation_bound`], the last unbounded.
    buckets: [u64; INSTALLATION_BUCKETS + 1],
}

impl Installation {
    fn observe(&mut self, ok: bool, seconds: f64) {
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        self.sum += seconds;
        let bucket = (0..INSTALLATION_BUCKETS)
            .find(|&b| seconds <= installation_bound(b))
            .unwrap_or(INSTALLATION_BUCKETS);
        self.buckets[bucket] += 1;
    }

    /// The `q` quantile, interpolated within its bucket as Prometheus's
    /// `histogram_quantile` does (the unbounded bucket answers its lower bound).
    fn quantile(&self, q: f64) -> f64 {
        let total = self.ok + self.failed;
        let rank = q * total as f64;
        let mut below = 0u64;
        for (bucket, &count) in self.buckets.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let lower = bucket.checked_sub(1).map_or(0.0, installation_bound);
                if bucket == INSTALLATION_BUCKETS {
                    return lower;
                }
                let upper = installation_bound(bucket);
                let within = (rank - below as f64) / count as f64;
                return lower + (upper - lower) * within.clamp(0.0, 1.0);
            }
            below += count;
        }
        0.0
    }
}

/// Counters accumulated from records.
#[derive(Debug)]
pub struct Metrics {
    records: u64,
    invocations: BTreeMap<String, u64>,
    durations: Histogram,
    egress: BTreeMap<String, u64>,
    denials: BTreeMap<String, u64>,
    redactions: u64,
    security: BTreeMap<String, u64>,
    /// By tenant and installation.
    installations: BTreeMap<(String, String), Installation>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            records: 0,
            invocations: BTreeMap::new(),
            durations: Histogram::new(BUCKETS),
            egress: BTreeMap::new(),
            denials: BTreeMap::new(),
            redactions: 0,
            security: BTreeMap::new(),
            installations: BTreeMap::new(),
        }
    }
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
        // An installation's series go with it: they would otherwise pile up with every
        // installation and tenant ever seen.
        match &envelope.event {
            AuditEvent::InstallationChanged {
                tenant,
                installation,
                change: InstallChange::Uninstalled,
                ..
            } => {
                self.installations
                    .remove(&(id_label(tenant), id_label(installation)));
            }
            AuditEvent::TenantChanged {
                tenant,
                change: Change::Deleted,
            } => {
                let tenant = id_label(tenant);
                self.installations.retain(|(t, _), _| *t != tenant);
            }
            _ => {}
        }
        let AuditEvent::Invocation(record) = &envelope.event else {
            return;
        };
        *self.invocations.entry(label(&record.outcome)).or_default() += 1;
        let seconds = record.duration_us as f64 / 1e6;
        self.durations.observe(seconds);
        self.installations
            .entry((
                id_label(&record.subject.tenant),
                id_label(&record.subject.installation),
            ))
            .or_default()
            .observe(record.outcome == "ok", seconds);
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

    /// Invocations counted so far: those that succeeded and those that failed.
    pub fn invocations(&self) -> (u64, u64) {
        let ok = self.invocations.get("ok").copied().unwrap_or(0);
        let all: u64 = self.invocations.values().sum();
        (ok, all - ok)
    }

    /// Security-flagged records counted so far.
    pub fn security_events(&self) -> u64 {
        self.security.values().sum()
    }

    /// A registry holding the trail's metrics as counted so far. Counters are registered
    /// without `_total`: the encoder adds it to their samples.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        registry.register(
            "airlock_audit_records",
            "Records in the audit trail",
            ConstCounter::new(self.records),
        );
        registry.register(
            "airlock_invocations",
            "Invocations by outcome class",
            Labelled::new("outcome", &self.invocations),
        );
        registry.register_with_unit(
            "airlock_invocation_duration",
            "Invocation wall-clock duration",
            Unit::Seconds,
            self.durations.clone(),
        );
        registry.register(
            "airlock_egress_requests",
            "Egress attempts by decision",
            Labelled::new("decision", &self.egress),
        );
        registry.register(
            "airlock_egress_denials",
            "Denied egress attempts by reason code",
            Labelled::new("reason", &self.denials),
        );
        registry.register(
            "airlock_redactions",
            "Echoes of injected credentials scrubbed from responses",
            ConstCounter::new(self.redactions),
        );
        registry.register(
            "airlock_security_events",
            "Security-flagged audit records by event type",
            Labelled::new("type", &self.security),
        );
        registry.register(
            "airlock_installation_invocations",
            "Invocations of each installation, by result (ok or failed): its success rate",
            PerInstallation::Results(self.installations.clone()),
        );
        registry.register_with_unit(
            "airlock_installation_invocation_duration",
            "Each installation's invocation durations at the 50th, 90th and 99th percentile",
            Unit::Seconds,
            PerInstallation::Percentiles(self.installations.clone()),
        );
        registry
    }
}

/// The OpenMetrics text of `registry`, ending in `# EOF`.
pub fn exposition(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// A counter with one label, one series per value, written in the order of the values (a
/// `Family` would write them in hash order, and `airlock metrics` would differ run to run).
#[derive(Debug)]
struct Labelled {
    key: &'static str,
    counts: Vec<(String, u64)>,
}

impl Labelled {
    fn new(key: &'static str, counts: &BTreeMap<String, u64>) -> Self {
        let counts = counts.iter().map(|(v, n)| (v.clone(), *n)).collect();
        Self { key, counts }
    }
}

impl EncodeMetric for Labelled {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (value, count) in &self.counts {
            encoder
                .encode_family(&[(self.key, value.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(count, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// Per-installation series, written in the order of tenant and installation.
#[derive(Debug)]
enum PerInstallation {
    Results(BTreeMap<(String, String), Installation>),
    Percentiles(BTreeMap<(String, String), Installation>),
}

impl EncodeMetric for PerInstallation {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Self::Results(installations) => {
                for ((tenant, installation), counts) in installations {
                    for (result, count) in [("ok", counts.ok), ("failed", counts.failed)] {
                        let labels = [
                            ("tenant", tenant.as_str()),
                            ("installation", installation.as_str()),
                            ("result", result),
                        ];
                        encoder
                            .encode_family(&labels)?
                            .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                    }
                }
            }
            Self::Percentiles(installations) => {
                for ((tenant, installation), durations) in installations {
                    for q in QUANTILES {
                        let quantile = q.to_string();
                        let labels = [
                            ("tenant", tenant.as_str()),
                            ("installation", installation.as_str()),
                            ("quantile", quantile.as_str()),
                        ];
                        encoder
                            .encode_family(&labels)?
                            .encode_gauge(&durations.quantile(q))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        match self {
            Self::Results(_) => MetricType::Counter,
            Self::Percentiles(_) => MetricType::Gauge,
        }
    }
}

/// A tenant or installation id as a label: ids are checked where they are made (1 to 64 of
/// `a-z`, `0-9`, `-`), and checked again here; anything else is `other`.
fn id_label(value: &str) -> String {
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { value } else { "other" }.to_string()
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

    /// A security record counted once, rendered, and read back by a strict OpenMetrics reader.
    #[test]
    fn the_exposition_is_openmetrics_with_the_documented_names() {
        let mut metrics = Metrics::default();
        metrics.observe(&Envelope {
            seq: 0,
            time: "2026-11-29T12:00:00.000Z".into(),
            prev: hex::encode(record::GENESIS),
            security: true,
            node: None,
            event: AuditEvent::TrustRefused {
                artifact: "a.airlock".into(),
                reason: "unsigned".into(),
            },
        });
        let text = exposition(&metrics.registry()).expect("renders");
        let parsed =
            airlock_testkit::openmetrics::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let types: Vec<(&str, &str)> = parsed
            .types
            .iter()
            .map(|(name, kind)| (name.as_str(), kind.as_str()))
            .collect();
        assert_eq!(
            types,
            [
                ("airlock_audit_records", "counter"),
                ("airlock_egress_denials", "counter"),
                ("airlock_egress_requests", "counter"),
                ("airlock_installation_invocation_duration_seconds", "gauge"),
                ("airlock_installation_invocations", "counter"),
                ("airlock_invocation_duration_seconds", "histogram"),
                ("airlock_invocations", "counter"),
                ("airlock_redactions", "counter"),
                ("airlock_security_events", "counter"),
            ]
        );
        assert_eq!(parsed.value("airlock_audit_records_total", &[]), Some(1.0));
        assert_eq!(
            parsed.value(
                "airlock_security_events_total",
                &[("type", "trust-refused")]
            ),
            Some(1.0)
        );
        assert_eq!(
            parsed.value(
                "airlock_invocation_duration_seconds_bucket",
                &[("le", "+Inf")]
            ),
            Some(0.0)
        );
        assert!(text.contains("\nairlock_invocation_duration_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.ends_with("\n# EOF\n"), "{text}");
    }

    #[test]
    fn each_installation_has_its_success_rate_and_duration_percentiles() {
        let mut metrics = Metrics::default();
        let runs = [
            ("crm", "ok", 2_000),
            ("crm", "ok", 3_000),
            ("crm", "guest-error", 900_000),
        ]
        .into_iter()
        .chain((0..97).map(|_| ("crm", "ok", 2_500)))
        .chain([("erp", "limit-timeout", 10_000_000)]);
        for (seq, (installation, outcome, duration_us)) in runs.enumerate() {
            let record = serde_json::from_value(serde_json::json!({
                "invocation": format!("{seq:032x}"),
                "tenant": "acme",
                "installation": installation,
                "integration": {"id": "acme/crm", "version": "1.0.0", "digest": "00"},
                "trigger": "schedule",
                "outcome": outcome,
                "duration_us": duration_us,
                "memory_peak_bytes": 0,
            }))
            .expect("an invocation record");
            metrics.observe(&Envelope {
                seq: seq as u64,
                time: "2026-12-06T12:00:00.000Z".into(),
                prev: hex::encode(record::GENESIS),
                security: false,
                node: None,
                event: AuditEvent::Invocation(Box::new(record)),
            });
        }
        let text = exposition(&metrics.registry()).expect("renders");
        let parsed =
            airlock_testkit::openmetrics::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let count = |installation: &str, result: &str| {
            parsed.value(
                "airlock_installation_invocations_total",
                &[
                    ("tenant", "acme"),
                    ("installation", installation),
                    ("result", result),
                ],
            )
        };
        assert_eq!(
            (count("crm", "ok"), count("crm", "failed")),
            (Some(99.0), Some(1.0))
        );
        assert_eq!(
            (count("erp", "ok"), count("erp", "failed")),
            (Some(0.0), Some(1.0))
        );
        let percentile = |installation: &str, q: &str| {
            parsed
                .value(
                    "airlock_installation_invocation_duration_seconds",
                    &[
                        ("tenant", "acme"),
                        ("installation", installation),
                        ("quantile", q),
                    ],
                )
                .expect("a percentile")
        };
        // 2 to 3 ms falls in the bucket (2 ms, 4 ms]; the one slow call is past the 99th.
        for q in ["0.5", "0.9"] {
            assert!(
                (0.002..=0.004).contains(&percentile("crm", q)),
                "{q}: {text}"
            );
        }
        assert!(percentile("crm", "0.99") <= 0.004, "{text}");
        assert!((8.0..=16.4).contains(&percentile("erp", "0.5")), "{text}");

        metrics.observe(&Envelope {
            seq: 101,
            time: "2026-12-06T12:00:01.000Z".into(),
            prev: hex::encode(record::GENESIS),
            security: true,
            node: None,
            event: AuditEvent::InstallationChanged {
                tenant: "acme".into(),
                installation: "erp".into(),
                integration: "acme/erp".into(),
                version: "1.0.0".into(),
                change: InstallChange::Uninstalled,
            },
        });
        let text = exposition(&metrics.registry()).expect("renders");
        assert!(
            !text.contains("installation=\"erp\""),
            "gone with it: {text}"
        );
        assert!(text.contains("installation=\"crm\""), "{text}");
    }

    #[test]
    fn label_values_outside_the_vocabulary_become_other() {
        assert_eq!(label("host-not-allowed"), "host-not-allowed");
        assert_eq!(label("Canary\"} 1\nfake 2"), "other");
        assert_eq!(label(""), "other");
        assert_eq!(label(&"a".repeat(49)), "other");
    }
}
