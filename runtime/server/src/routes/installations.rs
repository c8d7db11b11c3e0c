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
use serde_json::Value;

use super::{InstallationPath, TenantQuery, id, json_body};
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::wire::{Grant, InstallOutcome, Installation, InstallationList, Word};
use airlock_platform::api_keys::Scope;
use airlock_platform::install::{Approver, InstallError, InstallRequest, Installer, Outcome};
use airlock_runtime::ids::{InstallationId, TenantId};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewInstallation {
    /// The uploaded bundle's hex SHA-256 (from `POST /v1/bundles`).
    bundle: String,
    /// The installation id (default: the integration's id).
    installation: Option<String>,
    /// Default: everything the manifest declares.
    grant: Option<Grant>,
    /// Validated against the integration's config schema.
    config: Option<Value>,
    /// Admin key only: install a lower version than the installed one.
    #[serde(default)]
    allow_downgrade: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Change {
    grant: Option<Grant>,
    /// Validated against the integration's config schema.
    config: Option<Value>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Approval {
    /// Default: everything the pending version declares.
    grant: Option<Grant>,
}

/// List installations
///
/// The tenant's; with the admin key and no `?tenant=`, every tenant's.
#[utoipa::path(
    get,
    path = "/v1/installations",
    tag = "installations",
    operation_id = "list_installations",
    extensions(("x-airlock-scope" = json!("installations:read"))),
    params(TenantQuery),
    responses((status = 200, description = "Installations", body = InstallationList)),
)]
pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(query): Query<TenantQuery>,
) -> Result<Json<InstallationList>, ApiError> {
    principal.require(&app, Scope::InstallationsRead).await?;
    let tenant = principal.tenant_filter(query.tenant.as_deref())?;
    let installations = app.store.installations(tenant.as_ref())?;
    Ok(Json(InstallationList {
        installations: installations.into_iter().map(Installation::from).collect(),
    }))
}

/// Show an installation
///
/// With any pending upgrade, its additions and those only the admin key may approve
/// (`admin_only`).
#[utoipa::path(
    get,
    path = "/v1/installations/{installation}",
    tag = "installations",
    operation_id = "show_installation",
    extensions(("x-airlock-scope" = json!("installations:read"))),
    params(InstallationPath, TenantQuery),
    responses(
        (status = 200, description = "The installation", body = Installation),
        (status = 404, description = "No such installation of the caller's tenant (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn show(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(InstallationPath { installation }): Path<InstallationPath>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Installation>, ApiError> {
    principal.require(&app, Scope::InstallationsRead).await?;
    let (tenant, installation) = scope(&principal, &query, &installation)?;
    let record = app
        .store
        .installation(&tenant, &installation)?
        .ok_or_else(|| ApiError::not_found(format!("installation {installation}")))?;
    Ok(Json(record.into()))
}

/// Install an uploaded bundle, or upgrade an installation
///
/// An upgrade that asks for more than the installed version (new egress, credentials declared
/// differently, a larger kv store, …) is held for approval (`202`).
#[utoipa::path(
    post,
    path = "/v1/installations",
    tag = "installations",
    operation_id = "install",
    extensions(("x-airlock-scope" = json!("installations:write"))),
    params(TenantQuery),
    request_body = NewInstallation,
    responses(
        (status = 201, description = "Installed", body = InstallOutcome),
        (status = 200, description = "Replaced, reconfigured or unchanged", body = InstallOutcome),
        (status = 202, description = "The upgrade asks for more: held for approval", body = InstallOutcome),
        (status = 400, description = "Not the JSON of `NewInstallation`, or not a digest or id (`bad-request`)", body = ErrorBody),
        (status = 404, description = "No such bundle uploaded, or tenant (`not-found`)", body = ErrorBody),
        (status = 409, description = "A rollback, the same version with other contents, or another integration (`conflict`)", body = ErrorBody),
        (status = 422, description = "The grant or config is refused (`grant-refused`, `config-rejected`)", body = ErrorBody),
    ),
)]
pub(super) async fn install(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<InstallOutcome>), ApiError> {
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
        grant: new.grant.map(Into::into),
        config: new.config.map(|c| c.to_string()),
        allow_downgrade: new.allow_downgrade,
        approver: approver(&principal),
    };
    let outcome = app.installing(move |i| i.install(request)).await?;
    respond(&app, format!("{digest}.airlock"), outcome).await
}

/// What an uninstall removed.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Uninstalled {
    installation: String,
    credentials: usize,
    connections: usize,
    kv_entries: u64,
    webhooks: usize,
    schedules: usize,
    runs: u64,
}

/// Uninstall
///
/// Removes the installation and everything it owns, in this order: its credentials, OAuth
/// connections, kv entries, webhook endpoints, schedules and runs, then its record; each removal is
/// audited, and its audit records stay.
#[utoipa::path(
    delete,
    path = "/v1/installations/{installation}",
    tag = "installations",
    operation_id = "uninstall",
    extensions(("x-airlock-scope" = json!("installations:write"))),
    params(InstallationPath, TenantQuery),
    responses(
        (status = 200, description = "Uninstalled: what went", body = Uninstalled),
        (status = 404, description = "No such installation of the caller's tenant (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn uninstall(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(InstallationPath { installation }): Path<InstallationPath>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Uninstalled>, ApiError> {
    principal.require(&app, Scope::InstallationsWrite).await?;
    let (tenant, installation) = scope(&principal, &query, &installation)?;
    let (t, i, by) = (tenant.clone(), installation.clone(), approver(&principal));
    let removed = app
        .installing(move |installer| installer.uninstall(&t, &i, by))
        .await??;
    app.forget_installation(&tenant, &installation);
    Ok(Json(Uninstalled {
        installation: installation.to_string(),
        credentials: removed.credentials,
        connections: removed.connections,
        kv_entries: removed.kv_entries,
        webhooks: removed.webhooks,
        schedules: removed.schedules,
        runs: removed.runs,
    }))
}

/// Change an installation's grant or config
#[utoipa::path(
    patch,
    path = "/v1/installations/{installation}",
    tag = "installations",
    operation_id = "update_installation",
    extensions(("x-airlock-scope" = json!("installations:write"))),
    params(InstallationPath, TenantQuery),
    request_body = Change,
    responses(
        (status = 200, description = "Reconfigured or unchanged", body = InstallOutcome),
        (status = 404, description = "No such installation of the caller's tenant (`not-found`)", body = ErrorBody),
        (status = 422, description = "The grant or config is refused (`grant-refused`, `config-rejected`)", body = ErrorBody),
    ),
)]
pub(super) async fn update(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(InstallationPath { installation }): Path<InstallationPath>,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<InstallOutcome>), ApiError> {
    let change = |i: &Installer<'_>, t: &TenantId, n: &InstallationId, c: Change| {
        i.update(
            t,
            n,
            c.grant.map(Into::into),
            c.config.map(|c| c.to_string()),
        )
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

/// Approve the upgrade waiting on an installation
///
/// Additions listed in `pending.admin_only` (an oauth2 credential's token or authorize URL
/// changed: where its secret goes) need the admin key, else `403 admin-only`.
#[utoipa::path(
    post,
    path = "/v1/installations/{installation}/approve",
    tag = "installations",
    operation_id = "approve_installation",
    extensions(("x-airlock-scope" = json!("installations:write"))),
    params(InstallationPath, TenantQuery),
    request_body = Approval,
    responses(
        (status = 200, description = "Replaced", body = InstallOutcome),
        (status = 404, description = "No such installation, or nothing pending (`not-found`)", body = ErrorBody),
        (status = 422, description = "The grant is refused (`grant-refused`)", body = ErrorBody),
    ),
)]
pub(super) async fn approve(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(InstallationPath { installation }): Path<InstallationPath>,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<InstallOutcome>), ApiError> {
    let approver = approver(&principal);
    let approve = move |i: &Installer<'_>, t: &TenantId, n: &InstallationId, a: Approval| {
        i.approve(t, n, a.grant.map(Into::into), approver)
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
) -> Result<(StatusCode, Json<InstallOutcome>), ApiError> {
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
pub(crate) fn approver(principal: &Principal) -> Approver {
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
    app: &Arc<App>,
    artifact: String,
    outcome: Result<Outcome, InstallError>,
) -> Result<(StatusCode, Json<InstallOutcome>), ApiError> {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return Err(app.refused(artifact, e).await),
    };
    let (status, outcome, record) = match outcome {
        Outcome::Installed(r) => (StatusCode::CREATED, Word::Installed, r),
        Outcome::Replaced { record, .. } => (StatusCode::OK, Word::Replaced, record),
        Outcome::Pending(r) => (StatusCode::ACCEPTED, Word::Pending, r),
        Outcome::Reconfigured(r) => (StatusCode::OK, Word::Reconfigured, r),
        Outcome::Unchanged(r) => (StatusCode::OK, Word::Unchanged, r),
    };
    Ok((
        status,
        Json(InstallOutcome {
            outcome,
            installation: record.into(),
        }),
    ))
}
