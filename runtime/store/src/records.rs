//! The records the storage traits take and return: plain data, the same for every backend.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use airlock_host_api::credentials::{CredentialType, ProviderAccount};
use airlock_policy::grant::Grant;
use airlock_policy::webhook::Scheme;
use airlock_runtime::ids::{EndpointId, InstallationId, TenantId, UserId};

/// A tenant as `tenant list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    pub id: String,
    pub created: u64,
}

/// One installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationRecord {
    pub tenant: String,
    pub installation: String,
    pub integration: String,
    pub version: String,
    /// Hex SHA-256 of the bundle file.
    pub bundle: String,
    /// The key id that signed it.
    pub key: String,
    pub grant: Grant,
    /// Config JSON, validated against the integration's config schema when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    pub created: u64,
    pub updated: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingUpgrade>,
    /// Set while the installation is quarantined: nothing of it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<Quarantine>,
}

/// Why and since when an installation is quarantined (docs/operate.md, "Quarantine").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// The alert rule that tripped, or `operator`.
    pub rule: String,
    /// Unix seconds.
    pub since: u64,
}

/// A newer version that asks for more than the installed one; it waits for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpgrade {
    pub version: String,
    pub bundle: String,
    pub key: String,
    /// What it declares beyond the installed version.
    pub additions: Vec<String>,
    /// Those of `additions` only the operator's admin key may approve: they change where a
    /// stored secret is sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_only: Vec<String>,
    pub requested: u64,
}

/// What `credentials list` shows: never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub credential_type: CredentialType,
    /// The origins (scheme://host:port) it is sent to: its rules', and an OAuth client's
    /// token endpoint's.
    pub origins: Vec<String>,
    pub created: u64,
    pub rotated: Option<u64>,
}

/// Whether `set` stored a new credential or replaced an existing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    Created,
    Rotated,
}

/// Which connection: a credential of an installation, for the tenant or one user.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionKey<'a> {
    pub tenant: &'a TenantId,
    pub installation: &'a InstallationId,
    pub credential: &'a str,
    pub user: Option<&'a UserId>,
}

/// A connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionStatus {
    Connected,
    /// The refresh token was refused: the person must connect again.
    NeedsReconsent,
}

/// A connection as listed: never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionInfo {
    pub credential: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The user's reference, as the audit trail records them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_ref: Option<String>,
    pub status: ConnectionStatus,
    pub scopes: Vec<String>,
    pub connected: u64,
    pub updated: u64,
    /// When the current access token expires (unix seconds), if it does.
    pub expires_at: Option<u64>,
    /// Whether a refresh token is held (the connection renews itself).
    pub refreshable: bool,
    /// Whose account at the provider, where the code exchange named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<ProviderAccount>,
}

/// A consent under way, between `connect` and the provider's callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingConsent {
    pub tenant: String,
    pub installation: String,
    pub credential: String,
    pub user: Option<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    /// Unix seconds.
    pub expires: u64,
}

/// What a state found when it was taken.
pub enum TakenState {
    /// Unknown, or already used.
    Unknown,
    Expired(PendingConsent),
    /// The browser coming back does not hold the cookie of the one that started the consent.
    OtherBrowser(PendingConsent),
    Valid(PendingConsent, Zeroizing<String>),
}

/// A namespace's usage: keys, and bytes of keys and values (plaintext sizes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvUsage {
    pub keys: u64,
    pub bytes: u64,
}

/// An endpoint as listed: never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointInfo {
    pub id: String,
    pub tenant: String,
    pub installation: String,
    pub action: String,
    pub scheme: Scheme,
    /// The path deliveries are posted to.
    pub path: String,
    pub created: u64,
    /// The live secrets' creation and (for a rotated-out one) expiry times, newest first.
    pub secrets: Vec<SecretInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    pub created: u64,
    pub expires: Option<u64>,
}

/// What a new endpoint is for.
pub struct NewEndpoint<'a> {
    pub id: &'a EndpointId,
    pub tenant: &'a TenantId,
    pub installation: &'a InstallationId,
    pub action: &'a str,
    pub scheme: Scheme,
}

/// Bytes read from the store: the backend's own buffer where it can lend one (sled's, without
/// a copy, so reading a long trail costs no allocation per record), else a `Vec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored(Bytes);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Bytes {
    Sled(sled::IVec),
    Owned(Vec<u8>),
}

impl Stored {
    pub(crate) fn sled(bytes: sled::IVec) -> Self {
        Self(Bytes::Sled(bytes))
    }
}

impl From<Vec<u8>> for Stored {
    fn from(bytes: Vec<u8>) -> Self {
        Self(Bytes::Owned(bytes))
    }
}

impl std::ops::Deref for Stored {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Bytes::Sled(bytes) => bytes,
            Bytes::Owned(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for Stored {
    fn as_ref(&self) -> &[u8] {
        self
    }
}
