//! `/v1/installations/{installation}/credentials`: write-only values. A value goes in (for a
//! name the installed version declares, checked against its type) and never comes out: the
//! list shows names, types, origins and dates, and the OAuth connections made by consent
//! (status, scopes, expiry).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::installations::scope;
use super::{CredentialPath, InstallationPath, TenantQuery, json_body};
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::wire::{Connection, Credential, Kind};
use airlock_platform::api_keys::Scope;
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_store::SetOutcome;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CredentialValue)]
pub(super) struct NewValue {
    /// The secret, checked against the declared type (an OAuth client: the JSON text of
    /// `{"client_id", "client_secret"}`).
    #[schema(value_type = String)]
    value: Zeroizing<String>,
}

/// What storing a value did.
#[derive(Serialize, ToSchema)]
pub(super) struct CredentialSet {
    outcome: Stored,
    #[serde(rename = "type")]
    kind: Kind,
}

/// `stored` (201: new) or `rotated` (200: replaced a value).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = CredentialOutcome)]
enum Stored {
    Stored,
    Rotated,
}

#[derive(Serialize, ToSchema)]
pub(super) struct CredentialList {
    credentials: Vec<Credential>,
    /// OAuth connections made by consent (status, scopes, expiry; never tokens).
    connections: Vec<Connection>,
}

/// List credentials
///
/// Names, types, origins and dates, never values; and the OAuth connections made by consent.
#[utoipa::path(
    get,
    path = "/v1/installations/{installation}/credentials",
    tag = "credentials",
    operation_id = "list_credentials",
    extensions(("x-airlock-scope" = json!("installations:read"))),
    params(InstallationPath, TenantQuery),
    responses(
        (status = 200, description = "Credentials and connections", body = CredentialList),
        (status = 404, description = "No such installation of the caller's tenant (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(InstallationPath { installation }): Path<InstallationPath>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<CredentialList>, ApiError> {
    principal.require(&app, Scope::InstallationsRead).await?;
    let (tenant, installation) = scope(&principal, &query, &installation)?;
    if app.store.installation(&tenant, &installation)?.is_none() {
        return Err(ApiError::not_found(format!("installation {installation}")));
    }
    let list = app.store.list_credentials(&tenant, &installation)?;
    let connections = app.store.connections_of(&tenant, &installation)?;
    Ok(Json(CredentialList {
        credentials: list.into_iter().map(Credential::from).collect(),
        connections: connections.into_iter().map(Connection::from).collect(),
    }))
}

/// Store a credential value
///
/// Write-only: the value never comes out again. Replacing or deleting a value drops the tokens
/// held for it.
#[utoipa::path(
    put,
    path = "/v1/installations/{installation}/credentials/{name}",
    tag = "credentials",
    operation_id = "set_credential",
    extensions(("x-airlock-scope" = json!("credentials:write"))),
    params(CredentialPath, TenantQuery),
    request_body = NewValue,
    responses(
        (status = 201, description = "Stored", body = CredentialSet),
        (status = 200, description = "Rotated", body = CredentialSet),
        (status = 404, description = "No such installation of the caller's tenant (`not-found`)", body = ErrorBody),
        (status = 422, description = "Not declared, or not a value of its type (`credential-rejected`)", body = ErrorBody),
    ),
)]
pub(super) async fn set(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(CredentialPath { installation, name }): Path<CredentialPath>,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CredentialSet>), ApiError> {
    principal.require(&app, Scope::CredentialsWrite).await?;
    let (tenant, installation) = scope(&principal, &query, &installation)?;
    let new: NewValue = json_body(raw, "credential (`{\"value\": \"…\"}`)")?;
    let (outcome, kind) = {
        let (tenant, installation, name) = (tenant.clone(), installation.clone(), name.clone());
        app.installing(move |i| i.set_credential(&tenant, &installation, &name, new.value))
            .await??
    };
    forget_tokens(&app, &tenant, &installation, &name).await;
    let (status, outcome) = match outcome {
        SetOutcome::Created => (StatusCode::CREATED, Stored::Stored),
        SetOutcome::Rotated => (StatusCode::OK, Stored::Rotated),
    };
    Ok((
        status,
        Json(CredentialSet {
            outcome,
            kind: kind.into(),
        }),
    ))
}

/// Delete a credential
#[utoipa::path(
    delete,
    path = "/v1/installations/{installation}/credentials/{name}",
    tag = "credentials",
    operation_id = "delete_credential",
    extensions(("x-airlock-scope" = json!("credentials:write"))),
    params(CredentialPath, TenantQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such installation or credential (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn delete(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(CredentialPath { installation, name }): Path<CredentialPath>,
    Query(query): Query<TenantQuery>,
) -> Result<StatusCode, ApiError> {
    principal.require(&app, Scope::CredentialsWrite).await?;
    let (tenant, installation) = scope(&principal, &query, &installation)?;
    let gone = {
        let (tenant, installation, name) = (tenant.clone(), installation.clone(), name.clone());
        app.installing(move |i| i.delete_credential(&tenant, &installation, &name))
            .await??
    };
    forget_tokens(&app, &tenant, &installation, &name).await;
    if gone {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("credential"))
    }
}

/// Drops the tokens held for credential `name` of the installation, for every user: they were
/// issued to the client that was just replaced or deleted.
async fn forget_tokens(app: &App, tenant: &TenantId, installation: &InstallationId, name: &str) {
    app.runtime
        .oauth()
        .forget_where(|scope, credential| {
            scope.tenant == tenant.as_str()
                && scope.installation == installation.as_str()
                && credential == name
        })
        .await;
}
