//! OAuth 2.0 connections: a tenant (or one of its users) consents at the provider, and the host
//! keeps the tokens. Authorization code with PKCE (S256) and a single-use `state`.
//!
//! - `POST /v1/installations/{installation}/credentials/{name}/connect` returns the provider's
//!   authorization URL. The credential must be an authorization-code `oauth2` credential of the
//!   installed version, whose client (id and secret) the operator stored as its value. The
//!   scopes asked for are the declared ones, or a subset of them, never more. The state (32
//!   random bytes) is bound to tenant, installation, credential and user, and lives ten minutes.
//! - `GET /v1/oauth/callback` is where the provider sends the person's browser back. The state
//!   is taken (so it works once), the code is exchanged with the PKCE verifier through the same
//!   checked transport as every egress request, and the tokens are sealed. Scopes granted
//!   beyond those asked for are recorded as widened.
//! - `GET /v1/installations/{installation}/credentials` lists each connection's status, scopes
//!   and expiry with the credentials; `DELETE …/credentials/{name}/connection` removes one.
//!   Tokens never come out.

use std::net::SocketAddr;
use std::sync::Arc;

use airlock_host_api::audit::{AuditEvent, ConnectionChange};
use airlock_host_api::credentials::{
    CredentialScope, CredentialSpec, CredentialType, OAuthClient, OAuthGrant, OAuthSpec,
    SecretSource,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::installations::scope;
use super::{TenantQuery, body, id};
use crate::apikey::Scope;
use crate::clock::now_unix;
use crate::ids::{InstallationId, TenantId, UserId};
use crate::manifest::CredentialDecl;
use crate::server::app::App;
use crate::server::auth::Principal;
use crate::server::error::ApiError;
use crate::store::StoredSecrets;
use crate::store::connections::{ConnectionKey, PendingConsent, TakenState};

/// How long a consent may take, from `connect` to the callback.
const CONSENT_TTL: u64 = 600;
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

/// The declared OAuth parameters of `name`, if it is an authorization-code credential.
fn authorization_code<'a>(
    decl: Option<&'a CredentialDecl>,
    spec: Option<&'a CredentialSpec>,
    name: &str,
) -> Result<(String, &'a OAuthSpec), ApiError> {
    match (decl, spec) {
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
    let integration = &loaded.integration;
    let decl = integration
        .manifest()
        .manifest
        .credentials
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, d)| d.get_ref());
    let (authorize_url, spec) =
        authorization_code(decl, integration.credentials().get(&name), &name)?;
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
    let client = registered_client(&app, &tenant, &installation, &name)?;
    let state = random_token();
    let verifier = random_token();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let redirect_uri = app.redirect_uri();
    let expires = now_unix() + CONSENT_TTL;
    let consent = PendingConsent {
        tenant: tenant.to_string(),
        installation: installation.to_string(),
        credential: name.clone(),
        user: user.as_ref().map(ToString::to_string),
        scopes: scopes.clone(),
        redirect_uri: redirect_uri.clone(),
        expires,
    };
    let key = ConnectionKey {
        tenant: &tenant,
        installation: &installation,
        credential: &name,
        user: user.as_ref(),
    };
    app.store.begin_consent(key, consent, &state, &verifier)?;
    let encode = |s: &str| utf8_percent_encode(s, QUERY).to_string();
    let separator = if authorize_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!(
        "{authorize_url}{separator}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&code_challenge={challenge}&code_challenge_method=S256",
        encode(client.client_id()),
        encode(&redirect_uri),
        encode(&scopes.join(" ")),
        encode(&state),
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "authorization_url": url,
            "expires": expires,
            "scopes": scopes,
            "user": user,
        })),
    ))
}

/// The OAuth client the operator stored as the credential's value.
fn registered_client(
    app: &App,
    tenant: &TenantId,
    installation: &InstallationId,
    name: &str,
) -> Result<OAuthClient, ApiError> {
    let source = StoredSecrets::new(app.store.clone(), tenant.clone(), installation.clone());
    let stored = source
        .get(name, CredentialType::OAuth2)
        .map_err(|e| refused(e.to_string()))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "no-oauth-client",
                format!(
                    "register the OAuth client first: store `{{\"client_id\": …, \"client_secret\": …}}` \
                     as credential `{name}` (PUT …/credentials/{name})"
                ),
            )
        })?;
    OAuthClient::parse(&stored).map_err(|e| refused(e.to_string()))
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

pub(super) async fn callback(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(callback): Query<Callback>,
) -> Result<Json<Value>, ApiError> {
    // Refusals count against the peer (on a limiter of their own): a flood of forged states is
    // cut off (429) before it can flood the trail.
    if let Some(retry) = app.callback_failures.blocked(&peer.ip()) {
        return Err(ApiError::too_many_failures(retry));
    }
    let refuse = async |tenant: Option<String>, reason: &str, message: String| {
        app.callback_failures.fail(&peer.ip());
        let recorded = app
            .trail
            .append(AuditEvent::ConnectionRefused {
                tenant,
                reason: reason.to_string(),
                peer: peer.ip().to_string(),
            })
            .await;
        match recorded {
            Err(e) => e.into(),
            Ok(_) => ApiError::new(StatusCode::BAD_REQUEST, "connect-refused", message)
                .with_detail(json!({ "reason": reason })),
        }
    };
    let Some(state) = callback.state.filter(|s| !s.is_empty() && s.len() <= 256) else {
        return Err(refuse(
            None,
            "missing-state",
            "the callback carries no state".into(),
        )
        .await);
    };
    let (consent, verifier) = match app.store.take_consent(&state, now_unix())? {
        TakenState::Unknown => {
            return Err(refuse(
                None,
                "unknown-state",
                "this state is unknown or was already used: start again with connect".into(),
            )
            .await);
        }
        TakenState::Expired(consent) => {
            return Err(refuse(
                Some(consent.tenant),
                "state-expired",
                "the consent took more than ten minutes: start again with connect".into(),
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
    let tenant_id: TenantId = id(&consent.tenant)?;
    let installation: InstallationId = id(&consent.installation)?;
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
    let client = registered_client(&app, &tenant_id, &installation, &consent.credential)?;
    let exchanged = app
        .runtime
        .oauth()
        .exchange_code(
            &consent.credential,
            spec,
            &client,
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
    app.trail
        .append(AuditEvent::ConnectionChanged {
            tenant: consent.tenant.clone(),
            installation: consent.installation.clone(),
            credential: consent.credential.clone(),
            user: user_ref(&app, &tenant_id, user.as_ref())?,
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
