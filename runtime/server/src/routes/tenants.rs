//! `/v1/tenants` (admin key): create, list, delete. Deleting a tenant shreds its data key
//! first, so its stored secrets are unreadable even before the rest is removed.

use std::sync::Arc;

use airlock_platform::tenants::{self, TenantError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{id, json_body};
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use airlock_runtime::ids::TenantId;
use airlock_store::TenantInfo;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTenant {
    /// 1-64 of a-z, 0-9 and `-`, starting with a letter or digit.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,63}$")]
    id: String,
}

/// A tenant.
#[derive(Serialize, ToSchema)]
pub(super) struct Tenant {
    id: String,
    /// Unix seconds.
    created: u64,
}

impl From<TenantInfo> for Tenant {
    fn from(TenantInfo { id, created }: TenantInfo) -> Self {
        Self { id, created }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct TenantList {
    tenants: Vec<Tenant>,
}

/// Create a tenant
#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    operation_id = "create_tenant",
    extensions(("x-airlock-scope" = json!("admin"))),
    request_body = NewTenant,
    responses(
        (status = 201, description = "Created", body = Tenant),
        (status = 400, description = "Not a tenant id, or not the JSON of `NewTenant` (`bad-request`)", body = ErrorBody),
        (status = 409, description = "The tenant exists (`exists`)", body = ErrorBody),
    ),
)]
pub(super) async fn create(
    State(app): State<Arc<App>>,
    principal: Principal,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    principal.require_admin(&app).await?;
    let new: NewTenant = json_body(raw, "tenant")?;
    let tenant: TenantId = id(&new.id)?;
    let info = app
        .blocking(move |app| tenants::create(&*app.store, &app.trail, &tenant))
        .await?
        .map_err(refused)?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

/// List tenants
#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    operation_id = "list_tenants",
    extensions(("x-airlock-scope" = json!("admin"))),
    responses((status = 200, description = "Tenants", body = TenantList)),
)]
pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Json<TenantList>, ApiError> {
    principal.require_admin(&app).await?;
    let tenants = app.store.tenants()?.into_iter().map(Tenant::from).collect();
    Ok(Json(TenantList { tenants }))
}

/// Delete a tenant
///
/// Its data key file is shredded first (overwritten, synced, unlinked), so its stored secrets
/// are unreadable before the rest (keys, credentials, installations) is removed.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}",
    tag = "tenants",
    operation_id = "delete_tenant",
    extensions(("x-airlock-scope" = json!("admin"))),
    params(("tenant" = String, Path, description = "Tenant id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such tenant (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn delete(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(tenant): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_admin(&app).await?;
    let tenant: TenantId = id(&tenant)?;
    let deleted = tenant.clone();
    let outcome = app
        .blocking(move |app| tenants::delete(&*app.store, &app.trail, &deleted))
        .await?;
    // Cached installations and tokens go whether or not the record of it could be written.
    if !matches!(outcome, Err(TenantError::Unknown(_))) {
        app.forget_tenant(&tenant).await;
    }
    outcome.map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

fn refused(e: TenantError) -> ApiError {
    match e {
        TenantError::Exists(tenant) => ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("tenant {tenant} already exists"),
        ),
        TenantError::Unknown(tenant) => ApiError::not_found(format!("tenant {tenant}")),
        TenantError::Store(e) => e.into(),
        TenantError::Audit(e) => e.into(),
    }
}
