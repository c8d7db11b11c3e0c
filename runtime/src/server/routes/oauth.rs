//! OAuth 2.0 connections: a tenant (or one of its users) consents at the provider, and the host
//! keeps the tokens. Authorization code with PKCE (S256), a single-use `state`, and a consent
//! bound to the browser that started it (docs/api.md, "OAuth connections").
//!
//! - `POST /v1/installations/{installation}/credentials/{name}/connect` returns a start URL on
//!   this server. The credential must be an authorization-code `oauth2` credential of the
//!   installed version, whose client (id and secret) the operator stored as its value, bound
//!   to the declared token endpoint. The scopes asked for are the declared ones, or a subset
//!   of them, never more. The link (32 random bytes, only its hash stored) works once, until
//!   ten minutes after `connect`.
//! - `GET /v1/oauth/start/{id}` is opened by the person's browser: it takes the link, sets an
//!   `HttpOnly`, `Secure`, `SameSite=Lax` cookie holding a random nonce, and redirects to the
//!   provider. The state (32 random bytes) is bound to tenant, installation, credential, user
//!   and the nonce's hash.
//! - `GET /v1/oauth/callback` is where the provider sends the browser back. The state is taken
//!   (so it works once), refused unless the browser holds the nonce cookie (so a forwarded
//!   authorization URL connects nobody's account under another's name), the code is exchanged
//!   with the PKCE verifier through the same checked transport as every egress request, and
//!   the tokens are sealed with the provider account the response names. Scopes granted beyond
//!   those asked for are recorded as widened. The cookie is cleared.
//! - `GET /v1/installations/{installation}/credentials` lists each connection's status, scopes,
//!   expiry and provider account with the credentials; `DELETE …/credentials/{name}/connection`
//!   removes one. Tokens never come out.

use std::sync::Arc;

use airlock_host_api::audit::{AuditEvent, ConnectionChange};
use airlock_host_api::credentials::{
    CredentialError, CredentialScope, CredentialSpec, OAuthClient, OAuthGrant, OAuthSpec,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, COOKIE, LOCATION, REFERRER_POLICY, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::installations::scope;
use super::{TenantQuery, body, id as id_of};
use crate::apikey::Scope;
use crate::clock::now_unix;
use crate::ids::{InstallationId, TenantId, UserId};
use crate::loader::Integration;
use crate::manifest::CredentialDecl;
use crate::server::app::App;
use crate::server::auth::Principal;
use crate::server::client::Client;
use crate::server::error::ApiError;
use crate::store::StoredSecrets;
use crate::store::connections::{ConnectionKey, PendingConsent, TakenState};
use airlock_store::{Connections, Consents};

/// How long a consent may take, from `connect` to the callback.
const CONSENT_TTL: u64 = 600;
/// The browser-binding cookie's name, before a prefix of its state's hash (one per consent, so
/// two consents in one browser do not overwrite each other). `__Host-`: browsers accept it
/// only `Secure`, with `Path=/` and no `Domain`, so no sibling host can plant one.
const COOKIE_PREFIX: &str = "__Host-airlock-consent-";
/// Longest state or start id looked at.
const MAX_ID: usize = 256;
/// What a query component leaves as it is: RFC 3986's unreserved characters.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectRequest {
    /// For a per-user credential: whose account.
    user: Option<String>,
    /// A subset of the declared scopes (default: all of them).
    scopes: Option<Vec<String>>,
}

#[derive(Deserialize)]
pub(super) struct UserQuery {
    tenant: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// The authorize URL and OAuth parameters `integration` declares for `name`, if it is an
/// authorization-code credential.
fn authorization_code<'a>(
    integration: &'a Integration,
    name: &str,
) -> Result<(String, &'a OAuthSpec), ApiError> {
    let decl = integration
        .manifest()
        .manifest
        .credentials
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, d)| d.get_ref());
    match (decl, integration.credentials().get(name)) {
        (Some(CredentialDecl::Oauth2(decl)), Some(CredentialSpec::OAuth2(spec)))
            if spec.grant == OAuthGrant::AuthorizationCode =>
        {
            let url = decl
                .authorize_url
                .as_ref()
                .map(ToString::to_string)
                .ok_or_else(|| ApiError::internal("authorization-code without authorize-url"))?;
            Ok((url, spec))
        }
        (None, _) => Err(ApiError::not_found(format!("credential {name}"))),
        _ => Err(refused(format!(
            "credential `{name}` is not an oauth2 authorization-code credential: there is no \
             consent to give"
        ))),
    }
}

fn refused(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "connect-refused", message)
}

/// Whose connection: `user` must be given exactly for a per-user credential.
fn user_for(spec: &OAuthSpec, user: Option<&str>, name: &str) -> Result<Option<UserId>, ApiError> {
    match (spec.per_user, user) {
        (true, None) => Err(refused(format!(
            "credential `{name}` is per user: name the user (`\"user\": …`)"
        ))),
        (false, Some(_)) => Err(refused(format!(
            "credential `{name}` is the installation's, not per user: name no user"
        ))),
        (_, user) => user
            .map(|u| u.parse().map_err(ApiError::invalid))
            .transpose(),
    }
}

pub(super) async fn connect(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path((installation, name)): Path<(String, String)>,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(&app, Scope::CredentialsWrite).await?;
    let (tenant, installation) = scope(&principal, &query, &installation)?;
    let raw = body(raw)?;
    let request: ConnectRequest = if raw.is_empty() {
        ConnectRequest::default()
    } else {
        super::json_body(
            Ok(raw),
            "connect request (`{\"user\": …, \"scopes\": […]}`)",
        )?
    };
    let loaded = app.installed(&tenant, &installation).await?;
    let (_, spec) = authorization_code(&loaded.integration, &name)?;
    let user = user_for(spec, request.user.as_deref(), &name)?;
    let scopes = match request.scopes {
        None => spec.scopes.clone(),
        Some(asked) => {
            if let Some(extra) = asked.iter().find(|s| !spec.scopes.contains(s)) {
                return Err(refused(format!(
                    "scope {extra:?} is not declared for `{name}`; it declares: {}",
                    spec.scopes.join(" ")
                )));
            }
            asked
        }
    };
    // Refused now rather than in the person's browser: no client, or one bound elsewhere.
    registered_client(&app, &tenant, &installation, &name, spec)?;
    let id = random_token();
    let expires = now_unix() + CONSENT_TTL;
    let consent = PendingConsent {
        tenant: tenant.to_string(),
        installation: installation.to_string(),
        credential: name.clone(),
        user: user.as_ref().map(ToString::to_string),
        scopes: scopes.clone(),
        redirect_uri: app.redirect_uri(),
        expires,
    };
    app.store.offer_consent(&id, &consent)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "start_url": app.consent_start_url(&id),
            "expires": expires,
            "scopes": scopes,
            "user": user,
        })),
    ))
}

/// The OAuth client the operator stored as the credential's value, bound to the token
/// endpoint `spec` declares.
fn registered_client(
    app: &App,
    tenant: &TenantId,
    installation: &InstallationId,
    name: &str,
    spec: &OAuthSpec,
) -> Result<OAuthClient, ApiError> {
    let source = StoredSecrets::new(app.store.clone(), tenant.clone(), installation.clone());
    airlock_host_api::credentials::registered_client(name, spec, &source).map_err(|e| match e {
        CredentialError::Missing(_) => ApiError::new(
            StatusCode::CONFLICT,
            "no-oauth-client",
            format!(
                "register the OAuth client first: store `{{\"client_id\": …, \"client_secret\": …}}` \
                 as credential `{name}` (PUT …/credentials/{name})"
            ),
        ),
        CredentialError::Unbound { origin, .. } => ApiError::new(
            StatusCode::CONFLICT,
            "credential-unbound",
            format!(
                "credential `{name}` was stored for another token endpoint than {origin}, which \
                 the installed version declares: its secret is not sent there until it is \
                 stored again (PUT …/credentials/{name})"
            ),
        ),
        other => refused(other.to_string()),
    })
}

/// How the trail names `user`: by reference, never the id (docs/security-model.md).
fn user_ref(
    app: &App,
    tenant: &TenantId,
    user: Option<&UserId>,
) -> Result<Option<String>, ApiError> {
    Ok(user.map(|u| app.store.user_ref(tenant, u)).transpose()?)
}

/// 32 bytes from the OS CSPRNG, base64url: a state, or a PKCE verifier (43 characters).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The cookie that binds the consent with `state` to the browser that started it.
fn cookie_name(state: &str) -> String {
    let hash = hex::encode(Sha256::digest(state.as_bytes()));
    format!("{COOKIE_PREFIX}{}", &hash[..16])
}

/// The value of cookie `name` in the request, if the browser sent it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_string())
}

/// A refused start or callback, recorded with its reason only.
async fn refuse(
    app: &App,
    client: Client,
    tenant: Option<String>,
    reason: &str,
    message: String,
) -> ApiError {
    let recorded = app
        .trail
        .append(AuditEvent::ConnectionRefused {
            tenant,
            reason: reason.to_string(),
            peer: client.to_string(),
        })
        .await;
    match recorded {
        Err(e) => e.into(),
        Ok(_) => ApiError::new(StatusCode::BAD_REQUEST, "connect-refused", message)
            .with_detail(json!({ "reason": reason })),
    }
}

/// A start link or state that is not there: counted against the client (on a limiter of its
/// own); past the limit such refusals are 429, unrecorded, so forgeries cannot flood the trail.
/// A real link or state is never refused by the limiter: forgeries from one client, or from
/// anyone behind the same proxy, cannot stop another's consent.
async fn forged(app: &App, client: Client, reason: &str, message: String) -> ApiError {
    if let Some(retry) = app.callback_failures.blocked(&client.bucket()) {
        return ApiError::too_many_failures(retry);
    }
    app.callback_failures.fail(&client.bucket());
    refuse(app, client, None, reason, message).await
}

/// The one-time link `connect` returned, opened by the person's browser: sets the nonce cookie
/// and redirects to the provider.
pub(super) async fn start(
    State(app): State<Arc<App>>,
    client: Client,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let offered = match id.len() {
        1..=MAX_ID => app.store.take_offered_consent(&id)?,
        _ => None,
    };
    let Some(consent) = offered else {
        let message = "this consent link is unknown or was already used: start again with connect";
        return Err(forged(&app, client, "unknown-start", message.into()).await);
    };
    let now = now_unix();
    if now >= consent.expires {
        let message = "the consent link is more than ten minutes old: start again with connect";
        let tenant = Some(consent.tenant);
        return Err(refuse(&app, client, tenant, "start-expired", message.into()).await);
    }
    let tenant: TenantId = id_of(&consent.tenant)?;
    let installation: InstallationId = id_of(&consent.installation)?;
    let user: Option<UserId> = consent
        .user
        .as_deref()
        .map(|u| u.parse().map_err(ApiError::invalid))
        .transpose()?;
    let loaded = app.installed(&tenant, &installation).await?;
    let credential = &consent.credential;
    let (authorize_url, spec) = authorization_code(&loaded.integration, credential)?;
    let registered = registered_client(&app, &tenant, &installation, credential, spec)?;
    let state = random_token();
    let verifier = random_token();
    let nonce = random_token();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let encode = |s: &str| utf8_percent_encode(s, QUERY).to_string();
    let separator = if authorize_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!(
        "{authorize_url}{separator}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&code_challenge={challenge}&code_challenge_method=S256",
        encode(registered.client_id()),
        encode(&consent.redirect_uri),
        encode(&consent.scopes.join(" ")),
        encode(&state),
    );
    let cookie = format!(
        "{}={nonce}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        cookie_name(&state),
        consent.expires - now
    );
    let key = ConnectionKey {
        tenant: &tenant,
        installation: &installation,
        credential,
        user: user.as_ref(),
    };
    app.store
        .begin_consent(key, consent.clone(), &state, &verifier, &nonce)?;
    Ok((
        StatusCode::FOUND,
        [
            (LOCATION, url),
            (SET_COOKIE, cookie),
            (CACHE_CONTROL, "no-store".to_string()),
            (REFERRER_POLICY, "no-referrer".to_string()),
        ],
    )
        .into_response())
}

/// Where the provider sends the person's browser back; the browser-binding cookie is cleared
/// whatever the outcome.
pub(super) async fn callback(
    State(app): State<Arc<App>>,
    client: Client,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let clear = callback
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= MAX_ID)
        .map(|state| {
            let name = cookie_name(state);
            (
                SET_COOKIE,
                format!("{name}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax"),
            )
        });
    let result = complete(&app, client, &headers, callback).await;
    (AppendHeaders(clear), result).into_response()
}

/// The callback's work: the state taken for this browser, the code exchanged, the tokens and
/// the provider account sealed.
async fn complete(
    app: &Arc<App>,
    client: Client,
    headers: &HeaderMap,
    callback: Callback,
) -> Result<Json<Value>, ApiError> {
    let refuse = async |tenant: Option<String>, reason: &str, message: String| {
        refuse(app, client, tenant, reason, message).await
    };
    let Some(state) = callback
        .state
        .filter(|s| !s.is_empty() && s.len() <= MAX_ID)
    else {
        let message = "the callback carries no state".into();
        return Err(forged(app, client, "missing-state", message).await);
    };
    let nonce = cookie(headers, &cookie_name(&state));
    let (consent, verifier) = match app
        .store
        .take_consent(&state, nonce.as_deref(), now_unix())?
    {
        TakenState::Unknown => {
            let message =
                "this state is unknown or was already used: start again with connect".into();
            return Err(forged(app, client, "unknown-state", message).await);
        }
        TakenState::Expired(consent) => {
            return Err(refuse(
                Some(consent.tenant),
                "state-expired",
                "the consent took more than ten minutes: start again with connect".into(),
            )
            .await);
        }
        TakenState::OtherBrowser(consent) => {
            return Err(refuse(
                Some(consent.tenant),
                "browser-mismatch",
                "this consent was started in another browser (its cookie is missing): start \
                 again with connect, in the browser that completes it"
                    .into(),
            )
            .await);
        }
        TakenState::Valid(consent, verifier) => (consent, verifier),
    };
    let tenant = Some(consent.tenant.clone());
    if let Some(error) = callback.error {
        // Only the RFC 6749 error code, and only if it looks like one.
        let code =
            if error.len() <= 40 && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                error
            } else {
                "error".into()
            };
        return Err(refuse(
            tenant,
            &format!("provider-{}", code.replace('_', "-")),
            format!("the provider did not grant consent ({code})"),
        )
        .await);
    }
    let Some(code) = callback.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return Err(refuse(
            tenant,
            "missing-code",
            "the callback carries no code".into(),
        )
        .await);
    };
    let tenant_id: TenantId = id_of(&consent.tenant)?;
    let installation: InstallationId = id_of(&consent.installation)?;
    let user: Option<UserId> = consent
        .user
        .as_deref()
        .map(|u| u.parse().map_err(ApiError::invalid))
        .transpose()?;
    let loaded = app.installed(&tenant_id, &installation).await?;
    let Some(CredentialSpec::OAuth2(spec)) =
        loaded.integration.credentials().get(&consent.credential)
    else {
        return Err(refuse(
            tenant,
            "credential-gone",
            "the credential is no longer declared".into(),
        )
        .await);
    };
    let registered = registered_client(app, &tenant_id, &installation, &consent.credential, spec)?;
    let exchanged = app
        .runtime
        .oauth()
        .exchange_code(
            &consent.credential,
            spec,
            &registered,
            &code,
            &verifier,
            &consent.redirect_uri,
        )
        .await;
    let exchanged = match exchanged {
        Ok(exchanged) => exchanged,
        Err(e) => {
            return Err(refuse(
                tenant,
                "exchange-failed",
                format!("the code exchange failed: {e}"),
            )
            .await);
        }
    };
    let widened: Vec<String> = exchanged
        .scopes
        .iter()
        .filter(|s| !consent.scopes.contains(s))
        .cloned()
        .collect();
    let key = ConnectionKey {
        tenant: &tenant_id,
        installation: &installation,
        credential: &consent.credential,
        user: user.as_ref(),
    };
    app.store.put_connection(key, &exchanged, now_unix())?;
    let mut scope = CredentialScope::new(consent.tenant.clone(), consent.installation.clone());
    scope.user = consent.user.clone();
    app.runtime
        .oauth()
        .forget(&scope, &consent.credential)
        .await;
    // The provider account stays out of the trail: it identifies a third party's account.
    app.trail
        .append(AuditEvent::ConnectionChanged {
            tenant: consent.tenant.clone(),
            installation: consent.installation.clone(),
            credential: consent.credential.clone(),
            user: user_ref(app, &tenant_id, user.as_ref())?,
            change: ConnectionChange::Connected,
            scopes: exchanged.scopes.clone(),
            widened: widened.clone(),
        })
        .await?;
    Ok(Json(json!({
        "connected": true,
        "installation": consent.installation,
        "credential": consent.credential,
        "user": consent.user,
        "scopes": exchanged.scopes,
        "widened": widened,
        "expires_at": exchanged.expires_at,
    })))
}

pub(super) async fn disconnect(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path((installation, name)): Path<(String, String)>,
    Query(query): Query<UserQuery>,
) -> Result<StatusCode, ApiError> {
    principal.require(&app, Scope::CredentialsWrite).await?;
    let tenant_query = TenantQuery {
        tenant: query.tenant,
    };
    let (tenant, installation) = scope(&principal, &tenant_query, &installation)?;
    let user: Option<UserId> = query
        .user
        .as_deref()
        .map(|u| u.parse().map_err(ApiError::invalid))
        .transpose()?;
    let key = ConnectionKey {
        tenant: &tenant,
        installation: &installation,
        credential: &name,
        user: user.as_ref(),
    };
    if !app.store.delete_connection(key)? {
        return Err(ApiError::not_found("connection"));
    }
    let mut scope = CredentialScope::new(tenant.to_string(), installation.to_string());
    scope.user = user.as_ref().map(ToString::to_string);
    app.runtime.oauth().forget(&scope, &name).await;
    app.trail
        .append(AuditEvent::ConnectionChanged {
            tenant: tenant.to_string(),
            installation: installation.to_string(),
            credential: name,
            user: user_ref(&app, &tenant, user.as_ref())?,
            change: ConnectionChange::Disconnected,
            scopes: Vec::new(),
            widened: Vec::new(),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
