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
//!
//! The work is [`airlock_platform::connections`]'s: these handlers parse the request and shape
//! the response.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::installations::scope;
use super::{CredentialPath, TenantQuery, body};
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use airlock_platform::api_keys::Scope;
use airlock_platform::connections::OfferRequest;
use airlock_runtime::ids::UserId;

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
    let request = OfferRequest {
        tenant: &tenant,
        installation: &installation,
        credential: &name,
        user: request.user.as_deref(),
        scopes: request.scopes,
        redirect_uri: app.redirect_uri(),
    };
    let offer = app.connector().offer(request, &loaded.integration)?;
    Ok((
        StatusCode::CREATED,
        Json(ConnectStarted {
            start_url: app.consent_start_url(&offer.id),
            expires: offer.expires,
            scopes: offer.scopes,
            user: offer.user.as_ref().map(ToString::to_string),
        }),
    ))
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
    app.connector()
        .disconnect(&tenant, &installation, &name, user.as_ref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
