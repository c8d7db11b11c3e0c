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
use serde_json::{Value, json};

use super::body;
use crate::bundle::load_verified;
use crate::install::InstallError;
use crate::server::app::App;
use crate::server::auth::Principal;
use crate::server::error::ApiError;
use crate::store::installations::bundle_digest;

pub(super) async fn upload(
    State(app): State<Arc<App>>,
    principal: Principal,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_admin(&app).await?;
    let bytes = body(raw)?;
    let digest = bundle_digest(&bytes);
    let artifact = format!("{digest}.airlock");
    let origin = Path::new("upload").join(&artifact);
    let checked = app
        .installing(move |installer| {
            let (integration, verified) =
                load_verified(installer.runtime, &origin, &bytes, installer.trust)
                    .map_err(InstallError::from)?;
            installer.store.put_bundle(&bytes)?;
            Ok::<_, InstallError>(json!({
                "bundle": digest,
                "id": verified.id,
                "version": verified.version,
                "publisher": verified.publisher,
                "key": verified.key_id,
                "declares": integration.describe(),
            }))
        })
        .await?;
    match checked {
        Ok(summary) => Ok((StatusCode::CREATED, Json(summary))),
        Err(e) => Err(app.refused(artifact, e).await),
    }
}
