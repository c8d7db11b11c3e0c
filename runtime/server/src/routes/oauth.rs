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
//! - `GET /v1/oauth/start/{id}` and `GET /v1/oauth/callback`: the browser's half ([`consent`](super::consent)).
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
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::installations::scope;
use super::{CredentialPath, TenantQuery, body};
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use airlock_platform::api_keys::Scope;
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::{InstallationId, TenantId, UserId};
use airlock_runtime::loader::Integration;
use airlock_runtime::manifest::CredentialDecl;
use airlock_store::StoredSecrets;
use airlock_store::{ConnectionKey, PendingConsent};
use airlock_store::{Connections, Consents};

/// How long a consent may take, from `connect` to the callback.
const CONSENT_TTL: u64 = 600;

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectRequest {
    /// For a per-user credential: whose account.
    user: Option<String>,
    /// A subset of the declared scopes (default: all of them).
    scopes: Option<Vec<String>>,
}

/// A consent under way: where to send the person's browser.
#[derive(Serialize, ToSchema)]
pub(super) struct ConnectStarted {
    /// `{public-url}/v1/oauth/start/{id}`: send the person's browser there (it works once).
    start_url: String,
    /// Unix seconds: the link works until then.
    expires: u64,
    scopes: Vec<String>,
    user: Option<String>,
}

/// `?tenant=` as on every route, and whose connection.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct UserQuery {
    /// Admin key: the tenant to act for. A tenant key may only name its own.
    tenant: Option<String>,
    /// An end user of the caller's tenant (1-128 of `A-Z a-z 0-9 . _ @ + -`).
    user: Option<String>,
}

/// The authorize URL and OAuth parameters `integration` declares for `name`, if it is an
/// authorization-code credential.
pub(super) fn authorization_code<'a>(
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

/// Start an OAuth connection
///
/// Authorization code with PKCE: returns a one-time start link on this server for the person's
/// browser (no key in it); it works once, until 10 minutes after `connect`. The credential must
/// be an authorization-code `oauth2` credential of the installed version, whose OAuth client the
/// operator stored as its value.
#[utoipa::path(
    post,
    path = "/v1/installations/{installation}/credentials/{name}/connect",
    tag = "oauth",
    operation_id = "connect",
    extensions(("x-airlock-scope" = json!("credentials:write"))),
    params(CredentialPath, TenantQuery),
    request_body(content = Option<ConnectRequest>),
    responses(
        (status = 201, description = "Consent under way", body = ConnectStarted),
        (status = 404, description = "No such installation or credential (`not-found`)", body = ErrorBody),
        (status = 409, description = "No OAuth client stored (`no-oauth-client`), or the stored one is bound to another token endpoint (`credential-unbound`)", body = ErrorBody),
        (status = 422, description = "Not an authorization-code credential, a user where none or none where one belongs, or an undeclared scope (`connect-refused`)", body = ErrorBody),
    ),
)]
pub(super) async fn connect(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(CredentialPath { installation, name }): Path<CredentialPath>,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ConnectStarted>), ApiError> {
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
        Json(ConnectStarted {
            start_url: app.consent_start_url(&id),
            expires,
            scopes,
            user: user.as_ref().map(ToString::to_string),
        }),
    ))
}

/// The OAuth client the operator stored as the credential's value, bound to the token
/// endpoint `spec` declares.
pub(super) fn registered_client(
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
pub(super) fn user_ref(
    app: &App,
    tenant: &TenantId,
    user: Option<&UserId>,
) -> Result<Option<String>, ApiError> {
    Ok(user.map(|u| app.store.user_ref(tenant, u)).transpose()?)
}

/// 32 bytes from the OS CSPRNG, base64url: a state, or a PKCE verifier (43 characters).
pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Remove an OAuth connection
///
/// The tenant's, or `?user=`'s. Its tokens are deleted, not revoked at the provider.
#[utoipa::path(
    delete,
    path = "/v1/installations/{installation}/credentials/{name}/connection",
    tag = "oauth",
    operation_id = "disconnect",
    extensions(("x-airlock-scope" = json!("credentials:write"))),
    params(CredentialPath, UserQuery),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such installation or connection (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn disconnect(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(CredentialPath { installation, name }): Path<CredentialPath>,
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
