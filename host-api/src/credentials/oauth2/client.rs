//! The declared OAuth parameters of a credential and the client the operator stored for it,
//! bound to the token endpoint origin it was stored for: its secret goes nowhere else.

use zeroize::Zeroizing;

use crate::credentials::{CredentialError, CredentialType, Secret, SecretError, SecretSource};
use crate::policy::egress::RequestTarget;

/// How the host obtains tokens for one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthGrant {
    /// The stored value holds a client id and secret; tokens are asked for directly.
    ClientCredentials,
    /// The stored value also holds a refresh token from a person's consent.
    AuthorizationCode,
}

/// The declared OAuth parameters of one credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSpec {
    pub grant: OAuthGrant,
    /// An https URL; checked like any egress target when used.
    pub token_url: String,
    pub scopes: Vec<String>,
    /// Each end user connects their own account; an invocation without a user has none.
    pub per_user: bool,
}

/// The origin of `spec`'s token endpoint (`https://host[:port]`), as credentials are bound.
pub fn token_origin(credential: &str, spec: &OAuthSpec) -> Result<String, CredentialError> {
    RequestTarget::parse(&spec.token_url)
        .map(|t| t.origin())
        .map_err(|d| CredentialError::Token {
            name: credential.to_string(),
            reason: d.code().to_string(),
        })
}

/// The OAuth client stored as `credential`'s value, if it is bound to the token endpoint
/// `spec` declares (else `credential-unbound`: stored for another manifest's token URL, its
/// secret is never sent to this one).
pub fn registered_client(
    credential: &str,
    spec: &OAuthSpec,
    source: &dyn SecretSource,
) -> Result<OAuthClient, CredentialError> {
    check_bound(credential, spec, source)?;
    stored_client(credential, source)
}

/// Refuses unless the stored value of `credential` is bound to `spec`'s token endpoint.
pub(super) fn check_bound(
    credential: &str,
    spec: &OAuthSpec,
    source: &dyn SecretSource,
) -> Result<(), CredentialError> {
    let Some(bound) = source.origins(credential)? else {
        return Ok(());
    };
    let origin = token_origin(credential, spec)?;
    if bound.contains(&origin) {
        return Ok(());
    }
    Err(CredentialError::Unbound {
        name: credential.to_string(),
        origin,
    })
}

/// The client stored as `credential`'s value, bound or not: callers check the binding first.
pub(super) fn stored_client(
    credential: &str,
    source: &dyn SecretSource,
) -> Result<OAuthClient, CredentialError> {
    let stored = source
        .get(credential, CredentialType::OAuth2)?
        .ok_or_else(|| CredentialError::Missing(credential.to_string()))?;
    OAuthClient::parse(&stored).map_err(|e| CredentialError::Malformed(credential.to_string(), e))
}

/// What an oauth2 credential stores: the client the operator registered, `{"client_id": …,
/// "client_secret": …}`, and optionally a `refresh_token` pasted in by hand (connections made
/// through the consent flow keep their tokens apart, per tenant or user).
#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClient {
    pub(super) client_id: String,
    pub(super) client_secret: Zeroizing<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) refresh_token: Option<Zeroizing<String>>,
}

impl OAuthClient {
    /// The same client holding `refresh_token`, to store after a rotation.
    pub(super) fn with_refresh_token(&self, refresh_token: Zeroizing<String>) -> Self {
        Self {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            refresh_token: Some(refresh_token),
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn parse(secret: &Secret) -> Result<Self, SecretError> {
        let parsed: Self = serde_json::from_str(secret.expose()).map_err(|e| {
            // serde's message may quote the input: report only where it failed.
            SecretError::OAuth2(format!(
                "with client_id, client_secret and optionally refresh_token (invalid at column {})",
                e.column()
            ))
        })?;
        if parsed.client_id.is_empty() || parsed.client_secret.is_empty() {
            return Err(SecretError::OAuth2(
                "whose client_id and client_secret are not empty".into(),
            ));
        }
        Ok(parsed)
    }
}
