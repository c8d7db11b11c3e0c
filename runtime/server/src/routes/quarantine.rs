//! `PUT|DELETE /v1/installations/{installation}/quarantine`: the operator quarantines an
//! installation by hand, or releases one an alert rule (or the operator) quarantined
//! (docs/operate.md, "Quarantine"). Admin key only: a tenant cannot lift what watches it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};

use super::installations::scope;
use super::{InstallationPath, TenantQuery};
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::wire::Installation;
use airlock_platform::install::quarantine::OPERATOR;

/// Quarantine an installation
///
/// Nothing of it runs until it is released: invocations, webhook deliveries, queued runs and
/// schedules are refused with `423 quarantined`. Alert rules quarantine the same way. Already
/// quarantined: unchanged, with its first rule and time.
#[utoipa::path(
    put,
    path = "/v1/installations/{installation}/quarantine",
    tag = "installations",
    operation_id = "quarantine_installation",
    extensions(("x-airlock-scope" = json!("admin"))),
    params(InstallationPath, TenantQuery),
    responses(
        (status = 200, description = "Quarantined: the installation", body = Installation),
        (status = 404, description = "No such installation of the tenant (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn quarantine(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(InstallationPath { installation }): Path<InstallationPath>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Installation>, ApiError> {
    set(&app, &principal, &query, &installation, true).await
}

/// Release a quarantined installation
///
/// It runs again from the next request on. Not quarantined: unchanged.
#[utoipa::path(
    delete,
    path = "/v1/installations/{installation}/quarantine",
    tag = "installations",
    operation_id = "release_installation",
    extensions(("x-airlock-scope" = json!("admin"))),
    params(InstallationPath, TenantQuery),
    responses(
        (status = 200, description = "Released: the installation", body = Installation),
        (status = 404, description = "No such installation of the tenant (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn release(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(InstallationPath { installation }): Path<InstallationPath>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Installation>, ApiError> {
    set(&app, &principal, &query, &installation, false).await
}

/// Quarantines (`on`) or releases the installation and returns its record.
async fn set(
    app: &Arc<App>,
    principal: &Principal,
    query: &TenantQuery,
    installation: &str,
    on: bool,
) -> Result<Json<Installation>, ApiError> {
    principal.require_admin(app).await?;
    let (tenant, installation) = scope(principal, query, installation)?;
    let (t, i) = (tenant.clone(), installation.clone());
    let record = app
        .installing(move |installer| {
            if on {
                installer.quarantine(&t, &i, OPERATOR)?;
            } else {
                installer.release(&t, &i)?;
            }
            installer.get(&t, &i)
        })
        .await??;
    app.forget_installation(&tenant, &installation);
    Ok(Json(record.into()))
}
