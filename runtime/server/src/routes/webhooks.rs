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
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use super::{TenantQuery, id, json_body};
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::wire::{Webhook, WebhookScheme};
use airlock_platform::api_keys::Scope;
use airlock_platform::install::CreatedWebhook;
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::{EndpointId, InstallationId};

/// The overlap a rotation gives the previous secret unless told otherwise.
const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewWebhook)]
pub(super) struct NewEndpoint {
    installation: String,
    /// An action the installed version declares.
    action: String,
    #[serde(default)]
    scheme: WebhookScheme,
    /// Slack only: the Slack app's signing secret (32 to 256 visible ASCII characters). Other
    /// schemes get a generated secret.
    #[schema(value_type = Option<String>)]
    secret: Option<Zeroizing<String>>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookRotation)]
pub(super) struct Rotation {
    /// Seconds the previous secret keeps verifying (default a day, at most 7 days; `0` retires
    /// it at once).
    #[schema(maximum = 604800)]
    overlap_seconds: Option<u64>,
    /// Slack only: the Slack app's new signing secret.
    #[schema(value_type = Option<String>)]
    secret: Option<Zeroizing<String>>,
}

/// A webhook endpoint of the caller's tenant, named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct EndpointPath {
    /// The endpoint id (`wh-` and 32 hex digits), looked up within the caller's tenant.
    endpoint: String,
}

/// An endpoint and its new signing secret: the only time the secret leaves the store.
#[derive(Serialize, ToSchema)]
pub(super) struct WebhookWithSecret {
    #[serde(flatten)]
    endpoint: Webhook,
    /// The signing secret (`whsec_` and the base64 of 32 random bytes; for Slack, the one
    /// given), shown this once.
    #[schema(value_type = String)]
    secret: Zeroizing<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct WebhookList {
    webhooks: Vec<Webhook>,
}

/// Create a webhook endpoint
///
/// For an action of an installation. The response carries its signing secret, shown once;
/// whoever holds it can run the action, so the key needs `invoke` as well.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    operation_id = "create_webhook",
    extensions(("x-airlock-scope" = json!("installations:write, invoke"))),
    params(TenantQuery),
    request_body = NewEndpoint,
    responses(
        (status = 201, description = "Created", body = WebhookWithSecret),
        (status = 404, description = "No such installation of the caller's tenant (`not-found`)", body = ErrorBody),
        (status = 409, description = "The Slack secret is another endpoint's (`exists`)", body = ErrorBody),
        (status = 422, description = "An undeclared action, or a secret refused (`webhook-rejected`)", body = ErrorBody),
    ),
)]
pub(super) async fn create(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<WebhookWithSecret>), ApiError> {
    principal.require(&app, Scope::InstallationsWrite).await?;
    principal.require(&app, Scope::Invoke).await?;
    let tenant = principal.tenant(query.tenant.as_deref())?;
    let new: NewEndpoint = json_body(
        raw,
        "endpoint (`{\"installation\": …, \"action\": …, \"scheme\": \"standard\"}`)",
    )?;
    let installation: InstallationId = id(&new.installation)?;
    let scheme = new.scheme.into();
    let created = app
        .installing(move |i| {
            i.create_webhook(&tenant, &installation, &new.action, scheme, new.secret)
        })
        .await??;
    Ok((StatusCode::CREATED, Json(shown_once(created))))
}

/// List webhook endpoints
///
/// The tenant's, with their live secrets' dates, never the secrets.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    operation_id = "list_webhooks",
    extensions(("x-airlock-scope" = json!("installations:read"))),
    params(TenantQuery),
    responses((status = 200, description = "Endpoints", body = WebhookList)),
)]
pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(query): Query<TenantQuery>,
) -> Result<Json<WebhookList>, ApiError> {
    principal.require(&app, Scope::InstallationsRead).await?;
    let tenant = principal.tenant(query.tenant.as_deref())?;
    let webhooks = app.store.webhooks_of(&tenant, now_unix())?;
    Ok(Json(WebhookList {
        webhooks: webhooks.into_iter().map(Webhook::from).collect(),
    }))
}

/// Rotate a webhook endpoint's signing secret
///
/// The new secret is shown once (so the key needs `invoke` too); the previous one keeps
/// verifying for the overlap. The body is optional.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{endpoint}/rotate",
    tag = "webhooks",
    operation_id = "rotate_webhook",
    extensions(("x-airlock-scope" = json!("installations:write, invoke"))),
    params(EndpointPath, TenantQuery),
    request_body(content = Option<Rotation>),
    responses(
        (status = 200, description = "Rotated", body = WebhookWithSecret),
        (status = 404, description = "No such endpoint of the caller's tenant (`not-found`)", body = ErrorBody),
        (status = 409, description = "The Slack secret is another endpoint's (`exists`)", body = ErrorBody),
        (status = 422, description = "An overlap over 7 days, or a secret refused (`webhook-rejected`)", body = ErrorBody),
    ),
)]
pub(super) async fn rotate(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(EndpointPath { endpoint }): Path<EndpointPath>,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookWithSecret>, ApiError> {
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

/// Delete a webhook endpoint
///
/// Its deliveries are `404` from then on.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{endpoint}",
    tag = "webhooks",
    operation_id = "delete_webhook",
    extensions(("x-airlock-scope" = json!("installations:write"))),
    params(EndpointPath, TenantQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such endpoint of the caller's tenant (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn delete(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(EndpointPath { endpoint }): Path<EndpointPath>,
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
fn shown_once(created: CreatedWebhook) -> WebhookWithSecret {
    WebhookWithSecret {
        endpoint: created.endpoint.into(),
        secret: Zeroizing::new(created.secret.expose().to_string()),
    }
}
