//! The routes: `/v1` (versioned JSON API), `/healthz`, `/metrics`. Handlers take the caller
//! only from [`Principal`](super::auth::Principal); ids in paths and queries are looked up
//! within the caller's tenant, so another tenant's ids are simply not found.

mod audit;
mod bundles;
mod credentials;
mod health;
mod hooks;
mod installations;
mod invoke;
mod keys;
mod oauth;
mod tenants;
#[cfg(test)]
mod tests;
mod trust;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::middleware::map_request;
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::app::App;
use super::deadline::{self, BODY_DEADLINE, BUNDLE_DEADLINE};
use super::error::ApiError;

/// Every route; the OpenAPI file (`docs/openapi.json`) lists exactly these.
pub(crate) fn router(app: Arc<App>) -> Router {
    let bundles = Router::new()
        .route("/v1/bundles", post(bundles::upload))
        .layer(DefaultBodyLimit::max(app.limits.max_bundle))
        .layer(map_request(|r| async {
            deadline::within(BUNDLE_DEADLINE, r)
        }));
    // Deliveries read their own body (raw, capped, with a read timeout) before any check.
    let hooks = Router::new()
        .route("/v1/hooks/{endpoint}", post(hooks::deliver))
        .layer(DefaultBodyLimit::max(hooks::MAX_DELIVERY));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/v1/tenants", post(tenants::create).get(tenants::list))
        .route(
            "/v1/tenants/{tenant}",
            axum::routing::delete(tenants::delete),
        )
        .route("/v1/api-keys", post(keys::create).get(keys::list))
        .route("/v1/api-keys/{key}", axum::routing::delete(keys::revoke))
        .route("/v1/trust", post(trust::add).get(trust::list))
        .route("/v1/trust/{key}", axum::routing::delete(trust::revoke))
        .route(
            "/v1/installations",
            post(installations::install).get(installations::list),
        )
        .route(
            "/v1/installations/{installation}",
            get(installations::show).patch(installations::update),
        )
        .route(
            "/v1/installations/{installation}/approve",
            post(installations::approve),
        )
        .route(
            "/v1/installations/{installation}/credentials",
            get(credentials::list),
        )
        .route(
            "/v1/installations/{installation}/credentials/{name}",
            put(credentials::set).delete(credentials::delete),
        )
        .route(
            "/v1/installations/{installation}/credentials/{name}/connect",
            post(oauth::connect),
        )
        .route(
            "/v1/installations/{installation}/credentials/{name}/connection",
            axum::routing::delete(oauth::disconnect),
        )
        .route("/v1/oauth/start/{id}", get(oauth::start))
        .route("/v1/oauth/callback", get(oauth::callback))
        .route(
            "/v1/installations/{installation}/actions/{action}",
            post(invoke::invoke),
        )
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/v1/webhooks/{endpoint}",
            axum::routing::delete(webhooks::delete),
        )
        .route("/v1/webhooks/{endpoint}/rotate", post(webhooks::rotate))
        .route("/v1/audit", get(audit::list))
        .layer(DefaultBodyLimit::max(app.limits.max_body))
        .layer(map_request(|r| async {
            deadline::within(BODY_DEADLINE, r)
        }))
        .merge(bundles)
        .merge(hooks)
        .fallback(|| async { ApiError::not_found("route") })
        .with_state(app)
}

/// `?tenant=`: which tenant an admin key acts for (a tenant key may only name its own).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TenantQuery {
    tenant: Option<String>,
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
