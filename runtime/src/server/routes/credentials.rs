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
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::installations::scope;
use super::{TenantQuery, json_body};
use crate::apikey::Scope;
use crate::ids::{InstallationId, TenantId};
use crate::server::app::App;
use crate::server::auth::Principal;
use crate::server::error::ApiError;
use crate::store::credentials::SetOutcome;
use airlock_store::{Connections, Credentials, Installations};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewValue {
    value: Zeroizing<String>,
}

pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(installation): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(&app, Scope::InstallationsRead).await?;
    let (tenant, installation) = scope(&principal, &query, &installation)?;
    if app.store.installation(&tenant, &installation)?.is_none() {
        return Err(ApiError::not_found(format!("installation {installation}")));
    }
    let list = app.store.list_credentials(&tenant, &installation)?;
    let connections = app.store.connections_of(&tenant, &installation)?;
    Ok(Json(
        json!({ "credentials": list, "connections": connections }),
    ))
}

pub(super) async fn set(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path((installation, name)): Path<(String, String)>,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(&app, Scope::CredentialsWrite).await?;
    let (tenant, installation) = scope(&principal, &query, &installation)?;
    let new: NewValue = json_body(raw, "credential (`{\"value\": \"…\"}`)")?;
    let (outcome, kind) = {
        let (tenant, installation, name) = (tenant.clone(), installation.clone(), name.clone());
        app.installing(move |i| i.set_credential(&tenant, &installation, &name, new.value))
            .await??
    };
    forget_tokens(&app, &tenant, &installation, &name).await;
    let (status, word) = match outcome {
        SetOutcome::Created => (StatusCode::CREATED, "stored"),
        SetOutcome::Rotated => (StatusCode::OK, "rotated"),
    };
    Ok((
        status,
        Json(json!({ "outcome": word, "type": kind.as_str() })),
    ))
}

pub(super) async fn delete(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path((installation, name)): Path<(String, String)>,
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
