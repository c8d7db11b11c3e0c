//! The browser's half of an OAuth connection (docs/api.md, "OAuth connections"): the start
//! link `connect` returned, and the provider's callback. Neither carries an API key: the
//! one-time link, then the single-use state and the browser-binding cookie, stand for it.
//!
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

use std::sync::Arc;

use airlock_host_api::audit::{AuditEvent, ConnectionChange};
use airlock_host_api::credentials::{CredentialScope, CredentialSpec};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, COOKIE, LOCATION, REFERRER_POLICY, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::id as id_of;
use super::oauth::{authorization_code, random_token, registered_client, user_ref};
use crate::app::App;
use crate::client::Client;
use crate::error::{ApiError, ErrorBody};
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::{InstallationId, TenantId, UserId};
use airlock_store::{ConnectionKey, TakenState};
use airlock_store::{Connections, Consents};

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

/// What the provider sends back: `state` with `code`, or with `error`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Callback {
    state: Option<String>,
    code: Option<String>,
    /// The provider's RFC 6749 error code, if consent was not given.
    error: Option<String>,
}

/// The connection the consent made.
#[derive(Serialize, ToSchema)]
pub(super) struct Connected {
    /// Always `true`.
    connected: bool,
    installation: String,
    credential: String,
    /// For a per-user credential: whose connection.
    user: Option<String>,
    scopes: Vec<String>,
    /// Scopes granted beyond those asked for (recorded as a security event).
    widened: Vec<String>,
    /// When the access token expires (unix seconds), if it does.
    expires_at: Option<u64>,
}

/// What the start link refers to.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct StartPath {
    /// The one-time id from `start_url`.
    id: String,
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
        Ok(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "connect-refused", message).with_reason(reason)
        }
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

/// Open a consent's start link
///
/// The start link `connect` returned, opened by the person's browser: taken once, it sets an
/// `HttpOnly`, `Secure`, `SameSite=Lax` cookie (`__Host-airlock-consent-…`, a random nonce
/// whose hash is bound to the state) and redirects to the provider's authorization URL with a
/// single-use state and a PKCE challenge.
#[utoipa::path(
    get,
    path = "/v1/oauth/start/{id}",
    tag = "oauth",
    operation_id = "start_consent",
    security(),
    params(StartPath),
    responses(
        (status = 302, description = "To the provider's authorization URL (`Location`), with the consent cookie (`Set-Cookie`)"),
        (status = 400, description = "Unknown, used or expired link (`connect-refused`, with `reason`)", body = ErrorBody),
        (status = 404, description = "The installation or credential is gone (`not-found`)", body = ErrorBody),
        (status = 409, description = "No OAuth client stored, or bound elsewhere (`no-oauth-client`, `credential-unbound`)", body = ErrorBody),
        (status = 422, description = "No longer an authorization-code credential (`connect-refused`)", body = ErrorBody),
        (status = 429, description = "Too many unknown links from this client (`too-many-failures`)", body = ErrorBody),
        (status = 503, description = "The audit trail cannot take records (`audit-unavailable`)", body = ErrorBody),
    ),
)]
pub(super) async fn start(
    State(app): State<Arc<App>>,
    client: Client,
    Path(StartPath { id }): Path<StartPath>,
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

/// Complete a consent
///
/// Where the provider sends the person back: the state is taken (single use) and refused
/// unless the browser holds the consent cookie set by the start link (`browser-mismatch`); the
/// code is exchanged with the PKCE verifier, the tokens and the provider account sealed. The
/// cookie is cleared whatever the outcome.
#[utoipa::path(
    get,
    path = "/v1/oauth/callback",
    tag = "oauth",
    operation_id = "complete_consent",
    security(),
    params(Callback),
    responses(
        (status = 200, description = "Connected", body = Connected),
        (status = 400, description = "Refused (`connect-refused`, with `reason`: `unknown-state`, `state-expired`, `browser-mismatch`, `provider-<error>`, `missing-code`, `exchange-failed`, …)", body = ErrorBody),
        (status = 404, description = "The installation is gone (`not-found`)", body = ErrorBody),
        (status = 429, description = "Too many unknown states from this client (`too-many-failures`)", body = ErrorBody),
        (status = 503, description = "The audit trail cannot take records (`audit-unavailable`)", body = ErrorBody),
    ),
)]
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
) -> Result<Json<Connected>, ApiError> {
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
    Ok(Json(Connected {
        connected: true,
        installation: consent.installation,
        credential: consent.credential,
        user: consent.user,
        scopes: exchanged.scopes,
        widened,
        expires_at: exchanged.expires_at,
    }))
}
