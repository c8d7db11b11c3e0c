//! `/healthz` (no key: load balancers probe it) and `/metrics` (admin key: counts can reveal
//! which tenants are active).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::server::app::App;
use crate::server::auth::Principal;
use crate::server::error::ApiError;

/// `200 {"status":"ok"}`, or `503` once the audit trail refuses records (every invocation
/// would fail closed: take the instance out of rotation).
pub(super) async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.trail.failure() {
        None => Json(json!({"status": "ok"})).into_response(),
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "audit-unavailable"})),
        )
            .into_response(),
    }
}

pub(super) async fn metrics(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin(&app).await?;
    // Counting new records reads the trail: on the blocking pool, never a request worker.
    let text = tokio::task::spawn_blocking(move || app.metrics())
        .await
        .map_err(ApiError::internal)??;
    Ok(([(CONTENT_TYPE, crate::audit::metrics::CONTENT_TYPE)], text).into_response())
}
