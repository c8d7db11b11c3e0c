//! `POST /v1/bundles` (admin key): upload a signed bundle. It is verified against the trust
//! store and loaded in full (compile, import check) before it is kept; tenants then install it
//! by its digest. A refusal on trust grounds is recorded like the CLI's.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::body;
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use airlock_platform::install::InstallError;
use airlock_runtime::bundle::load_verified;
use airlock_store::installations::bundle_digest;

/// An uploaded bundle: what installs name it by, and what it declares.
#[derive(Serialize, ToSchema)]
pub(super) struct Bundle {
    /// Hex SHA-256 of the bundle file: `bundle` in `POST /v1/installations`.
    bundle: String,
    /// The integration's id.
    id: String,
    version: String,
    publisher: String,
    /// The id of the key that signed it.
    key: String,
    /// What the integration declares (actions, limits, egress, credentials, imports), as
    /// `airlock check --json` prints it.
    #[schema(value_type = Object)]
    declares: Value,
}

/// Upload a signed bundle
///
/// The body is the bundle file (at most 128 MiB, within 5 minutes). It is verified against the
/// trust store and loaded in full (compile, import check) before it is kept; tenants then
/// install it by its digest. A refusal on trust grounds is recorded in the audit trail.
#[utoipa::path(
    post,
    path = "/v1/bundles",
    tag = "bundles",
    operation_id = "upload_bundle",
    extensions(("x-airlock-scope" = json!("admin"))),
    request_body(description = "The bundle file (`.airlock`)", content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Verified and stored", body = Bundle),
        (status = 403, description = "Refused on trust grounds (`untrusted`, with `reason`)", body = ErrorBody),
        (status = 408, description = "The body did not arrive within 5 minutes (`timeout`)", body = ErrorBody),
        (status = 413, description = "Over the bundle cap (`too-large`)", body = ErrorBody),
        (status = 422, description = "Not a valid bundle (`invalid-bundle`)", body = ErrorBody),
    ),
)]
pub(super) async fn upload(
    State(app): State<Arc<App>>,
    principal: Principal,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Bundle>), ApiError> {
    principal.require_admin(&app).await?;
    let bytes = body(raw)?;
    let digest = bundle_digest(&bytes);
    let artifact = format!("{digest}.airlock");
    let origin = Path::new("upload").join(&artifact);
    let checked = app
        .installing(move |installer| {
            let (integration, verified) =
                load_verified(installer.runtime, &origin, &bytes, &installer.trust()?)
                    .map_err(InstallError::from)?;
            installer.store.put_bundle(&bytes)?;
            Ok::<_, InstallError>(Bundle {
                bundle: digest,
                id: verified.id,
                version: verified.version,
                publisher: verified.publisher,
                key: verified.key_id,
                declares: json!(integration.describe()),
            })
        })
        .await?;
    match checked {
        Ok(summary) => Ok((StatusCode::CREATED, Json(summary))),
        Err(e) => Err(app.refused(artifact, e).await),
    }
}
