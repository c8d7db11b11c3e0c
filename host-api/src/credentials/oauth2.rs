//! The host's OAuth 2.0 client: it holds the client secret and refresh token, asks the
//! declared token endpoint for access tokens, and keeps them until shortly before expiry.
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
}

/// What an oauth2 credential stores: `{"client_id": …, "client_secret": …,
/// "refresh_token": …}` (the refresh token only for the authorization-code grant).
#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OAuthClientSecret {
    client_id: String,
    client_secret: Zeroizing<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<Zeroizing<String>>,
}

impl OAuthClientSecret {
    /// The same client holding `refresh_token`, to store after a rotation.
    fn with_refresh_token(&self, refresh_token: Zeroizing<String>) -> Self {
        Self {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            refresh_token: Some(refresh_token),
        }
    }

    pub(crate) fn parse(secret: &Secret) -> Result<Self, SecretError> {
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
    refresh_at: Instant,
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
        let key = TokenKey {
            scope: scope.clone(),
            credential: credential.to_string(),
        };
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone();
        let mut state = slot.lock().await;
        if let Some((token, refresh_at)) = &state.access
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        if state.needs_reauth {
            return Err(CredentialError::NeedsReauth(credential.to_string()));
        }
        let stored = source
            .get(credential, CredentialType::OAuth2)?
            .ok_or_else(|| CredentialError::Missing(credential.to_string()))?;
        let client = OAuthClientSecret::parse(&stored)
            .map_err(|e| CredentialError::Malformed(credential.to_string(), e))?;
        let refresh = match spec.grant {
            OAuthGrant::ClientCredentials => None,
            OAuthGrant::AuthorizationCode => Some(
                state
                    .refresh
                    .clone()
                    .or(client.refresh_token.clone())
                    .ok_or_else(|| CredentialError::NeedsReauth(credential.to_string()))?,
            ),
        };
        let issued = self
            .request(
                credential,
                spec,
                &client,
                refresh.as_deref().map(String::as_str),
            )
            .await;
        let issued = match issued {
            Ok(issued) => issued,
            Err(e) => {
                state.needs_reauth = matches!(e, CredentialError::NeedsReauth(_));
                return Err(e);
            }
        };
        state.access = Some((issued.access.clone(), issued.refresh_at));
        if let Some(rotated) = issued.refresh {
            state.refresh = Some(rotated.clone());
            // Kept in memory first: if storing fails, this process still holds the live token.
            let value = client.with_refresh_token(rotated);
            let value = serde_json::to_string(&value)
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

    /// One token call: `client_credentials`, or `refresh_token` when `refresh` is given.
    async fn request(
        &self,
        credential: &str,
        spec: &OAuthSpec,
        client: &OAuthClientSecret,
        refresh: Option<&str>,
    ) -> Result<Issued, CredentialError> {
        let fail = |reason: &str| CredentialError::Token {
            name: credential.to_string(),
            reason: reason.to_string(),
        };
        let target = RequestTarget::parse(&spec.token_url).map_err(|d| fail(d.code()))?;
        let encode = |s: &str| utf8_percent_encode(s, FORM).to_string();
        let mut form = Zeroizing::new(match refresh {
            None => "grant_type=client_credentials".to_string(),
            Some(token) => format!("grant_type=refresh_token&refresh_token={}", encode(token)),
        });
        if !spec.scopes.is_empty() && refresh.is_none() {
            form.push_str("&scope=");
            form.push_str(&encode(&spec.scopes.join(" ")));
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
            .body(Full::new(Bytes::from(form.as_bytes().to_vec())))
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
            if refresh.is_some() && REVOKED.contains(&code) {
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
        let lifetime = body
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        Ok(Issued {
            access,
            refresh: body.refresh_token,
            refresh_at: Instant::now() + lifetime - margin,
        })
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: Option<Zeroizing<String>>,
    token_type: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<Zeroizing<String>>,
    error: Option<String>,
}
