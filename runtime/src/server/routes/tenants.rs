//! `/v1/tenants` (admin key): create, list, delete. Deleting a tenant shreds its data key
//! first, so its stored secrets are unreadable even before the rest is removed.

use std::sync::Arc;

use airlock_host_api::audit::{AuditEvent, Change};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{id, json_body};
use crate::ids::TenantId;
use crate::server::app::App;
use crate::server::auth::Principal;
use crate::server::error::ApiError;
use crate::store::tenants::TenantInfo;
use airlock_store::Tenants;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTenant {
    id: String,
}

pub(super) async fn create(
    State(app): State<Arc<App>>,
    principal: Principal,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<TenantInfo>), ApiError> {
    principal.require_admin(&app).await?;
    let new: NewTenant = json_body(raw, "tenant")?;
    let tenant: TenantId = id(&new.id)?;
    let info = app.store.create_tenant(&tenant)?;
    app.trail
        .append(AuditEvent::TenantChanged {
            tenant: tenant.to_string(),
            change: Change::Set,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require_admin(&app).await?;
    Ok(Json(json!({ "tenants": app.store.tenants()? })))
}

pub(super) async fn delete(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(tenant): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_admin(&app).await?;
    let tenant: TenantId = id(&tenant)?;
    if !app.store.delete_tenant(&tenant)? {
        return Err(ApiError::not_found(format!("tenant {tenant}")));
    }
    app.forget_tenant(&tenant).await;
    app.trail
        .append(AuditEvent::TenantChanged {
            tenant: tenant.to_string(),
            change: Change::Deleted,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
