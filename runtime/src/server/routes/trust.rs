//! `/v1/trust` (admin key): the publisher keys this host trusts, while the server runs (the CLI
//! cannot change them then: the server holds the store). A revoked key stops every
//! installation it signed at its next invocation.

use std::sync::Arc;

use airlock_host_api::audit::{AuditEvent, Change};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::json_body;
use crate::bundle::PublicKey;
use crate::server::app::App;
use crate::server::auth::Principal;
use crate::server::error::ApiError;
use crate::trust::TrustError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    /// The line `airlock keygen` printed.
    public_key: String,
    publisher: String,
}

pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require_admin(&app).await?;
    Ok(Json(json!({ "keys": app.trust()?.keys() })))
}

pub(super) async fn add(
    State(app): State<Arc<App>>,
    principal: Principal,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_admin(&app).await?;
    let new: NewKey = json_body(raw, "key")?;
    let key = PublicKey::parse_line(new.public_key.trim()).map_err(ApiError::invalid)?;
    let added = app
        .change_trust(|store| store.add(&key, &new.publisher).cloned())
        .map_err(refused)?;
    app.trail
        .append(AuditEvent::TrustChanged {
            key: added.key_id.clone(),
            publisher: added.publisher.clone(),
            change: Change::Set,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!(added))))
}

pub(super) async fn revoke(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_admin(&app).await?;
    let publisher = app
        .change_trust(|store| store.revoke(&key))
        .map_err(refused)?;
    app.trail
        .append(AuditEvent::TrustChanged {
            key,
            publisher,
            change: Change::Revoked,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn refused(e: TrustError) -> ApiError {
    match e {
        TrustError::AlreadyTrusted(_) | TrustError::WasRevoked(_) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        TrustError::UnknownKey(_) => ApiError::not_found(format!("{e}")),
        TrustError::EmptyPublisher => ApiError::bad_request(e.to_string()),
        other => other.into(),
    }
}
