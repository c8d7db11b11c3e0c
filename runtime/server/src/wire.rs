//! The API's JSON for records other modules own (installations, grants, credentials,
//! connections, webhook endpoints, guest logs): the server's own types, so the OpenAPI document
//! is derived from exactly what is sent. Each is converted field by field, destructuring the
//! record whole: a field added to a record is a compile error here, decided on purpose, never
//! a silent change to the API. Their JSON is the records' own (`routes::wire_tests`).

use airlock_host_api::credentials::{AccountSource, CredentialType, ProviderAccount};
use airlock_host_api::log::{LogLine, LogSource};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use airlock_platform::install::GrantedEgress;
use airlock_policy::webhook::Scheme;
use airlock_store::CredentialInfo;
use airlock_store::{ConnectionInfo, ConnectionStatus};
use airlock_store::{EndpointInfo, SecretInfo};
use airlock_store::{InstallationRecord, PendingUpgrade};

/// The operator's approval for one installation: the same shape as the CLI's TOML grant.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Grant {
    #[serde(default)]
    egress: Vec<Egress>,
}

/// One approved egress rule: a manifest rule by its URL, with some or all of its methods.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = GrantedEgress)]
struct Egress {
    url: String,
    methods: Vec<String>,
}

impl From<Grant> for airlock_platform::install::Grant {
    fn from(Grant { egress }: Grant) -> Self {
        Self {
            egress: egress
                .into_iter()
                .map(|Egress { url, methods }| GrantedEgress { url, methods })
                .collect(),
        }
    }
}

impl From<airlock_platform::install::Grant> for Grant {
    fn from(airlock_platform::install::Grant { egress }: airlock_platform::install::Grant) -> Self {
        Self {
            egress: egress
                .into_iter()
                .map(|GrantedEgress { url, methods }| Egress { url, methods })
                .collect(),
        }
    }
}

/// One installation of a bundle by a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Installation {
    tenant: String,
    installation: String,
    /// The integration's id.
    integration: String,
    version: String,
    /// Hex SHA-256 of the bundle file.
    bundle: String,
    /// The id of the key that signed it.
    key: String,
    grant: Grant,
    /// Config JSON (as text), validated against the integration's config schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    config: Option<String>,
    /// Unix seconds, as are the other times.
    created: u64,
    updated: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pending: Option<Pending>,
    /// Present while the installation is quarantined: nothing of it runs until the admin key
    /// releases it (`DELETE /v1/installations/{installation}/quarantine`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    quarantine: Option<Quarantine>,
}

/// Why and since when an installation is quarantined.
#[derive(Debug, Serialize, ToSchema)]
struct Quarantine {
    /// The alert rule that tripped, or `operator`.
    rule: String,
    /// Unix seconds.
    since: u64,
}

impl From<InstallationRecord> for Installation {
    fn from(record: InstallationRecord) -> Self {
        let InstallationRecord {
            tenant,
            installation,
            integration,
            version,
            bundle,
            key,
            grant,
            config,
            created,
            updated,
            pending,
            quarantine,
        } = record;
        Self {
            tenant,
            installation,
            integration,
            version,
            bundle,
            key,
            grant: grant.into(),
            config,
            created,
            updated,
            pending: pending.map(Pending::from),
            quarantine: quarantine.map(|q| Quarantine {
                rule: q.rule,
                since: q.since,
            }),
        }
    }
}

/// A newer version that asks for more than the installed one: it waits for approval.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PendingUpgrade)]
struct Pending {
    version: String,
    bundle: String,
    key: String,
    /// What it declares beyond the installed version: new egress rules or methods, credentials
    /// new or declared differently, a larger kv store, a new publisher support contact or
    /// privacy policy.
    additions: Vec<String>,
    /// Those of `additions` only the admin key may approve: an oauth2 credential's token-url or
    /// authorize-url changed (where its secret is sent). A tenant key approving them (or
    /// installing with a grant) gets `403 admin-only`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    admin_only: Vec<String>,
    requested: u64,
}

impl From<PendingUpgrade> for Pending {
    fn from(pending: PendingUpgrade) -> Self {
        let PendingUpgrade {
            version,
            bundle,
            key,
            additions,
            admin_only,
            requested,
        } = pending;
        Self {
            version,
            bundle,
            key,
            additions,
            admin_only,
            requested,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct InstallationList {
    pub(super) installations: Vec<Installation>,
}

/// What an install, change or approval did, and the installation now.
#[derive(Serialize, ToSchema)]
pub(super) struct InstallOutcome {
    pub(super) outcome: Word,
    pub(super) installation: Installation,
}

/// What happened: `installed` (201), `pending` (202: held for approval), else 200.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = Outcome)]
pub(super) enum Word {
    Installed,
    Replaced,
    Pending,
    Reconfigured,
    Unchanged,
}

/// A stored credential: never its value.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Credential {
    name: String,
    #[serde(rename = "type")]
    kind: Kind,
    /// The origins (`scheme://host:port`) it is sent to: its rules', and an OAuth client's
    /// token endpoint's.
    origins: Vec<String>,
    /// Unix seconds, as is `rotated`.
    created: u64,
    rotated: Option<u64>,
}

impl From<CredentialInfo> for Credential {
    fn from(info: CredentialInfo) -> Self {
        let CredentialInfo {
            name,
            credential_type,
            origins,
            created,
            rotated,
        } = info;
        Self {
            name,
            kind: credential_type.into(),
            origins,
            created,
            rotated,
        }
    }
}

/// A credential's type, as the manifest declares it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = CredentialType)]
pub(super) enum Kind {
    Bearer,
    Basic,
    ApiKey,
    #[serde(rename = "oauth2")]
    OAuth2,
}

impl From<CredentialType> for Kind {
    fn from(kind: CredentialType) -> Self {
        match kind {
            CredentialType::Bearer => Self::Bearer,
            CredentialType::Basic => Self::Basic,
            CredentialType::ApiKey => Self::ApiKey,
            CredentialType::OAuth2 => Self::OAuth2,
        }
    }
}

/// An OAuth connection made by consent: never a token.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Connection {
    credential: String,
    /// For a per-user credential: whose connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    user: Option<String>,
    /// The keyed reference the audit trail names the user by.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    user_ref: Option<String>,
    status: Status,
    scopes: Vec<String>,
    /// Unix seconds, as are the other times.
    connected: u64,
    updated: u64,
    /// When the current access token expires, if it does.
    expires_at: Option<u64>,
    /// Whether a refresh token is held (the connection renews itself).
    refreshable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    account: Option<Account>,
}

impl From<ConnectionInfo> for Connection {
    fn from(info: ConnectionInfo) -> Self {
        let ConnectionInfo {
            credential,
            user,
            user_ref,
            status,
            scopes,
            connected,
            updated,
            expires_at,
            refreshable,
            account,
        } = info;
        Self {
            credential,
            user,
            user_ref,
            status: match status {
                ConnectionStatus::Connected => Status::Connected,
                ConnectionStatus::NeedsReconsent => Status::NeedsReconsent,
            },
            scopes,
            connected,
            updated,
            expires_at,
            refreshable,
            account: account.map(Account::from),
        }
    }
}

/// A connection's state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = ConnectionStatus)]
enum Status {
    Connected,
    /// The provider refused the refresh token: the person must connect again.
    NeedsReconsent,
}

/// The provider account a consent connected, as the code exchange's response named it
/// (customer data: listed to the tenant, never in the audit trail).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProviderAccount)]
struct Account {
    /// Slack's `authed_user.id`, else `user_id`, else `account_id`, else an ID token's `sub`.
    id: String,
    /// Slack's `team.id`, where given.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    workspace: Option<String>,
    source: AccountOrigin,
}

impl From<ProviderAccount> for Account {
    fn from(
        ProviderAccount {
            id,
            workspace,
            source,
        }: ProviderAccount,
    ) -> Self {
        let source = match source {
            AccountSource::TokenResponse => AccountOrigin::TokenResponse,
            AccountSource::IdTokenUnverified => AccountOrigin::IdTokenUnverified,
        };
        Self {
            id,
            workspace,
            source,
        }
    }
}

/// Where the account came from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = AccountSource)]
enum AccountOrigin {
    /// A field of the token response.
    TokenResponse,
    /// The `sub` of an ID token whose signature the host does not check: informational only.
    IdTokenUnverified,
}

/// A webhook endpoint: never its secrets.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Webhook {
    /// `wh-` and 32 hex digits.
    id: String,
    tenant: String,
    installation: String,
    /// The action deliveries run.
    action: String,
    scheme: WebhookScheme,
    /// Where deliveries are posted: `/v1/hooks/{id}`.
    path: String,
    /// Unix seconds.
    created: u64,
    /// The live secrets, newest first; never their values.
    secrets: Vec<WebhookSecret>,
}

impl From<EndpointInfo> for Webhook {
    fn from(info: EndpointInfo) -> Self {
        let EndpointInfo {
            id,
            tenant,
            installation,
            action,
            scheme,
            path,
            created,
            secrets,
        } = info;
        Self {
            id,
            tenant,
            installation,
            action,
            scheme: scheme.into(),
            path,
            created,
            secrets: secrets
                .into_iter()
                .map(|SecretInfo { created, expires }| WebhookSecret { created, expires })
                .collect(),
        }
    }
}

/// One live secret: when it was made and, once rotated out, when it stops verifying.
#[derive(Debug, Serialize, ToSchema)]
struct WebhookSecret {
    created: u64,
    expires: Option<u64>,
}

/// How deliveries are signed (docs/api.md, "Webhooks").
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(super) enum WebhookScheme {
    /// Standard Webhooks 1.0: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    #[default]
    Standard,
    /// GitHub: `X-Hub-Signature-256`, deduplicated by `X-GitHub-Delivery`.
    Github,
    /// Slack: `X-Slack-Signature` (`v0`) over the request timestamp and body.
    Slack,
}

impl From<Scheme> for WebhookScheme {
    fn from(scheme: Scheme) -> Self {
        match scheme {
            Scheme::Standard => Self::Standard,
            Scheme::Github => Self::Github,
            Scheme::Slack => Self::Slack,
        }
    }
}

impl From<WebhookScheme> for Scheme {
    fn from(scheme: WebhookScheme) -> Self {
        match scheme {
            WebhookScheme::Standard => Self::Standard,
            WebhookScheme::Github => Self::Github,
            WebhookScheme::Slack => Self::Slack,
        }
    }
}

/// What the guest logged in one invocation, scrubbed of injected credentials; kept nowhere.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GuestLog {
    lines: Vec<Line>,
    /// Lines (or stdio fragments) dropped past the log's cap.
    dropped: u64,
}

impl From<airlock_host_api::log::GuestLog> for GuestLog {
    fn from(log: airlock_host_api::log::GuestLog) -> Self {
        let airlock_host_api::log::GuestLog { lines, dropped } = log;
        Self {
            lines: lines.into_iter().map(Line::from).collect(),
            dropped,
        }
    }
}

/// One line of guest output, escaped: safe to print or store as one line.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LogLine)]
struct Line {
    source: LineSource,
    message: String,
    /// Structured fields as `[name, value]` pairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<(String, String)>,
}

impl From<LogLine> for Line {
    fn from(
        LogLine {
            source,
            message,
            fields,
        }: LogLine,
    ) -> Self {
        Self {
            source: source.into(),
            message,
            fields,
        }
    }
}

/// Where a log line came from: a level of the `log` import, or the guest's stdout or stderr.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = LogSource)]
enum LineSource {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Stdout,
    Stderr,
}

impl From<LogSource> for LineSource {
    fn from(source: LogSource) -> Self {
        match source {
            LogSource::Trace => Self::Trace,
            LogSource::Debug => Self::Debug,
            LogSource::Info => Self::Info,
            LogSource::Warn => Self::Warn,
            LogSource::Error => Self::Error,
            LogSource::Stdout => Self::Stdout,
            LogSource::Stderr => Self::Stderr,
        }
    }
}
