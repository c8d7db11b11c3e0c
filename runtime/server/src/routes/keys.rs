//! `/v1/api-keys` (admin key): issue a key (shown once, in the response), list keys (never
//! the keys), revoke one.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::{TenantQuery, id, json_body};
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use airlock_platform::api_keys::{self, ApiKeyRecord, IssueError, Scope};
use airlock_platform::install::quarantine::OPERATOR;
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::TenantId;
use airlock_runtime::units::HumanDuration;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    /// The tenant the key acts for, with `scopes`; absent with `admin: true`.
    tenant: Option<String>,
    /// The operator's admin key: every scope, every tenant. Alone, without `tenant` or `scopes`.
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    scopes: Vec<ApiScope>,
    /// A duration (docs/api.md): `90d`, `12h`, `1h30m`, …
    expires: Option<String>,
}

/// What a key may do.
#[derive(Clone, Copy, Serialize, Deserialize, ToSchema)]
#[schema(as = Scope)]
pub(super) enum ApiScope {
    #[serde(rename = "invoke")]
    Invoke,
    #[serde(rename = "credentials:write")]
    CredentialsWrite,
    #[serde(rename = "installations:read")]
    InstallationsRead,
    #[serde(rename = "installations:write")]
    InstallationsWrite,
    #[serde(rename = "audit:read")]
    AuditRead,
}

impl From<ApiScope> for Scope {
    fn from(scope: ApiScope) -> Self {
        match scope {
            ApiScope::Invoke => Self::Invoke,
            ApiScope::CredentialsWrite => Self::CredentialsWrite,
            ApiScope::InstallationsRead => Self::InstallationsRead,
            ApiScope::InstallationsWrite => Self::InstallationsWrite,
            ApiScope::AuditRead => Self::AuditRead,
        }
    }
}

impl From<Scope> for ApiScope {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Invoke => Self::Invoke,
            Scope::CredentialsWrite => Self::CredentialsWrite,
            Scope::InstallationsRead => Self::InstallationsRead,
            Scope::InstallationsWrite => Self::InstallationsWrite,
            Scope::AuditRead => Self::AuditRead,
        }
    }
}

/// A key's record: never the key itself.
#[derive(Serialize, ToSchema)]
#[schema(as = KeyRecord)]
pub(super) struct ApiKey {
    /// 16 hex digits: the `<id>` of `airlock_<id>_<secret>`.
    id: String,
    /// The tenant the key acts for; absent for the admin key.
    tenant: Option<String>,
    scopes: Vec<ApiScope>,
    /// Unix seconds, as are the other times.
    created: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    expires: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    last_used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    revoked: Option<u64>,
    /// Present while the key is suspended (an alert rule, or the operator): it is refused
    /// until lifted (`DELETE /v1/api-keys/{key}/suspension`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    suspended: Option<KeySuspension>,
    /// Hex SHA-256 of the secret part.
    hash: String,
}

/// Why and since when a key is suspended.
#[derive(Serialize, ToSchema)]
pub(super) struct KeySuspension {
    /// The alert rule that tripped, or `operator`.
    rule: String,
    /// Unix seconds.
    since: u64,
}

impl From<ApiKeyRecord> for ApiKey {
    fn from(record: ApiKeyRecord) -> Self {
        let ApiKeyRecord {
            id,
            tenant,
            scopes,
            created,
            expires,
            last_used,
            revoked,
            suspended,
            hash,
        } = record;
        Self {
            id,
            tenant,
            scopes: scopes.into_iter().map(ApiScope::from).collect(),
            created,
            expires,
            last_used,
            revoked,
            suspended: suspended.map(|s| KeySuspension {
                rule: s.rule,
                since: s.since,
            }),
            hash,
        }
    }
}

/// A key just issued: the key is in this response only.
#[derive(Serialize, ToSchema)]
pub(super) struct IssuedKey {
    /// `airlock_<16 hex id>_<43 base64url>`: send it as `Authorization: Bearer …`.
    #[schema(value_type = String)]
    key: Zeroizing<String>,
    record: ApiKey,
}

#[derive(Serialize, ToSchema)]
pub(super) struct KeyList {
    keys: Vec<ApiKey>,
}

/// Issue an API key
///
/// A tenant's key with its scopes, or the admin key (`{"admin": true}`). The key is in this
/// response only; the store keeps its hash.
#[utoipa::path(
    post,
    path = "/v1/api-keys",
    tag = "api-keys",
    operation_id = "create_api_key",
    extensions(("x-airlock-scope" = json!("admin"))),
    request_body = NewKey,
    responses(
        (status = 201, description = "The key and its record", body = IssuedKey),
        (status = 400, description = "Neither a tenant with scopes nor the admin key alone, or not a span (`bad-request`)", body = ErrorBody),
        (status = 404, description = "No such tenant (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn create(
    State(app): State<Arc<App>>,
    principal: Principal,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IssuedKey>), ApiError> {
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
    let scopes = new.scopes.into_iter().map(Scope::from).collect();
    let issued = api_keys::issue(&*app.store, &app.trail, tenant.as_ref(), scopes, expires)
        .map_err(|e| match e {
            IssueError::NoTenant(t) => ApiError::not_found(format!("tenant {t}")),
            IssueError::Store(e) => e.into(),
            IssueError::Audit(e) => e.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedKey {
            key: issued.key,
            record: issued.record.into(),
        }),
    ))
}

/// List API keys
///
/// Their records, never the keys: all of them, or one tenant's (`?tenant=`).
#[utoipa::path(
    get,
    path = "/v1/api-keys",
    tag = "api-keys",
    operation_id = "list_api_keys",
    extensions(("x-airlock-scope" = json!("admin"))),
    params(TenantQuery),
    responses((status = 200, description = "Key records", body = KeyList)),
)]
pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(query): Query<TenantQuery>,
) -> Result<Json<KeyList>, ApiError> {
    principal.require_admin(&app).await?;
    let tenant: Option<TenantId> = query.tenant.as_deref().map(id).transpose()?;
    let keys = app.store.api_keys(tenant.as_ref())?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(ApiKey::from).collect(),
    }))
}

/// Revoke an API key
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{key}",
    tag = "api-keys",
    operation_id = "revoke_api_key",
    extensions(("x-airlock-scope" = json!("admin"))),
    params(("key" = String, Path, description = "The key id (16 hex digits)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn revoke(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_admin(&app).await?;
    match api_keys::revoke(&*app.store, &app.trail, &key) {
        Ok(Some(_)) => Ok(StatusCode::NO_CONTENT),
        Ok(None) => Err(ApiError::not_found(format!("API key {key}"))),
        Err(IssueError::Audit(e)) => Err(e.into()),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Suspend an API key
///
/// It is refused (`401`) until the suspension is lifted. Alert rules per key suspend the same
/// way. Already suspended: unchanged, with its first rule and time.
#[utoipa::path(
    put,
    path = "/v1/api-keys/{key}/suspension",
    tag = "api-keys",
    operation_id = "suspend_api_key",
    extensions(("x-airlock-scope" = json!("admin"))),
    params(("key" = String, Path, description = "The key id (16 hex digits)")),
    responses(
        (status = 200, description = "Suspended: the key's record", body = ApiKey),
        (status = 404, description = "No such key (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn suspend(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(key): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    suspension(&app, &principal, key, Some(OPERATOR)).await
}

/// Lift an API key's suspension
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{key}/suspension",
    tag = "api-keys",
    operation_id = "lift_api_key_suspension",
    extensions(("x-airlock-scope" = json!("admin"))),
    params(("key" = String, Path, description = "The key id (16 hex digits)")),
    responses(
        (status = 200, description = "Lifted: the key's record", body = ApiKey),
        (status = 404, description = "No such key (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn lift(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(key): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    suspension(&app, &principal, key, None).await
}

/// Suspends key `key` for `rule`, or lifts its suspension.
async fn suspension(
    app: &Arc<App>,
    principal: &Principal,
    key: String,
    rule: Option<&'static str>,
) -> Result<Json<ApiKey>, ApiError> {
    principal.require_admin(app).await?;
    let shown = key.clone();
    let changed = app
        .blocking(move |app| api_keys::suspend(&*app.store, &app.trail, &key, rule))
        .await?;
    match changed {
        Ok(Some((record, _))) => Ok(Json(record.into())),
        Ok(None) => Err(ApiError::not_found(format!("API key {shown}"))),
        Err(IssueError::Audit(e)) => Err(e.into()),
        Err(e) => Err(ApiError::internal(e)),
    }
}
