//! Credentials: values the host injects into a guest's requests and the guest never sees.
//!
//! A credential belongs to one installation of one tenant. Its value is validated once, on
//! entry ([`Secret`]); the egress broker asks a [`CredentialBroker`] for the current value
//! when a request matches a rule naming the credential, builds the header or query parameter
//! itself ([`Injection`]), and redacts every form of the value from the response.
//!
//! # Layout
//! - [`secret`]: [`Secret`], a validated value with redacted formatting.
//! - [`inject`]: [`Injection`], one credential turned into what goes on the wire.
//! - [`source`]: [`SecretSource`] (where values live) and [`Credentials`], the broker that
//!   reads them and runs OAuth for oauth2 credentials.
//! - [`oauth2`]: the host's OAuth 2.0 client: client-credentials, authorization-code (PKCE)
//!   and refresh-token grants, cached and single-flight per credential and user.
//! - [`vault`]: envelope encryption at rest (master key, per-tenant data keys).

pub mod inject;
pub mod oauth2;
pub mod secret;
pub mod source;
pub mod vault;

use std::future::Future;
use std::pin::Pin;

use http::HeaderName;

pub use inject::Injection;
pub use oauth2::{
    AccountSource, ConnectionTokens, OAuthClient, OAuthGrant, OAuthSpec, OAuthTokens,
    ProviderAccount, registered_client, token_origin,
};
pub use secret::{MAX_SECRET_LEN, Secret, SecretError};
pub use source::{CredentialScope, Credentials, RefreshTurn, SecretSource, StaticSecrets};

/// The four credential types of `[credentials.<name>]`, without their parameters: what a
/// stored value is validated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialType {
    Bearer,
    Basic,
    ApiKey,
    #[serde(rename = "oauth2")]
    OAuth2,
}

impl CredentialType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Basic => "basic",
            Self::ApiKey => "api-key",
            Self::OAuth2 => "oauth2",
        }
    }
}

/// How one declared credential travels: the broker's view of `[credentials.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSpec {
    /// `Authorization: Bearer <value>`.
    Bearer,
    /// `Authorization: Basic base64(user:password)`.
    Basic,
    /// The value in this header.
    ApiKeyHeader(HeaderName),
    /// The value in this query parameter.
    ApiKeyQuery(String),
    /// `Authorization: Bearer <access token>`, the token obtained by the host.
    OAuth2(OAuthSpec),
}

impl CredentialSpec {
    pub fn credential_type(&self) -> CredentialType {
        match self {
            Self::Bearer => CredentialType::Bearer,
            Self::Basic => CredentialType::Basic,
            Self::ApiKeyHeader(_) | Self::ApiKeyQuery(_) => CredentialType::ApiKey,
            Self::OAuth2(_) => CredentialType::OAuth2,
        }
    }
}

/// Why a credential could not be injected. Each maps to a stable reason code for the egress
/// event; none carries a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("credential `{0}` is not set for this installation")]
    Missing(String),
    #[error("credential `{0}` is stored in a form that cannot be sent: {1}")]
    Malformed(String, SecretError),
    #[error("credential `{name}` could not be read: {reason}")]
    Store { name: String, reason: String },
    #[error("credential `{name}`: the token endpoint refused: {reason}")]
    Token { name: String, reason: String },
    #[error("credential `{0}` needs to be connected again (its refresh token was refused)")]
    NeedsReauth(String),
    #[error("credential `{0}` is per user, and this invocation names no user")]
    NoUser(String),
    /// The connection was removed or made anew while its token was refreshed: the refreshed
    /// token belongs to a grant that is no longer current, so it is not used.
    #[error("credential `{0}` was disconnected or reconnected while its token was refreshed")]
    Changed(String),
    /// The stored value is bound to other origins than the rule's (set for another manifest).
    #[error("credential `{name}` is not bound to {origin}")]
    Unbound { name: String, origin: String },
}

impl CredentialError {
    /// The reason code recorded in egress events and audit records.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing(_) => "credential-missing",
            Self::Malformed(..) => "credential-malformed",
            Self::Store { .. } => "credential-store",
            Self::Token { .. } => "credential-token",
            Self::NeedsReauth(_) => "credential-needs-reauth",
            Self::NoUser(_) => "credential-no-user",
            Self::Changed(_) => "credential-changed",
            Self::Unbound { .. } => "credential-unbound",
        }
    }
}

/// A boxed future, as the object-safe broker trait returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Hands the egress broker the current value of a credential. One per invocation scope
/// (tenant and installation); implementations cache and refresh as they see fit.
pub trait CredentialBroker: Send + Sync {
    /// The value of `name` for a request under a rule whose origin is `origin`.
    fn current<'a>(
        &'a self,
        name: &'a str,
        spec: &'a CredentialSpec,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<Secret, CredentialError>>;
}

/// The broker for integrations run without any credential store: every lookup is missing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCredentials;

impl CredentialBroker for NoCredentials {
    fn current<'a>(
        &'a self,
        name: &'a str,
        _spec: &'a CredentialSpec,
        _origin: &'a str,
    ) -> BoxFuture<'a, Result<Secret, CredentialError>> {
        Box::pin(async move { Err(CredentialError::Missing(name.to_string())) })
    }
}
