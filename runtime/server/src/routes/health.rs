//! `/healthz` and `/readyz` (no key: load balancers probe them) and `/metrics` (admin key:
//! counts can reveal which tenants are active).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};

/// Whether this instance should take traffic.
#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    status: HealthStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
enum HealthStatus {
    Ok,
    /// The audit trail refuses records: every invocation would fail closed.
    AuditUnavailable,
}

/// Liveness and audit health
///
/// `503` once the audit trail refuses records (every invocation would fail closed): take the
/// instance out of rotation.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    security(),
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "The audit trail refuses records; every invocation would fail closed", body = Health),
    ),
)]
pub(super) async fn healthz(State(app): State<Arc<App>>) -> (StatusCode, Json<Health>) {
    match app.trail.failure() {
        None => (
            StatusCode::OK,
            Json(Health {
                status: HealthStatus::Ok,
            }),
        ),
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: HealthStatus::AuditUnavailable,
            }),
        ),
    }
}

/// Whether this instance can serve requests now, and if not, what fails.
#[derive(Serialize, ToSchema)]
pub(super) struct Readiness {
    status: ReadyStatus,
    /// What fails: `store` (it does not answer), `schema` (it answers, with a schema this
    /// build does not write), `audit` (the trail refuses records). Empty when ready.
    failing: Vec<&'static str>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
enum ReadyStatus {
    Ready,
    NotReady,
}

/// Readiness
///
/// Ready when the store answers with the schema this build writes and the audit trail takes
/// records; `503` names what fails. Unlike `/healthz` it reads the store (one cheap read).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    security(),
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: `failing` names the store, its schema or the audit trail", body = Readiness),
    ),
)]
pub(super) async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, Json<Readiness>) {
    let store = app.blocking(|app| app.store.schema_current()).await;
    let mut failing = match store {
        Ok(Ok(true)) => Vec::new(),
        Ok(Ok(false)) => vec!["schema"],
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store does not answer");
            vec!["store"]
        }
        Err(_) => vec!["store"],
    };
    if app.trail.failure().is_some() {
        failing.push("audit");
    }
    let (code, status) = match failing.is_empty() {
        true => (StatusCode::OK, ReadyStatus::Ready),
        false => (StatusCode::SERVICE_UNAVAILABLE, ReadyStatus::NotReady),
    };
    (code, Json(Readiness { status, failing }))
}

/// OpenMetrics metrics
///
/// The audit trail's counters, running invocations, `429`s and audit health. Admin key only:
/// counts can reveal which tenants are active.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    extensions(("x-airlock-scope" = json!("admin"))),
    responses(
        (status = 200, description = "OpenMetrics text format", body = String, content_type = "application/openmetrics-text"),
        (status = 500, description = "The trail could not be read (`internal`)", body = ErrorBody),
    ),
)]
pub(super) async fn metrics(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin(&app).await?;
    // Counting new records reads the trail: on the blocking pool, never a request worker.
    let text = tokio::task::spawn_blocking(move || app.metrics())
        .await
        .map_err(ApiError::internal)??;
    Ok(([(CONTENT_TYPE, airlock_audit::metrics::CONTENT_TYPE)], text).into_response())
}
