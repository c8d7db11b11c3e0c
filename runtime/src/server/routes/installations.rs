//! `/v1/installations`: a tenant's installations of uploaded bundles, with the grant it
//! approves (never wider than the manifest), upgrades held for approval, and config.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{TenantQuery, id, json_body};
use crate::apikey::Scope;
use crate::ids::{InstallationId, TenantId};
use crate::install::{Approver, Grant, InstallError, InstallRequest, Installer, Outcome};
use crate::server::app::App;
use crate::server::auth::Principal;
use crate::server::error::ApiError;
use airlock_store::Installations;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewInstallation {
    /// The uploaded bundle's hex SHA-256 (from `POST /v1/bundles`).
    bundle: String,
    installation: Option<String>,
    grant: Option<Grant>,
    config: Option<Value>,
    /// Admin key only: install a lower version than the installed one.
    #[serde(default)]
    allow_downgrade: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Change {
    grant: Option<Grant>,
    config: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Approval {
    grant: Option<Grant>,
}

pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(&app, Scope::InstallationsRead).await?;
    let tenant = principal.tenant_filter(query.tenant.as_deref())?;
    Ok(Json(
        json!({ "installations": app.store.installations(tenant.as_ref())? }),
    ))
}

pub(super) async fn show(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(installation): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(&app, Scope::InstallationsRead).await?;
    let (tenant, installation) = scope(&principal, &query, &installation)?;
    let record = app
        .store
        .installation(&tenant, &installation)?
        .ok_or_else(|| ApiError::not_found(format!("installation {installation}")))?;
    Ok(Json(json!(record)))
}

pub(super) async fn install(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(&app, Scope::InstallationsWrite).await?;
    let tenant = principal.tenant(query.tenant.as_deref())?;
    let new: NewInstallation = json_body(raw, "installation")?;
    if new.allow_downgrade {
        principal.require_admin(&app).await?;
    }
    if new.bundle.len() != 64 || !new.bundle.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "bundle: expected the hex SHA-256 that POST /v1/bundles returned".to_string(),
        ));
    }
    let digest = new.bundle.to_ascii_lowercase();
    let origin = app.store.bundle_origin(&digest);
    let bundle = app.store.bundle(&digest)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "bundle {digest} (the operator uploads bundles: POST /v1/bundles)"
        ))
    })?;
    let request = InstallRequest {
        tenant,
        installation: new.installation.as_deref().map(id).transpose()?,
        bundle,
        origin,
        grant: new.grant,
        config: new.config.map(|c| c.to_string()),
        allow_downgrade: new.allow_downgrade,
        approver: approver(&principal),
    };
    let outcome = app.installing(move |i| i.install(request)).await?;
    respond(&app, format!("{digest}.airlock"), outcome).await
}

pub(super) async fn update(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(installation): Path<String>,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let change = |i: &Installer<'_>, t: &TenantId, n: &InstallationId, c: Change| {
        i.update(t, n, c.grant, c.config.map(|c| c.to_string()))
    };
    act(
        &app,
        &principal,
        &query,
        &installation,
        raw,
        "change",
        change,
    )
    .await
}

pub(super) async fn approve(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(installation): Path<String>,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let approver = approver(&principal);
    let approve = move |i: &Installer<'_>, t: &TenantId, n: &InstallationId, a: Approval| {
        i.approve(t, n, a.grant, approver)
    };
    act(
        &app,
        &principal,
        &query,
        &installation,
        raw,
        "approval",
        approve,
    )
    .await
}

/// Runs `action` with the body (`what`, JSON of `B`) on the caller's installation.
async fn act<B: DeserializeOwned + Send + 'static>(
    app: &Arc<App>,
    principal: &Principal,
    query: &TenantQuery,
    installation: &str,
    raw: Result<Bytes, BytesRejection>,
    what: &str,
    action: impl FnOnce(&Installer<'_>, &TenantId, &InstallationId, B) -> Result<Outcome, InstallError>
    + Send
    + 'static,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(app, Scope::InstallationsWrite).await?;
    let (tenant, installation) = scope(principal, query, installation)?;
    let body: B = json_body(raw, what)?;
    let artifact = format!("installation {installation}");
    let outcome = app
        .installing(move |i| action(i, &tenant, &installation, body))
        .await?;
    respond(app, artifact, outcome).await
}

/// Who approves what a request grants: the admin key is the operator.
fn approver(principal: &Principal) -> Approver {
    if principal.is_admin() {
        Approver::Admin
    } else {
        Approver::Tenant
    }
}

/// The caller's tenant and the installation id in the path.
pub(super) fn scope(
    principal: &Principal,
    query: &TenantQuery,
    installation: &str,
) -> Result<(TenantId, InstallationId), ApiError> {
    Ok((
        principal.tenant(query.tenant.as_deref())?,
        id(installation)?,
    ))
}

/// `201` installed, `202` held for approval, `200` otherwise; the record in every case.
async fn respond(
    app: &App,
    artifact: String,
    outcome: Result<Outcome, InstallError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return Err(app.refused(artifact, e).await),
    };
    let (status, word, record) = match outcome {
        Outcome::Installed(r) => (StatusCode::CREATED, "installed", r),
        Outcome::Replaced { record, .. } => (StatusCode::OK, "replaced", record),
        Outcome::Pending(r) => (StatusCode::ACCEPTED, "pending", r),
        Outcome::Reconfigured(r) => (StatusCode::OK, "reconfigured", r),
        Outcome::Unchanged(r) => (StatusCode::OK, "unchanged", r),
    };
    Ok((
        status,
        Json(json!({ "outcome": word, "installation": record })),
    ))
}
