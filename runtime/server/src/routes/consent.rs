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
//!
//! The work is [`airlock_platform::connections`]'s; the cookie, the redirect and the limit on
//! unknown links and states per client are these handlers'.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, COOKIE, LOCATION, REFERRER_POLICY, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::app::App;
use crate::client::Client;
use crate::error::{ApiError, ErrorBody};
use airlock_platform::connections::{self, ConsentError, Refusal, Reply, plausible};

/// The browser-binding cookie's name, before a prefix of its state's hash (one per consent, so
/// two consents in one browser do not overwrite each other). `__Host-`: browsers accept it
/// only `Secure`, with `Path=/` and no `Domain`, so no sibling host can plant one.
const COOKIE_PREFIX: &str = "__Host-airlock-consent-";

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

impl From<connections::Connected> for Connected {
    fn from(made: connections::Connected) -> Self {
        Self {
            connected: true,
            installation: made.installation,
            credential: made.credential,
            user: made.user,
            scopes: made.scopes,
            widened: made.widened,
            expires_at: made.expires_at,
        }
    }
}

/// A start link or state that is not there: counted against the client (on a limiter of its
/// own); past the limit such refusals are 429, unrecorded, so forgeries cannot flood the trail.
/// A real link or state is never refused by the limiter: forgeries from one client, or from
/// anyone behind the same proxy, cannot stop another's consent.
async fn forged(app: &App, client: Client, refusal: Refusal) -> ApiError {
    if let Some(retry) = app.callback_failures.blocked(&client.bucket()) {
        return ApiError::too_many_failures(retry);
    }
    app.callback_failures.fail(&client.bucket());
    let peer = client.to_string();
    app.connector().refuse(None, refusal, &peer).await.into()
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
    let connector = app.connector();
    let link = match connector.open_link(&id, &client.to_string()).await {
        Err(ConsentError::Unknown(refusal)) => return Err(forged(&app, client, refusal).await),
        link => link?,
    };
    let loaded = app.installed(link.tenant(), link.installation()).await?;
    let started = connector.start(link, &loaded.integration)?;
    let cookie = format!(
        "{}={}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        cookie_name(&started.state),
        started.nonce,
        started.max_age
    );
    Ok((
        StatusCode::FOUND,
        [
            (LOCATION, started.authorize_url),
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
    let state = callback.state.as_deref().filter(|s| plausible(s));
    let clear = state.map(|state| {
        let name = cookie_name(state);
        (
            SET_COOKIE,
            format!("{name}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax"),
        )
    });
    let result = complete(&app, client, &headers, &callback).await;
    (AppendHeaders(clear), result).into_response()
}

/// The callback's work: the state taken for this browser (its cookie), the code exchanged,
/// the tokens and the provider account sealed.
async fn complete(
    app: &Arc<App>,
    client: Client,
    headers: &HeaderMap,
    callback: &Callback,
) -> Result<Json<Connected>, ApiError> {
    let connector = app.connector();
    let peer = client.to_string();
    let reply = Reply {
        state: callback.state.as_deref(),
        code: callback.code.as_deref(),
        error: callback.error.as_deref(),
    };
    let nonce = reply
        .state
        .filter(|s| plausible(s))
        .and_then(|state| cookie(headers, &cookie_name(state)));
    let granted = match connector.take_state(reply, nonce.as_deref(), &peer).await {
        Err(ConsentError::Unknown(refusal)) => return Err(forged(app, client, refusal).await),
        granted => granted?,
    };
    let loaded = app
        .installed(granted.tenant(), granted.installation())
        .await?;
    let connected = connector
        .complete(granted, &loaded.integration, &peer)
        .await?;
    Ok(Json(connected.into()))
}
