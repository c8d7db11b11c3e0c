//! The host's OAuth 2.0 client: it holds the client secret and refresh token, asks the
//! declared token endpoint for access tokens, and keeps them until shortly before expiry.
//!
//! Tokens come from one of three places: the client-credentials grant; a connection (the
//! tokens a person's consent produced through the authorization-code flow with PKCE, stored
//! per tenant or per user, see [`ConnectionTokens`]); or a refresh token stored with the client
//! itself. A refresh token the server refuses marks the connection as needing re-consent.
//!
//! One token call at a time per (tenant, installation, credential) (CR-11, CR-13): concurrent
//! requests wait for the one in flight and share its token. Token calls go through the same
//! transport as guest requests, so the token URL passes the same address checks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::{CredentialError, CredentialScope, CredentialType, Secret, SecretError, SecretSource};
use crate::egress::EgressSettings;
use crate::egress::transport::{self, Timeouts};
use crate::policy::egress::RequestTarget;

/// What `application/x-www-form-urlencoded` leaves as it is: RFC 3986's unreserved characters.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// Refresh this long before the token expires (or at half its life, if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Token types sent as `Authorization: Bearer`: RFC 6750's, and Slack's names for its bearer
/// tokens.
const BEARER_TYPES: [&str; 3] = ["bearer", "bot", "user"];
/// Error codes meaning the refresh token is gone for good: RFC 6749's, and Slack's.
const REVOKED: [&str; 3] = ["invalid_grant", "invalid_refresh_token", "token_revoked"];
/// Lifetime assumed when the server gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The longest `expires_in` believed: a larger one (up to u64::MAX) would overflow the clock.
const MAX_LIFETIME: u64 = 366 * 24 * 3600;

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
}

/// What an oauth2 credential stores: the client the operator registered, `{"client_id": …,
/// "client_secret": …}`, and optionally a `refresh_token` pasted in by hand (connections made
/// through the consent flow keep their tokens apart, per tenant or user).
#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClient {
    client_id: String,
    client_secret: Zeroizing<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<Zeroizing<String>>,
}

impl OAuthClient {
    /// The same client holding `refresh_token`, to store after a rotation.
    fn with_refresh_token(&self, refresh_token: Zeroizing<String>) -> Self {
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

/// A token cache key: never shared across tenants or installations.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    scope: CredentialScope,
    credential: String,
}

/// What the host holds for one credential.
#[derive(Default)]
struct TokenState {
    /// The access token and when to refresh it.
    access: Option<(Secret, Instant)>,
    /// A rotated refresh token, newer than the stored one.
    refresh: Option<Zeroizing<String>>,
    /// The refresh token was refused: no more calls until the credential is set again.
    needs_reauth: bool,
}

/// A token the endpoint issued.
struct Issued {
    access: Secret,
    refresh: Option<Zeroizing<String>>,
    /// Seconds until the access token expires, if the server said.
    lifetime: Option<u64>,
    /// The scopes granted, if the server said (else those asked for).
    scopes: Option<Vec<String>>,
}

impl Issued {
    /// When to ask again: a margin before expiry (at most half the token's life).
    fn refresh_at(&self) -> Instant {
        refresh_at(self.lifetime.map_or(DEFAULT_LIFETIME, Duration::from_secs))
    }
}

fn refresh_at(lifetime: Duration) -> Instant {
    Instant::now() + lifetime - REFRESH_MARGIN.min(lifetime / 2)
}

/// The form of one token call.
enum TokenForm<'a> {
    ClientCredentials,
    Refresh(&'a str),
    Code {
        code: &'a str,
        verifier: &'a str,
        redirect_uri: &'a str,
    },
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

type Slot = Arc<tokio::sync::Mutex<TokenState>>;

/// Access tokens held by the host, shared by a runtime's invocations.
pub struct OAuthTokens {
    settings: Arc<EgressSettings>,
    slots: Mutex<HashMap<TokenKey, Slot>>,
}

impl OAuthTokens {
    pub fn new(settings: Arc<EgressSettings>) -> Self {
        Self {
            settings,
            slots: Mutex::default(),
        }
    }

    fn slot(&self, scope: &CredentialScope, credential: &str) -> Slot {
        let key = TokenKey {
            scope: scope.clone(),
            credential: credential.to_string(),
        };
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone()
    }

    /// A current access token for `credential` of `scope`: the cached one unless it is due for
    /// refresh, else one new token call (which concurrent callers wait for and share).
    /// `source` is read only when a call is needed, and written when the server rotates the
    /// refresh token (the old one may already be dead: CR-11).
    pub async fn access_token(
        &self,
        scope: &CredentialScope,
        credential: &str,
        spec: &OAuthSpec,
        source: &dyn SecretSource,
    ) -> Result<Secret, CredentialError> {
        let slot = self.slot(scope, credential);
        let mut state = slot.lock().await;
        if let Some((token, refresh_at)) = &state.access
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        if state.needs_reauth {
            return Err(CredentialError::NeedsReauth(credential.to_string()));
        }
        let user = scope.user.as_deref();
        let stored = source
            .get(credential, CredentialType::OAuth2)?
            .ok_or_else(|| CredentialError::Missing(credential.to_string()))?;
        let client = OAuthClient::parse(&stored)
            .map_err(|e| CredentialError::Malformed(credential.to_string(), e))?;
        let connection = match spec.grant {
            OAuthGrant::ClientCredentials => None,
            OAuthGrant::AuthorizationCode => source.connection(credential, user)?,
        };
        if let Some(connection) = &connection {
            if connection.needs_reauth {
                state.needs_reauth = true;
                return Err(CredentialError::NeedsReauth(credential.to_string()));
            }
            // A stored access token still good for longer than the margin is used as it is.
            if let Some(access) = &connection.access {
                let left = connection
                    .expires_at
                    .map(|at| Duration::from_secs(at.saturating_sub(unix_now())));
                if left.is_none_or(|left| left > REFRESH_MARGIN) {
                    let refresh_at = refresh_at(left.unwrap_or(DEFAULT_LIFETIME));
                    state.access = Some((access.clone(), refresh_at));
                    return Ok(access.clone());
                }
            }
        }
        let refresh = match spec.grant {
            OAuthGrant::ClientCredentials => None,
            OAuthGrant::AuthorizationCode => {
                // A refresh token stored with the client is the installation's, never a user's.
                let installation_wide = client.refresh_token.clone().filter(|_| user.is_none());
                let held = state
                    .refresh
                    .clone()
                    .or_else(|| connection.as_ref().and_then(|c| c.refresh.clone()))
                    .or(installation_wide);
                if held.is_none() {
                    // Expired, and nothing to renew it with: only the person can.
                    if let Some(connection) = &connection {
                        state.needs_reauth = true;
                        source.mark_needs_reauth(credential, user, connection.revision)?;
                    }
                    return Err(CredentialError::NeedsReauth(credential.to_string()));
                }
                held
            }
        };
        let form = match &refresh {
            None => TokenForm::ClientCredentials,
            Some(token) => TokenForm::Refresh(token),
        };
        let issued = match self.request(credential, spec, &client, form).await {
            Ok(issued) => issued,
            Err(e) => {
                if matches!(e, CredentialError::NeedsReauth(_)) {
                    state.needs_reauth = true;
                    if let Some(connection) = &connection {
                        source.mark_needs_reauth(credential, user, connection.revision)?;
                    }
                }
                return Err(e);
            }
        };
        state.access = Some((issued.access.clone(), issued.refresh_at()));
        if let Some(rotated) = &issued.refresh {
            state.refresh = Some(rotated.clone());
        }
        // Kept in memory first: if storing fails, this process still holds the live token.
        if let Some(connection) = connection {
            let tokens = ConnectionTokens {
                access: Some(issued.access.clone()),
                expires_at: issued.lifetime.map(|l| unix_now() + l),
                refresh: issued.refresh.clone().or(connection.refresh),
                scopes: issued.scopes.clone().unwrap_or(connection.scopes),
                needs_reauth: false,
                revision: 0,
            };
            if !source.update_connection(credential, user, connection.revision, &tokens)? {
                *state = TokenState::default();
                return Err(CredentialError::Changed(credential.to_string()));
            }
        } else if let Some(rotated) = issued.refresh.clone() {
            let value = serde_json::to_string(&client.with_refresh_token(rotated))
                .map_err(|e| CredentialError::Store {
                    name: credential.to_string(),
                    reason: e.to_string(),
                })
                .and_then(|json| {
                    Secret::new(CredentialType::OAuth2, json)
                        .map_err(|e| CredentialError::Malformed(credential.to_string(), e))
                })?;
            source.replace(credential, &value)?;
        }
        Ok(issued.access)
    }

    /// Exchanges an authorization `code` (with its PKCE `verifier`) for the tokens of a new
    /// connection. Nothing is cached or stored: the caller stores them, then [`Self::prime`]s.
    pub async fn exchange_code(
        &self,
        credential: &str,
        spec: &OAuthSpec,
        client: &OAuthClient,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<ConnectionTokens, CredentialError> {
        let form = TokenForm::Code {
            code,
            verifier,
            redirect_uri,
        };
        let issued = self.request(credential, spec, client, form).await?;
        Ok(ConnectionTokens {
            expires_at: issued.lifetime.map(|l| unix_now() + l),
            scopes: issued.scopes.clone().unwrap_or_else(|| spec.scopes.clone()),
            access: Some(issued.access),
            refresh: issued.refresh,
            needs_reauth: false,
            revision: 0,
        })
    }

    /// Forgets what is held for `credential` of `scope` (a new connection was just made, or
    /// the old one removed): the next request reads the store afresh.
    pub async fn forget(&self, scope: &CredentialScope, credential: &str) {
        self.forget_where(|s, c| s == scope && c == credential)
            .await;
    }

    /// Forgets what is held for every credential `matches` selects (its client was set or
    /// deleted, its tenant deleted), so a tenant or installation made again under the same
    /// name never inherits a token. A token call in flight is waited for, then dropped.
    pub async fn forget_where(&self, matches: impl Fn(&CredentialScope, &str) -> bool) {
        let slots: Vec<Slot> = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(key, _)| matches(&key.scope, &key.credential))
            .map(|(_, slot)| slot.clone())
            .collect();
        for slot in slots {
            *slot.lock().await = TokenState::default();
        }
    }

    /// One token call.
    async fn request(
        &self,
        credential: &str,
        spec: &OAuthSpec,
        client: &OAuthClient,
        form: TokenForm<'_>,
    ) -> Result<Issued, CredentialError> {
        let fail = |reason: &str| CredentialError::Token {
            name: credential.to_string(),
            reason: reason.to_string(),
        };
        let target = RequestTarget::parse(&spec.token_url).map_err(|d| fail(d.code()))?;
        let encode = |s: &str| utf8_percent_encode(s, FORM).to_string();
        let refreshing = matches!(form, TokenForm::Refresh(_));
        let mut body = Zeroizing::new(match form {
            TokenForm::ClientCredentials => "grant_type=client_credentials".to_string(),
            TokenForm::Refresh(token) => {
                format!("grant_type=refresh_token&refresh_token={}", encode(token))
            }
            TokenForm::Code {
                code,
                verifier,
                redirect_uri,
            } => format!(
                "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
                encode(code),
                encode(redirect_uri),
                encode(verifier)
            ),
        });
        if !spec.scopes.is_empty() && spec.grant == OAuthGrant::ClientCredentials {
            body.push_str("&scope=");
            body.push_str(&encode(&spec.scopes.join(" ")));
        }
        // RFC 6749 §2.3.1: id and secret are form-encoded, then sent as HTTP Basic.
        let basic = Zeroizing::new(format!(
            "Basic {}",
            STANDARD.encode(format!(
                "{}:{}",
                encode(&client.client_id),
                encode(&client.client_secret)
            ))
        ));
        let mut authorization =
            HeaderValue::from_str(&basic).map_err(|_| fail("invalid-client-secret"))?;
        authorization.set_sensitive(true);
        let request = Request::builder()
            .method(Method::POST)
            .uri(target.path_and_query())
            .header(HOST, target.authority())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, authorization)
            .body(Full::new(Bytes::from(body.as_bytes().to_vec())))
            .map_err(|_| fail("invalid-url"))?;
        let timeouts = Timeouts::clamped(&self.settings.limits, None);
        let (response, io) = transport::exchange(
            &self.settings,
            target.host(),
            target.port(),
            request,
            timeouts,
            Default::default(),
        )
        .await
        .map_err(|(_, reason)| fail(&reason))?;
        tokio::spawn(Box::into_pin(io));
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_TOKEN_RESPONSE)
            .collect()
            .await
            .map_err(|_| fail("token-response-unreadable"))?
            .to_bytes();
        let body: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| fail("token-response-invalid"))?;
        if !status.is_success() || body.access_token.is_none() {
            let code = body.error.as_deref().unwrap_or("no-access-token");
            if refreshing && REVOKED.contains(&code) {
                return Err(CredentialError::NeedsReauth(credential.to_string()));
            }
            // Only the RFC 6749 error code, and only if it looks like one: never free text.
            let code = if code.len() <= 40
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-')
            {
                code
            } else {
                "token-error"
            };
            return Err(fail(&format!("HTTP {}: {code}", status.as_u16())));
        }
        if let Some(kind) = &body.token_type
            && !BEARER_TYPES.iter().any(|t| kind.eq_ignore_ascii_case(t))
        {
            // A DPoP or MAC token sent as a bearer token would fail, or worse, be replayable.
            return Err(fail("token-type-not-bearer"));
        }
        let access = body
            .access_token
            .map(|t| Secret::new(CredentialType::Bearer, t.to_string()))
            .transpose()
            .map_err(|e| CredentialError::Malformed(credential.to_string(), e))?
            .ok_or_else(|| fail("no-access-token"))?;
        // RFC 6749 §5.1 separates scopes with spaces; Slack with commas.
        let scopes = body.scope.map(|s| {
            s.split([' ', ','])
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        });
        Ok(Issued {
            access,
            refresh: body.refresh_token,
            lifetime: body.expires_in.map(|s| s.min(MAX_LIFETIME)),
            scopes,
        })
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: Option<Zeroizing<String>>,
    token_type: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<Zeroizing<String>>,
    scope: Option<String>,
    error: Option<String>,
}
