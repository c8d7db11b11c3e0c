//! Alert rules over the security events the trail records (docs/operate.md, "Alerts"),
//! evaluated as each record is written ([`airlock_audit::Observer`]), never by reading the
//! trail back.
//!
//! A rule counts one kind of [`Signal`] per installation, tenant or API key ([`Per`]) in a
//! sliding window and trips when the count goes over its threshold: once per window for the
//! same thing, so a flood is one alert, not thousands. What to do about it (record it,
//! quarantine, notify) is the caller's [`Alert`] handler's business: it runs on the writer's
//! thread and must only hand the alert on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use airlock_audit::Observer;
use airlock_audit::record::Envelope;
use airlock_host_api::audit::AuditEvent;
use airlock_host_api::egress::Decision;
use airlock_runtime::units::HumanDuration;
use serde::Deserialize;

/// The most scopes counted at once; beyond it, scopes whose windows emptied are forgotten.
const MAX_SCOPES: usize = 10_000;

/// What a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    /// Each egress request the policy denied (an undeclared host, a private address, …).
    EgressDenied,
    /// Each invocation a limit stopped (timeout, memory, fuel, …).
    LimitKill,
    /// Each invocation whose input or output its schema rejected.
    SchemaRejected,
    /// Each echo of an injected credential scrubbed from a response.
    Redaction,
    /// Each request to Airlock's API refused for its key or scope.
    AccessRefused,
    /// Each webhook delivery refused for its signature, timestamp or replay.
    WebhookRefused,
}

/// What a rule counts its signal for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Per {
    Installation,
    Tenant,
    /// The API key of a refused request (access refusals of valid keys only: a scope the key
    /// lacks, another tenant named). A guessed key's refusals are the failure limits' business
    /// and never count against the key they name, so no one can suspend a key they lack.
    Key,
}

/// One rule, as the config file's `[[alert]]` tables give it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Rule {
    /// Named in the alert record and the notification: 1 to 64 of a-z, 0-9 and '-'.
    pub name: String,
    pub signal: Signal,
    pub per: Per,
    /// Trips when more than this many signals fall within the window.
    pub threshold: u64,
    pub window: HumanDuration,
    /// Quarantine the installation it counted, or suspend the key (rules per installation or
    /// per key).
    #[serde(default)]
    pub quarantine: bool,
}

/// Why a rule is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("name {0:?}: use 1 to 64 of a-z, 0-9 and '-'")]
    Name(String),
    #[error("rule {0}: two rules have this name")]
    Duplicate(String),
    #[error(
        "rule {0}: quarantine needs per = \"installation\" (quarantined) or per = \"key\" \
         (suspended)"
    )]
    QuarantinePer(String),
    #[error("rule {0}: per = \"key\" counts access refusals only")]
    KeyPer(String),
    #[error("rule {0}: access refusals are counted per key or per tenant")]
    AccessPer(String),
    #[error("rule {0}: webhook refusals are counted per tenant")]
    WebhookPer(String),
    #[error("rule {0}: the window must be between 1s and 1d")]
    Window(String),
}

impl Rule {
    /// The rules a server runs with when its config file names none.
    pub fn defaults() -> Vec<Rule> {
        let rule = |name: &str, signal, per, threshold, window: u64, quarantine| Rule {
            name: name.to_string(),
            signal,
            per,
            threshold,
            window: HumanDuration(Duration::from_secs(window)),
            quarantine,
        };
        vec![
            rule(
                "egress-probing",
                Signal::EgressDenied,
                Per::Installation,
                20,
                60,
                true,
            ),
            rule(
                "limit-kills",
                Signal::LimitKill,
                Per::Installation,
                10,
                300,
                false,
            ),
            rule(
                "schema-rejections",
                Signal::SchemaRejected,
                Per::Installation,
                100,
                300,
                false,
            ),
            rule(
                "secret-echoes",
                Signal::Redaction,
                Per::Installation,
                5,
                3600,
                false,
            ),
            rule(
                "scope-probing",
                Signal::AccessRefused,
                Per::Key,
                20,
                60,
                false,
            ),
            rule(
                "forged-webhooks",
                Signal::WebhookRefused,
                Per::Tenant,
                50,
                300,
                false,
            ),
        ]
    }

    /// Checks each rule and that no two share a name.
    pub fn check_all(rules: &[Rule]) -> Result<(), RuleError> {
        let mut seen = std::collections::HashSet::new();
        for rule in rules {
            rule.check()?;
            if !seen.insert(rule.name.as_str()) {
                return Err(RuleError::Duplicate(rule.name.clone()));
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), RuleError> {
        let name = &self.name;
        let named = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !named {
            return Err(RuleError::Name(name.clone()));
        }
        let window = self.window.0;
        if window < Duration::from_secs(1) || window > Duration::from_secs(86_400) {
            return Err(RuleError::Window(name.clone()));
        }
        match (self.signal, self.per) {
            (Signal::AccessRefused, Per::Installation) => {
                return Err(RuleError::AccessPer(name.clone()));
            }
            (Signal::WebhookRefused, Per::Installation | Per::Key) => {
                return Err(RuleError::WebhookPer(name.clone()));
            }
            (Signal::AccessRefused, _) | (_, Per::Installation | Per::Tenant) => {}
            (_, Per::Key) => return Err(RuleError::KeyPer(name.clone())),
        }
        if self.quarantine && self.per == Per::Tenant {
            return Err(RuleError::QuarantinePer(name.clone()));
        }
        Ok(())
    }
}

/// A rule that tripped, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub rule: String,
    pub tenant: Option<String>,
    pub installation: Option<String>,
    pub key: Option<String>,
    /// Signals counted in the window when it tripped.
    pub count: u64,
    pub window: Duration,
    pub quarantine: bool,
}

impl Alert {
    /// The audit record of this alert.
    pub fn event(&self) -> AuditEvent {
        AuditEvent::AlertRaised {
            rule: self.rule.clone(),
            tenant: self.tenant.clone(),
            installation: self.installation.clone(),
            key: self.key.clone(),
            count: self.count,
            window_s: self.window.as_secs(),
            quarantine: self.quarantine,
        }
    }
}

/// What a count is kept for: a rule, and the installation, tenant or key it counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Scope {
    rule: usize,
    tenant: Option<String>,
    installation: Option<String>,
    key: Option<String>,
}

/// One scope's signals in its rule's window.
#[derive(Default)]
struct Window {
    /// When signals came, and how many each time.
    hits: VecDeque<(Instant, u64)>,
    total: u64,
    /// No second alert for this scope before then.
    quiet_until: Option<Instant>,
}

impl Window {
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some(&(at, n)) = self.hits.front() {
            if now.duration_since(at) < window {
                break;
            }
            self.hits.pop_front();
            self.total -= n;
        }
    }
}

/// The rules, their counts, and what to do with an alert.
pub struct Alerts {
    rules: Vec<Rule>,
    windows: Mutex<HashMap<Scope, Window>>,
    raise: Box<dyn Fn(Alert) + Send + Sync>,
}

impl Alerts {
    /// `rules` (checked with [`Rule::check_all`]), handing each alert to `raise`.
    pub fn new(rules: Vec<Rule>, raise: impl Fn(Alert) + Send + Sync + 'static) -> Self {
        Self {
            rules,
            windows: Mutex::default(),
            raise: Box::new(raise),
        }
    }

    /// Counts `n` signals of `signal` for the subject at `now`; returns the alerts that trip.
    fn count(&self, signal: Signal, subject: &Subject<'_>, n: u64, now: Instant) -> Vec<Alert> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() > MAX_SCOPES {
            for (scope, window) in windows.iter_mut() {
                window.expire(now, self.rules[scope.rule].window.0);
            }
            windows.retain(|_, w| w.total > 0 || w.quiet_until.is_some_and(|q| q > now));
        }
        let mut tripped = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.signal != signal {
                continue;
            }
            let Some(scope) = subject.scope(index, rule.per) else {
                continue;
            };
            let window = windows.entry(scope.clone()).or_default();
            window.expire(now, rule.window.0);
            window.hits.push_back((now, n));
            window.total += n;
            let quiet = window.quiet_until.is_some_and(|until| now < until);
            if window.total > rule.threshold && !quiet {
                window.quiet_until = Some(now + rule.window.0);
                tripped.push(Alert {
                    rule: rule.name.clone(),
                    tenant: scope.tenant,
                    installation: scope.installation,
                    key: scope.key,
                    count: window.total,
                    window: rule.window.0,
                    quarantine: rule.quarantine,
                });
            }
        }
        tripped
    }
}

/// Who a signal is about.
struct Subject<'a> {
    tenant: Option<&'a str>,
    installation: Option<&'a str>,
    key: Option<&'a str>,
}

impl Subject<'_> {
    /// The scope rule `index` counts this subject under, if it can.
    fn scope(&self, rule: usize, per: Per) -> Option<Scope> {
        let owned = |s: Option<&str>| s.map(str::to_string);
        match per {
            Per::Installation => Some(Scope {
                rule,
                tenant: owned(Some(self.tenant?)),
                installation: owned(Some(self.installation?)),
                key: None,
            }),
            Per::Tenant => Some(Scope {
                rule,
                tenant: owned(Some(self.tenant?)),
                installation: None,
                key: None,
            }),
            Per::Key => Some(Scope {
                rule,
                tenant: owned(Some(self.tenant?)),
                installation: None,
                key: owned(Some(self.key?)),
            }),
        }
    }
}

/// The signals one record carries, with how many of each.
fn signals(event: &AuditEvent) -> (Subject<'_>, Vec<(Signal, u64)>) {
    let nobody = Subject {
        tenant: None,
        installation: None,
        key: None,
    };
    match event {
        AuditEvent::Invocation(record) => {
            let subject = Subject {
                tenant: Some(&record.subject.tenant),
                installation: Some(&record.subject.installation),
                key: None,
            };
            let denied = record
                .egress
                .iter()
                .filter(|e| e.decision == Decision::Denied)
                .count() as u64
                + record
                    .egress_suppressed
                    .iter()
                    .filter(|s| s.decision == Decision::Denied)
                    .map(|s| s.count)
                    .sum::<u64>();
            let mut found = Vec::new();
            if denied > 0 {
                found.push((Signal::EgressDenied, denied));
            }
            if record.outcome.starts_with("limit-") {
                found.push((Signal::LimitKill, 1));
            }
            if record.outcome.ends_with("-rejected") {
                found.push((Signal::SchemaRejected, 1));
            }
            if record.redactions > 0 {
                found.push((Signal::Redaction, record.redactions));
            }
            (subject, found)
        }
        AuditEvent::AccessRefused { key, tenant, .. } => (
            Subject {
                tenant: tenant.as_deref(),
                installation: None,
                key: key.as_deref(),
            },
            vec![(Signal::AccessRefused, 1)],
        ),
        AuditEvent::WebhookRefused { tenant, .. } => (
            Subject {
                tenant: Some(tenant),
                installation: None,
                key: None,
            },
            vec![(Signal::WebhookRefused, 1)],
        ),
        _ => (nobody, Vec::new()),
    }
}

impl Observer for Alerts {
    fn observe(&self, envelope: &Envelope) {
        if !envelope.security {
            return;
        }
        let (subject, found) = signals(&envelope.event);
        let now = Instant::now();
        for (signal, n) in found {
            for alert in self.count(signal, &subject, n, now) {
                (self.raise)(alert);
            }
        }
    }
}

#[cfg(test)]
mod tests;
