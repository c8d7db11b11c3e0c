//! The routes: `/v1` (versioned JSON API), `/healthz`, `/metrics`, and `/v1/backup` for the
//! operator's socket alone. Handlers take the caller
//! only from [`Principal`](super::auth::Principal); ids in paths and queries are looked up
//! within the caller's tenant, so another tenant's ids are simply not found.
//!
//! Every handler carries its OpenAPI operation (`#[utoipa::path]`) and is routed with
//! `routes!`, which routes it only together with that operation: the document served at
//! `GET /v1/openapi.json` (and kept as `docs/openapi.json`) lists exactly what is routed, with
//! the request and response types the handlers take and return.

mod audit;
mod backup;
mod bundles;
mod consent;
mod credentials;
mod health;
mod hooks;
pub(crate) mod installations;
pub(crate) mod invoke;
mod keys;
mod oauth;
mod openapi;
mod quarantine;
pub(crate) mod runs;
mod schedules;
mod tenants;
#[cfg(test)]
mod tests;
mod trust;
mod webhooks;
#[cfg(test)]
mod wire_tests;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::middleware::map_request;
use axum::{Extension, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::app::{App, ServeLimits};
use super::deadline::{self, BODY_DEADLINE, BUNDLE_DEADLINE};
use super::error::ApiError;

/// Every route, each with its operation in the OpenAPI document; `limits` caps bodies.
fn api(limits: &ServeLimits) -> OpenApiRouter<Arc<App>> {
    let bundles = OpenApiRouter::default()
        .routes(routes!(bundles::upload))
        .layer(DefaultBodyLimit::max(limits.max_bundle))
        .layer(map_request(|r| async {
            deadline::within(BUNDLE_DEADLINE, r)
        }));
    // Deliveries read their own body (raw, capped, with a read timeout) before any check.
    let hooks = OpenApiRouter::default()
        .routes(routes!(hooks::deliver))
        .layer(DefaultBodyLimit::max(hooks::MAX_DELIVERY));
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::document))
        .routes(routes!(tenants::create, tenants::list))
        .routes(routes!(tenants::delete))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(keys::suspend, keys::lift))
        .routes(routes!(trust::add, trust::list))
        .routes(routes!(trust::revoke))
        .routes(routes!(installations::install, installations::list))
        .routes(routes!(
            installations::show,
            installations::update,
            installations::uninstall
        ))
        .routes(routes!(installations::approve))
        .routes(routes!(quarantine::quarantine, quarantine::release))
        .routes(routes!(credentials::list))
        .routes(routes!(credentials::set, credentials::delete))
        .routes(routes!(oauth::connect))
        .routes(routes!(oauth::disconnect))
        .routes(routes!(consent::start))
        .routes(routes!(consent::callback))
        .routes(routes!(invoke::invoke))
        .routes(routes!(runs::list))
        .routes(routes!(runs::show))
        .routes(routes!(runs::retry))
        .routes(routes!(schedules::create))
        .routes(routes!(schedules::list))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(schedules::delete))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::delete))
        .routes(routes!(webhooks::rotate))
        .routes(routes!(audit::list))
        .layer(DefaultBodyLimit::max(limits.max_body))
        .layer(map_request(|r| async {
            deadline::within(BODY_DEADLINE, r)
        }))
        .merge(bundles)
        .merge(hooks)
        .fallback(|| async { ApiError::not_found("route") })
}

/// The server's routes over `app`, serving their own OpenAPI document.
pub(crate) fn router(app: Arc<App>) -> Router {
    let (router, api) = api(&app.limits).split_for_parts();
    let router = router
        // The operator's socket only, so not in the document (see `backup`).
        .route("/v1/backup", axum::routing::post(backup::take))
        .layer(Extension(openapi::Document::new(api)));
    let router = if app.limits.console {
        router.merge(crate::console::router())
    } else {
        router
    };
    router
        .route_layer(axum::middleware::from_fn(traced))
        .with_state(app)
}

/// Runs a request in its span (docs/operate.md, "Traces"): the method, the route template
/// (never the path, which names tenants' ids and data) and the status; a valid W3C
/// `traceparent` from the caller makes it a child of the caller's span.
async fn traced(
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument as _;
    let route = matched
        .as_ref()
        .map_or("", axum::extract::MatchedPath::as_str);
    let traceparent = request
        .headers()
        .get(crate::telemetry::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| crate::telemetry::parse(v).is_some());
    let span = tracing::info_span!(
        "api.request",
        http.request.method = %request.method(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        traceparent,
    );
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// The OpenAPI document `GET /v1/openapi.json` serves (and `docs/openapi.json` holds).
#[cfg(test)]
fn openapi_json() -> String {
    openapi::Document::new(api(&ServeLimits::default()).into_openapi()).text()
}

/// `?tenant=`: which tenant an admin key acts for (a tenant key may only name its own).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TenantQuery {
    /// Admin key: the tenant to act for. A tenant key may only name its own.
    tenant: Option<String>,
}

/// An installation of the caller's tenant, named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct InstallationPath {
    /// The installation id, looked up within the caller's tenant.
    installation: String,
}

/// A credential of an installation of the caller's tenant, named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct CredentialPath {
    /// The installation id, looked up within the caller's tenant.
    installation: String,
    /// A credential the installed version declares.
    name: String,
}

/// The body, or why it could not be read (too large: 413; too slow: 408).
fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if let Some(missed) = deadline::missed(&e) {
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", missed.to_string());
        }
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too-large"
        } else {
            "bad-request"
        };
        ApiError::new(status, code, e.body_text())
    })
}

/// The body as JSON of `T`, or a 400 naming what was wrong and where.
fn json_body<T: DeserializeOwned>(
    raw: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, ApiError> {
    let raw = body(raw)?;
    if raw.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the body must be the {what} as JSON"
        )));
    }
    serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("the {what} is not valid: {e}")))
}

/// A path id of type `T` (tenant, installation), or a 400 naming the grammar.
fn id<T: std::str::FromStr>(raw: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    raw.parse().map_err(ApiError::invalid)
}
