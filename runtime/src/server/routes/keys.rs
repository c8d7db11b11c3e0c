//! `/v1/api-keys` (admin key): issue a key (shown once, in the response), list keys (never
//! the keys), revoke one.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{TenantQuery, id, json_body};
use crate::apikey::{self, IssueError, Scope};
use crate::clock::now_unix;
use crate::ids::TenantId;
use crate::server::app::App;
use crate::server::auth::Principal;
use crate::server::error::ApiError;
use crate::units::HumanDuration;
use airlock_store::ApiKeys;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    /// The tenant the key acts for; absent with `admin: true`.
    tenant: Option<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    scopes: Vec<Scope>,
    /// A duration (docs/api.md): `90d`, `12h`, `1h30m`, …
    expires: Option<String>,
}

pub(super) async fn create(
    State(app): State<Arc<App>>,
    principal: Principal,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_admin(&app).await?;
    let new: NewKey = json_body(raw, "key request")?;
    let tenant: Option<TenantId> = match (new.tenant.as_deref(), new.admin) {
        (Some(t), false) if !new.scopes.is_empty() => Some(id(t)?),
        (Some(_), false) => {
            return Err(ApiError::bad_request(
                "name the key's scopes: \"scopes\": [\"invoke\", …]".to_string(),
            ));
        }
        (None, true) if new.scopes.is_empty() => None,
        _ => {
            return Err(ApiError::bad_request(
                "give either \"tenant\" with \"scopes\", or \"admin\": true alone".to_string(),
            ));
        }
    };
    let expires = new
        .expires
        .as_deref()
        .map(|span| {
            span.parse::<HumanDuration>()
                .map(|d| now_unix().saturating_add(d.0.as_secs()))
                .map_err(|e| ApiError::bad_request(format!("expires: {e}")))
        })
        .transpose()?;
    let issued = apikey::issue(&app.store, &app.trail, tenant.as_ref(), new.scopes, expires)
        .map_err(|e| match e {
            IssueError::NoTenant(t) => ApiError::not_found(format!("tenant {t}")),
            IssueError::Store(e) => e.into(),
            IssueError::Audit(e) => e.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": issued.key.as_str(), "record": issued.record })),
    ))
}

pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require_admin(&app).await?;
    let tenant: Option<TenantId> = query.tenant.as_deref().map(id).transpose()?;
    Ok(Json(
        json!({ "keys": app.store.api_keys(tenant.as_ref())? }),
    ))
}

pub(super) async fn revoke(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_admin(&app).await?;
    match apikey::revoke(&app.store, &app.trail, &key) {
        Ok(Some(_)) => Ok(StatusCode::NO_CONTENT),
        Ok(None) => Err(ApiError::not_found(format!("API key {key}"))),
        Err(IssueError::Audit(e)) => Err(e.into()),
        Err(e) => Err(ApiError::internal(e)),
    }
}
