//! What a connection holds: the tokens one person's consent produced, and whose account at
//! the provider they belong to.

use zeroize::Zeroizing;

use crate::credentials::Secret;

/// What a connection holds: the tokens one consent produced, as the store keeps them.
#[derive(Clone, Default)]
pub struct ConnectionTokens {
    pub access: Option<Secret>,
    /// Unix seconds; `None` when the server gave no expiry (the token lives until revoked).
    pub expires_at: Option<u64>,
    pub refresh: Option<Zeroizing<String>>,
    /// The scopes the server says it granted.
    pub scopes: Vec<String>,
    /// The refresh token was refused: the person must connect again.
    pub needs_reauth: bool,
    /// Which write of the connection these tokens were read from (set by the store): a
    /// refresh names it, so it cannot overwrite a newer consent or resurrect a removed one.
    pub revision: u64,
    /// The token endpoint origin that issued them (`https://host[:port]`): the refresh token
    /// goes nowhere else. `None` (a connection stored before origins were kept) is unbound.
    pub token_origin: Option<String>,
    /// Whose account at the provider, where the token response named one.
    pub account: Option<ProviderAccount>,
}

/// The provider account a consent connected, as the code exchange's response names it. An
/// identifier of a third party's account: customer data, listed to the tenant, never audited.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProviderAccount {
    /// The account's id at the provider.
    pub id: String,
    /// Its workspace or organization, where the provider names one (Slack's `team.id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    pub source: AccountSource,
}

/// Where a [`ProviderAccount`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountSource {
    /// A field of the token response the provider sent over the checked TLS connection
    /// (Slack's `authed_user.id`, or `user_id` / `account_id`).
    TokenResponse,
    /// The `sub` of an OpenID Connect ID token whose signature the host does not check:
    /// informational only, never a basis for a decision.
    IdTokenUnverified,
}
