//! `POST /v1/backup`, on the operator's socket only (docs/api.md, "The operator's socket"): a
//! backup of the store this server holds, sealed with its audit key and written where the
//! operator says on this host. A request from the network never reaches it, whatever its key
//! (it would write files here), so the route is not in the OpenAPI document, which describes
//! the network API.

use std::path::PathBuf;
use std::sync::Arc;

use airlock_platform::backup::{self, TakeError};
use airlock_store::backup::{BackupError, Manifest};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

use super::json_body;
use crate::app::App;
use crate::error::ApiError;
use crate::local::Operator;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupRequest {
    /// Where to write the backup: an absolute path on this host, where nothing is yet.
    to: PathBuf,
}

/// Takes a backup (writers wait while the records are copied) and answers its manifest.
pub(super) async fn take(
    State(app): State<Arc<App>>,
    operator: Option<Extension<Operator>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Manifest>), ApiError> {
    if operator.is_none() {
        return Err(ApiError::not_found("route"));
    }
    let request: BackupRequest = json_body(raw, "backup request")?;
    if !request.to.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "`to` must be an absolute path, not {}",
            request.to.display()
        )));
    }
    let Some(store) = app.store.sled().cloned() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not-embedded",
            "this server keeps its state in PostgreSQL: back it up with pg_dump \
             (docs/deploy.md, \"Backup and restore\")",
        ));
    };
    let manifest = app
        .blocking(move |app| backup::take(&store, app.trail.dir(), &request.to))
        .await?
        .map_err(|e| match e {
            TakeError::Backup(BackupError::Exists { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            // The operator asked, on this host: the detail is theirs to see.
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "backup-failed",
                other.to_string(),
            ),
        })?;
    Ok((StatusCode::CREATED, Json(manifest)))
}
