//! `/v1/webhooks`: a tenant's webhook endpoints. The signing secret is in the response that
//! creates or rotates an endpoint, and nowhere else, ever. Whoever holds it can run the
//! endpoint's action, so creating and rotating need the `invoke` scope as well as
//! `installations:write`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{TenantQuery, id, json_body};
use crate::apikey::Scope;
use crate::clock::now_unix;
use crate::ids::{EndpointId, InstallationId};
use crate::install::CreatedWebhook;
use crate::server::app::App;
use crate::server::auth::Principal;
use crate::server::error::ApiError;
use crate::webhook::Scheme;
use airlock_store::Webhooks;

/// The overlap a rotation gives the previous secret unless told otherwise.
const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewEndpoint {
    installation: String,
    action: String,
    #[serde(default = "standard")]
    scheme: Scheme,
    /// Slack only: the app's signing secret.
    secret: Option<Zeroizing<String>>,
}

fn standard() -> Scheme {
    Scheme::Standard
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Rotation {
    /// Seconds the previous secret keeps verifying (default a day, at most 7 days).
    overlap_seconds: Option<u64>,
    /// Slack only: the app's new signing secret.
    secret: Option<Zeroizing<String>>,
}

pub(super) async fn create(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(&app, Scope::InstallationsWrite).await?;
    principal.require(&app, Scope::Invoke).await?;
    let tenant = principal.tenant(query.tenant.as_deref())?;
    let new: NewEndpoint = json_body(
        raw,
        "endpoint (`{\"installation\": …, \"action\": …, \"scheme\": \"standard\"}`)",
    )?;
    let installation: InstallationId = id(&new.installation)?;
    let created = app
        .installing(move |i| {
            i.create_webhook(&tenant, &installation, &new.action, new.scheme, new.secret)
        })
        .await??;
    Ok((StatusCode::CREATED, Json(shown_once(created))))
}

pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(&app, Scope::InstallationsRead).await?;
    let tenant = principal.tenant(query.tenant.as_deref())?;
    Ok(Json(
        json!({ "webhooks": app.store.webhooks_of(&tenant, now_unix())? }),
    ))
}

pub(super) async fn rotate(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(endpoint): Path<String>,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    principal.require(&app, Scope::InstallationsWrite).await?;
    principal.require(&app, Scope::Invoke).await?;
    let tenant = principal.tenant(query.tenant.as_deref())?;
    let endpoint: EndpointId = id(&endpoint)?;
    let raw = super::body(raw)?;
    let rotation: Rotation = if raw.is_empty() {
        Rotation::default()
    } else {
        json_body(Ok(raw), "rotation (`{\"overlap_seconds\": 86400}`)")?
    };
    let overlap = rotation
        .overlap_seconds
        .map_or(DEFAULT_OVERLAP, Duration::from_secs);
    let rotated = app
        .installing(move |i| i.rotate_webhook(&tenant, &endpoint, overlap, rotation.secret))
        .await??;
    Ok(Json(shown_once(rotated)))
}

pub(super) async fn delete(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(endpoint): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Result<StatusCode, ApiError> {
    principal.require(&app, Scope::InstallationsWrite).await?;
    let tenant = principal.tenant(query.tenant.as_deref())?;
    let endpoint: EndpointId = id(&endpoint)?;
    app.installing(move |i| i.delete_webhook(&tenant, &endpoint))
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

/// The endpoint and its new secret: the only time the secret leaves the store.
fn shown_once(created: CreatedWebhook) -> Value {
    let mut body = json!(created.endpoint);
    body["secret"] = json!(created.secret.expose());
    body
}
