//! Audit events: what the trail records about every execution, and nothing else.
//!
//! Metadata only (catalogue AL-01/02): ids, names declared in signed manifests, reason codes,
//! numbers. Never an input, an output, a body, a header value, a query string, a secret, a line
//! the guest logged, a path a guest built or a key of the caller's objects. The runtime chains,
//! stores and signs these; this module says what they are, what form they are stored in
//! ([`AuditEvent::for_trail`]: targets replaced by keyed hashes, every string bounded), and lets
//! the egress broker make an intent durable before a request leaves.

mod stored;

pub use stored::bounds;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::egress::{EgressEvent, Suppressed};

/// One event in the trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum AuditEvent {
    /// An invocation finished (or was refused), with its egress outcomes.
    Invocation(Box<InvocationRecord>),
    /// A request passed policy and is about to leave: written durably before it is sent, so
    /// that every request an upstream saw has a record even if the host dies mid-call (AL-06).
    EgressIntent(EgressIntent),
    /// Code was refused before compiling: unsigned, unknown or revoked key, bad digest, ….
    TrustRefused {
        /// The bundle's file name (never its full path).
        artifact: String,
        reason: String,
    },
    /// A stored credential value was set or deleted.
    CredentialChanged {
        tenant: String,
        installation: String,
        credential: String,
        change: Change,
    },
    /// A publisher key was trusted or revoked.
    TrustChanged {
        key: String,
        publisher: String,
        change: Change,
    },
    /// An API key was created or revoked (its id, never the key).
    ApiKeyChanged {
        key: String,
        /// `None` for the operator's admin key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        change: Change,
    },
    /// A tenant was created or deleted (with its data key: crypto-shredding).
    TenantChanged { tenant: String, change: Change },
    /// An installation was created, upgraded, held for approval, or approved.
    InstallationChanged {
        tenant: String,
        installation: String,
        integration: String,
        version: String,
        change: InstallChange,
    },
    /// What an uninstalled installation kept went: its kv entries or its runs, counted.
    InstallationDataDeleted {
        tenant: String,
        installation: String,
        data: InstallationData,
        count: u64,
    },
    /// The wall clock went backwards between two records (AL-10); sequence numbers did not.
    ClockRegression { previous: String },
    /// A request to Airlock's API was refused: no key, a bad, expired or revoked key, a
    /// missing scope, or too many failures from one peer.
    AccessRefused {
        /// The key id the request claimed, if it had the shape of a key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// The tenant of the (valid) key, for scope refusals.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        reason: String,
        /// The method and route template (`POST /v1/installations/{id}/actions/{action}`).
        route: String,
        /// The peer's IP address.
        peer: String,
    },
    /// An OAuth connection (a person's consent for one credential of an installation, for the
    /// tenant or one user) was made, lost its consent, or was removed. Scopes are names the
    /// manifest declares or the server returned; tokens never appear.
    ConnectionChanged {
        tenant: String,
        installation: String,
        credential: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        change: ConnectionChange,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scopes: Vec<String>,
        /// Scopes the server granted beyond those asked for.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        widened: Vec<String>,
    },
    /// An OAuth callback was refused: unknown, replayed or expired state, consent denied at the
    /// provider, or a failed code exchange.
    ConnectionRefused {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        reason: String,
        /// The peer's IP address.
        peer: String,
    },
    /// A webhook endpoint was created, had its secret rotated, or was deleted.
    WebhookChanged {
        tenant: String,
        installation: String,
        endpoint: String,
        action: String,
        change: Change,
    },
    /// A cron schedule was created, paused, resumed or deleted.
    ScheduleChanged {
        tenant: String,
        installation: String,
        schedule: String,
        action: String,
        /// The cron expression and its time zone (`*/15 * * * * Europe/Berlin`).
        cron: String,
        change: Change,
    },
    /// A delivery to a webhook endpoint was refused before anything parsed it: a missing or
    /// wrong signature, a timestamp outside the tolerance, a replayed delivery id.
    WebhookRefused {
        tenant: String,
        endpoint: String,
        reason: String,
        /// The peer's IP address.
        peer: String,
    },
    /// An alert rule tripped: more of its events than its threshold within its window, for
    /// one installation, tenant or API key (docs/operate.md, "Alerts").
    AlertRaised {
        rule: String,
        /// What the events were counted for: the installation's tenant, the tenant, or the
        /// key's tenant (none for the admin key or an unknown one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        installation: Option<String>,
        /// The API key id, for rules counted per key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Events counted in the window when it tripped.
        count: u64,
        window_s: u64,
        /// Whether the rule quarantines what it counted.
        quarantine: bool,
    },
    /// The audit checkpoint key was replaced by a new one, which the old one introduced
    /// (`audit.keys` in the audit dir).
    AuditKeyRotated {
        /// The retired key's id.
        old: String,
        /// The new key's id.
        new: String,
    },
    /// The master key was rotated: every tenant's data key re-wrapped under a new one.
    MasterKeyRotated {
        /// How many data keys this rotation re-wrapped (the rest were already under the new
        /// key: a rotation run again, or run before on another node).
        rewrapped: u64,
    },
}

/// What happened to a stored item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Set,
    Deleted,
    Revoked,
    /// Replaced by a new value (a webhook secret: the old one verifies until its overlap ends).
    Rotated,
    /// Stopped for now (a schedule), and started again.
    Paused,
    Resumed,
    /// An API key suspended by an alert rule or the operator (lifted: `resumed`).
    Suspended,
}

/// What happened to an OAuth connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionChange {
    Connected,
    /// The refresh token was refused: the person must connect again.
    NeedsReconsent,
    Disconnected,
}

/// What happened to an installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstallChange {
    Installed,
    Upgraded,
    /// Downgraded with the operator's explicit `--allow-downgrade`.
    Downgraded,
    /// The new version asks for more; it waits for approval.
    Pending,
    /// The same version with a new grant or config.
    Reconfigured,
    /// Removed, with everything it owned.
    Uninstalled,
    /// Suspended by an alert rule (or the operator): its invocations, webhook deliveries and
    /// runs are refused as `quarantined` until it is released.
    Quarantined,
    /// Its quarantine lifted by the operator.
    Released,
}

/// What an installation keeps besides its credentials, connections and webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstallationData {
    Kv,
    Runs,
}

impl AuditEvent {
    /// Security events are the ones an operator must always see and count (OWASP "always
    /// log"): denials, refusals, limit kills, schema rejections, key and credential changes.
    pub fn is_security(&self) -> bool {
        match self {
            Self::Invocation(record) => record.is_security(),
            Self::EgressIntent(_) => false,
            Self::TrustRefused { .. }
            | Self::CredentialChanged { .. }
            | Self::TrustChanged { .. }
            | Self::TenantChanged { .. }
            | Self::InstallationChanged { .. }
            | Self::InstallationDataDeleted { .. }
            | Self::ApiKeyChanged { .. }
            | Self::ClockRegression { .. }
            | Self::AccessRefused { .. }
            | Self::WebhookChanged { .. }
            | Self::ScheduleChanged { .. }
            | Self::WebhookRefused { .. }
            | Self::ConnectionChanged { .. }
            | Self::ConnectionRefused { .. }
            | Self::MasterKeyRotated { .. }
            | Self::AlertRaised { .. }
            | Self::AuditKeyRotated { .. } => true,
        }
    }

    /// The event's `type` tag, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invocation(_) => "invocation",
            Self::EgressIntent(_) => "egress-intent",
            Self::TrustRefused { .. } => "trust-refused",
            Self::CredentialChanged { .. } => "credential-changed",
            Self::TrustChanged { .. } => "trust-changed",
            Self::TenantChanged { .. } => "tenant-changed",
            Self::ApiKeyChanged { .. } => "api-key-changed",
            Self::InstallationChanged { .. } => "installation-changed",
            Self::InstallationDataDeleted { .. } => "installation-data-deleted",
            Self::ClockRegression { .. } => "clock-regression",
            Self::AccessRefused { .. } => "access-refused",
            Self::WebhookChanged { .. } => "webhook-changed",
            Self::ScheduleChanged { .. } => "schedule-changed",
            Self::ConnectionChanged { .. } => "connection-changed",
            Self::ConnectionRefused { .. } => "connection-refused",
            Self::WebhookRefused { .. } => "webhook-refused",
            Self::MasterKeyRotated { .. } => "master-key-rotated",
            Self::AlertRaised { .. } => "alert-raised",
            Self::AuditKeyRotated { .. } => "audit-key-rotated",
        }
    }

    /// The tenant the event is about, if any: what a tenant's own view of the trail keeps.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::Invocation(r) => Some(&r.subject.tenant),
            Self::EgressIntent(i) => Some(&i.subject.tenant),
            Self::CredentialChanged { tenant, .. }
            | Self::TenantChanged { tenant, .. }
            | Self::InstallationChanged { tenant, .. }
            | Self::InstallationDataDeleted { tenant, .. }
            | Self::WebhookChanged { tenant, .. }
            | Self::ScheduleChanged { tenant, .. }
            | Self::WebhookRefused { tenant, .. }
            | Self::ConnectionChanged { tenant, .. } => Some(tenant),
            Self::ApiKeyChanged { tenant, .. }
            | Self::AccessRefused { tenant, .. }
            | Self::ConnectionRefused { tenant, .. }
            | Self::AlertRaised { tenant, .. } => tenant.as_deref(),
            Self::TrustRefused { .. }
            | Self::TrustChanged { .. }
            | Self::ClockRegression { .. }
            | Self::MasterKeyRotated { .. }
            | Self::AuditKeyRotated { .. } => None,
        }
    }
}

/// How an invocation was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    Cli,
    Api,
    Webhook,
    /// A tick of one of the installation's cron schedules.
    Schedule,
}

/// Who an invocation ran for. Tenant and installation are validated ids, never free text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub tenant: String,
    pub installation: String,
    /// The end user the invocation ran for (per-user credentials), if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl Subject {
    pub fn new(tenant: impl Into<String>, installation: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            installation: installation.into(),
            user: None,
        }
    }

    /// A local CLI run's own subject (tenant and installation `local`), never an operator's.
    pub fn local() -> Self {
        Self::new("local", "local")
    }
}

/// Which code ran: as the signed manifest names it, and the digest of what was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeIdentity {
    pub id: String,
    pub version: String,
    pub digest: String,
    /// The key that signed the bundle; absent for unsigned development runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// One invocation, metadata only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub invocation: String,
    #[serde(flatten)]
    pub subject: Subject,
    pub integration: CodeIdentity,
    pub trigger: Trigger,
    /// The action, when the integration declares it; an unknown name the caller sent is
    /// caller data and is not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `ok` or the error class (`input-rejected`, `limit-timeout`, …).
    pub outcome: String,
    pub duration_us: u64,
    pub memory_peak_bytes: u64,
    /// The most the host held for the guest at once outside its linear memory (records made
    /// before host budgets were kept read as 0).
    #[serde(default)]
    pub host_memory_peak_bytes: u64,
    /// The most host resource handles the guest held at once (0 in older records).
    #[serde(default)]
    pub host_resources_peak: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    /// Serialized without targets, whatever the events hold: a record never shows one.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "stored::without_targets"
    )]
    pub egress: Vec<EgressEvent>,
    /// Attempts past the detailed ones, counted by decision and reason (AL-08).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_suppressed: Vec<Suppressed>,
    #[serde(default)]
    pub redactions: u64,
    /// kv calls, counted (never keys or values).
    #[serde(default, skip_serializing_if = "crate::kv::KvUse::is_empty")]
    pub kv: crate::kv::KvUse,
    /// Where the input or output failed its schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationFailure>,
}

impl InvocationRecord {
    /// Denied egress, limit kills, schema rejections and scrubbed secret echoes are security
    /// events; so is an invocation the audit trail itself could not cover.
    pub fn is_security(&self) -> bool {
        self.outcome.starts_with("limit-")
            || self.outcome.ends_with("-rejected")
            || self.outcome == "audit-unavailable"
            || self.redactions > 0
            || self
                .egress
                .iter()
                .any(|e| e.decision == crate::egress::Decision::Denied)
            || self
                .egress_suppressed
                .iter()
                .any(|s| s.decision == crate::egress::Decision::Denied)
    }
}

/// The first schema violation of a rejected input or output, located in the schema: where in
/// the instance it was is the caller's business (an object's keys are often its data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationFailure {
    /// `input` or `output`.
    pub direction: String,
    /// RFC 6901 pointer to the failing keyword in the schema (its keyword location, without
    /// `$ref` traversals), e.g. `/properties/Email/format`.
    #[serde(default)]
    pub location: String,
    /// The failing schema keyword.
    pub keyword: String,
}

/// A request about to be sent: the rule that let it out and a keyed hash of its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressIntent {
    pub invocation: String,
    #[serde(flatten)]
    pub subject: Subject,
    pub method: String,
    /// The canonical target without its query, until the trail replaces it by
    /// [`Self::target_hash`]: never serialized.
    #[serde(default, skip_serializing)]
    pub target: Option<String>,
    /// The matched rule's canonical URL (origin and path prefix).
    #[serde(default)]
    pub via: String,
    /// Keyed hash of the target (see [`EgressEvent::target_hash`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hash: Option<String>,
    pub rule: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The audit trail could not take a record: the action it would cover must not happen.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the audit trail is unavailable: {0}")]
pub struct AuditUnavailable(pub String);

/// A future that settles once an intent is durable (or cannot be).
pub type IntentFuture = Pin<Box<dyn Future<Output = Result<(), AuditUnavailable>> + Send>>;

/// A future that settles with a record's sequence number once it is durable (or cannot be).
pub type AppendFuture = Pin<Box<dyn Future<Output = Result<u64, AuditUnavailable>> + Send>>;

/// Where a host writes its audit records. The runtime sees only this, so the engine does not
/// depend on how or where the trail is stored; `airlock-audit`'s trail implements it.
pub trait AuditSink: Send + Sync {
    /// Appends `event`; the returned future settles once the record is durable. A failure means
    /// the action the record covers must not happen (fail closed, AL-07).
    fn append(&self, event: AuditEvent) -> AppendFuture;
}

/// Where the egress broker records an intent before a request leaves. A failure keeps the
/// request from being sent (fail closed, AL-07).
pub trait EgressJournal: Send + Sync {
    /// Makes durable that the request `event` describes (allowed, with its target, rule and
    /// credential name) is about to be sent.
    fn intent(&self, event: &EgressEvent) -> IntentFuture;
}

/// A journal that records nothing: for hosts that keep no trail (benchmark floors, `check`).
pub struct NoJournal;

impl EgressJournal for NoJournal {
    fn intent(&self, _: &EgressEvent) -> IntentFuture {
        Box::pin(std::future::ready(Ok(())))
    }
}
