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
//!
//! The client secret and every refresh token go only to the token endpoint origin they were
//! stored for: a stored client is bound to it (with its rules' origins), and a connection
//! records the origin that issued it. A manifest that declares another token URL gets
//! `credential-unbound` until the client is stored again and the person connects again.
//!
//! The cache holds at most [`MAX_SLOTS`] credentials (least recently used dropped first), and
//! forgetting a credential or user removes its entry, so a flood of distinct users cannot grow
//! it without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
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
/// Credentials (per tenant, installation and user) whose tokens are held at most.
pub const MAX_SLOTS: usize = 10_000;
/// Longest provider account id kept; a longer one (or one with control characters) is dropped.
const MAX_ACCOUNT_ID: usize = 256;

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

impl ProviderAccount {
    /// The account a token response names, if any: Slack's `authed_user.id` (with
    /// `team.id`), else `user_id`, else `account_id`, else an ID token's `sub` (unverified).
    fn from_response(body: &TokenResponse) -> Option<Self> {
        let field = |value: &Option<Value>, key: Option<&str>| {
            let value = match key {
                Some(key) => value.as_ref()?.get(key)?,
                None => value.as_ref()?,
            };
            account_id(value)
        };
        let workspace = field(&body.team, Some("id"));
        let stated = field(&body.authed_user, Some("id"))
            .or_else(|| field(&body.user_id, None))
            .or_else(|| field(&body.account_id, None));
        if let Some(id) = stated {
            return Some(Self {
                id,
                workspace,
                source: AccountSource::TokenResponse,
            });
        }
        let claims = body.id_token.as_deref()?.split('.').nth(1)?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        Some(Self {
            id: account_id(claims.get("sub")?)?,
            workspace,
            source: AccountSource::IdTokenUnverified,
        })
    }
}

/// A string or number id, if it is short and has no control characters.
fn account_id(value: &Value) -> Option<String> {
    let id = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!id.is_empty() && id.len() <= MAX_ACCOUNT_ID && !id.chars().any(char::is_control))
        .then_some(id)
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
fn check_bound(
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

fn stored_client(
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
    account: Option<ProviderAccount>,
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

/// The cache: each credential's slot and when it was last used (a counter).
#[derive(Default)]
struct Slots {
    map: HashMap<TokenKey, (Slot, u64)>,
    clock: u64,
}

/// Access tokens held by the host, shared by a runtime's invocations.
pub struct OAuthTokens {
    settings: Arc<EgressSettings>,
    slots: Mutex<Slots>,
    /// Slots held at most, except those in use when a new one is needed.
    capacity: usize,
}

impl OAuthTokens {
    pub fn new(settings: Arc<EgressSettings>) -> Self {
        Self {
            settings,
            slots: Mutex::default(),
            capacity: MAX_SLOTS,
        }
    }

    /// The slot of `credential` of `scope`. A new one, when the cache is full, takes the place
    /// of the least recently used slot nobody holds (its token is simply asked for again).
    fn slot(&self, scope: &CredentialScope, credential: &str) -> Slot {
        let key = TokenKey {
            scope: scope.clone(),
            credential: credential.to_string(),
        };
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.clock += 1;
        let now = slots.clock;
        if let Some((slot, used)) = slots.map.get_mut(&key) {
            *used = now;
            return slot.clone();
        }
        if slots.map.len() >= self.capacity {
            let idle = slots
                .map
                .iter()
                .filter(|(_, (slot, _))| Arc::strong_count(slot) == 1)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone());
            if let Some(idle) = idle {
                slots.map.remove(&idle);
            }
        }
        let slot = Slot::default();
        slots.map.insert(key, (slot.clone(), now));
        slot
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
        // Before the cache: a held token is bound like the client it came from.
        check_bound(credential, spec, source)?;
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
        let client = stored_client(credential, source)?;
        let connection = match spec.grant {
            OAuthGrant::ClientCredentials => None,
            OAuthGrant::AuthorizationCode => source.connection(credential, user)?,
        };
        if let Some(connection) = &connection {
            // Tokens another token endpoint issued are not refreshed at this one.
            let origin = token_origin(credential, spec)?;
            if connection.token_origin.as_ref() != Some(&origin) {
                return Err(CredentialError::Unbound {
                    name: credential.to_string(),
                    origin,
                });
            }
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
                token_origin: connection.token_origin,
                account: connection.account,
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
    /// connection, with the provider account the response names. Nothing is cached or stored:
    /// the caller stores them, then [`Self::forget`]s what was held. `client` comes from
    /// [`registered_client`], bound to this token endpoint.
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
        let token_origin = token_origin(credential, spec)?;
        let issued = self.request(credential, spec, client, form).await?;
        Ok(ConnectionTokens {
            expires_at: issued.lifetime.map(|l| unix_now() + l),
            scopes: issued.scopes.clone().unwrap_or_else(|| spec.scopes.clone()),
            access: Some(issued.access),
            refresh: issued.refresh,
            needs_reauth: false,
            revision: 0,
            token_origin: Some(token_origin),
            account: issued.account,
        })
    }

    /// Forgets what is held for `credential` of `scope` (a new connection was just made, or
    /// the old one removed): the next request reads the store afresh.
    pub async fn forget(&self, scope: &CredentialScope, credential: &str) {
        self.forget_where(|s, c| s == scope && c == credential)
            .await;
    }

    /// Forgets what is held for every credential `matches` selects (its client was set or
    /// deleted, its tenant deleted, a user disconnected), so a tenant, installation or user
    /// made again under the same name never inherits a token: the entries leave the cache, and
    /// a token call in flight on one is waited for, then its result dropped.
    pub async fn forget_where(&self, matches: impl Fn(&CredentialScope, &str) -> bool) {
        let slots: Vec<Slot> = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let keys: Vec<TokenKey> = slots
                .map
                .keys()
                .filter(|key| matches(&key.scope, &key.credential))
                .cloned()
                .collect();
            keys.iter()
                .filter_map(|key| slots.map.remove(key))
                .map(|(slot, _)| slot)
                .collect()
        };
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
        let account = ProviderAccount::from_response(&body);
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
            account,
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
    /// Who consented, in the forms providers name them (Slack's objects; generic ids).
    authed_user: Option<Value>,
    team: Option<Value>,
    user_id: Option<Value>,
    account_id: Option<Value>,
    id_token: Option<Zeroizing<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(capacity: usize) -> OAuthTokens {
        OAuthTokens {
            capacity,
            ..OAuthTokens::new(Arc::new(EgressSettings::default()))
        }
    }

    fn user(name: &str) -> CredentialScope {
        CredentialScope {
            user: Some(name.to_string()),
            ..CredentialScope::new("acme", "slack")
        }
    }

    fn held(tokens: &OAuthTokens) -> Vec<String> {
        let slots = tokens.slots.lock().expect("slots");
        let mut users: Vec<String> = slots
            .map
            .keys()
            .filter_map(|k| k.scope.user.clone())
            .collect();
        users.sort();
        users
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_forgets_a_disconnected_user() {
        let tokens = tokens(3);
        // A slot in use is never dropped to make room.
        let busy = tokens.slot(&user("busy"), "slack");
        for n in 0..1000 {
            tokens.slot(&user(&format!("flood-{n}")), "slack");
        }
        assert_eq!(held(&tokens), ["busy", "flood-998", "flood-999"]);
        drop(busy);
        // The least recently used goes first: flood-998 is used again, so flood-999 and
        // busy make room.
        tokens.slot(&user("flood-998"), "slack");
        tokens.slot(&user("a"), "slack");
        tokens.slot(&user("b"), "slack");
        assert_eq!(held(&tokens), ["a", "b", "flood-998"]);
        // Disconnecting a user removes their entry; others stay.
        tokens.forget(&user("a"), "slack").await;
        assert_eq!(held(&tokens), ["b", "flood-998"]);
        tokens.forget_where(|scope, _| scope.tenant == "acme").await;
        assert!(held(&tokens).is_empty());
    }

    fn response(body: Value) -> TokenResponse {
        serde_json::from_value(body).expect("a token response")
    }

    #[test]
    fn the_account_comes_from_what_the_token_response_names() {
        let slack = response(serde_json::json!({
            "access_token": "xoxb-1", "authed_user": {"id": "U024BE7LH"},
            "team": {"id": "T9TK3CUKW", "name": "Acme"}
        }));
        assert_eq!(
            ProviderAccount::from_response(&slack),
            Some(ProviderAccount {
                id: "U024BE7LH".into(),
                workspace: Some("T9TK3CUKW".into()),
                source: AccountSource::TokenResponse,
            })
        );
        let numeric = response(serde_json::json!({"access_token": "t", "user_id": 4711}));
        assert_eq!(
            ProviderAccount::from_response(&numeric).map(|a| a.id),
            Some("4711".into())
        );
        // An ID token's subject is taken, and marked as unverified.
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub": "248289761001", "iss": "https://x"}"#);
        let oidc = response(serde_json::json!({
            "access_token": "t", "id_token": format!("e30.{claims}.sig")
        }));
        let account = ProviderAccount::from_response(&oidc).expect("sub");
        assert_eq!(account.id, "248289761001");
        assert_eq!(account.source, AccountSource::IdTokenUnverified);
        // Control characters, an oversized id, objects and nothing at all: no account.
        for body in [
            serde_json::json!({"access_token": "t", "user_id": "U1\nforged"}),
            serde_json::json!({"access_token": "t", "account_id": "x".repeat(300)}),
            serde_json::json!({"access_token": "t", "user_id": {"id": "U1"}}),
            serde_json::json!({"access_token": "t", "id_token": "not-a-jwt"}),
            serde_json::json!({"access_token": "t"}),
        ] {
            assert_eq!(
                ProviderAccount::from_response(&response(body.clone())),
                None,
                "{body}"
            );
        }
    }
}
