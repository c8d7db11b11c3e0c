//! `/v1/trust` (admin key): the publisher keys this host trusts, while the server runs (the CLI
//! cannot change them then: the server holds the store). A revoked key stops every
//! installation it signed at its next invocation, on every server sharing the store.

use std::sync::Arc;

use airlock_platform::trust::{self as trust_service, TrustChangeError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json_body;
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use airlock_runtime::bundle::PublicKey;
use airlock_runtime::trust::TrustError;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTrustedKey {
    /// The line `airlock keygen` printed.
    public_key: String,
    /// Who signs with it; bundles must name the same publisher.
    publisher: String,
}

/// A publisher key this host trusts, or once did.
#[derive(Serialize, ToSchema)]
pub(super) struct TrustedKey {
    key_id: String,
    /// The public key line, as `airlock keygen` printed it.
    public_key: String,
    publisher: String,
    /// Unix seconds, as is `revoked`.
    added: u64,
    revoked: Option<u64>,
}

impl From<airlock_runtime::trust::TrustedKey> for TrustedKey {
    fn from(key: airlock_runtime::trust::TrustedKey) -> Self {
        let airlock_runtime::trust::TrustedKey {
            key_id,
            public_key,
            publisher,
            added,
            revoked,
        } = key;
        Self {
            key_id,
            public_key,
            publisher,
            added,
            revoked,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct TrustedKeyList {
    keys: Vec<TrustedKey>,
}

/// List publisher keys
///
/// Trusted and revoked.
#[utoipa::path(
    get,
    path = "/v1/trust",
    tag = "trust",
    operation_id = "list_trusted_keys",
    extensions(("x-airlock-scope" = json!("admin"))),
    responses((status = 200, description = "Keys", body = TrustedKeyList)),
)]
pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Json<TrustedKeyList>, ApiError> {
    principal.require_admin(&app).await?;
    let trust = app.trust()?;
    let keys = trust.keys().iter().cloned().map(TrustedKey::from).collect();
    Ok(Json(TrustedKeyList { keys }))
}

/// Trust a publisher key
#[utoipa::path(
    post,
    path = "/v1/trust",
    tag = "trust",
    operation_id = "trust_key",
    extensions(("x-airlock-scope" = json!("admin"))),
    request_body = NewTrustedKey,
    responses(
        (status = 201, description = "Trusted", body = TrustedKey),
        (status = 400, description = "Not a public key line, or no publisher (`bad-request`)", body = ErrorBody),
        (status = 409, description = "Already trusted, or revoked before (`conflict`)", body = ErrorBody),
    ),
)]
pub(super) async fn add(
    State(app): State<Arc<App>>,
    principal: Principal,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<TrustedKey>), ApiError> {
    principal.require_admin(&app).await?;
    let new: NewTrustedKey = json_body(raw, "key")?;
    let key = PublicKey::parse_line(new.public_key.trim()).map_err(ApiError::invalid)?;
    let added = app
        .blocking(move |app| trust_service::add(&*app.store, &app.trail, &key, &new.publisher))
        .await?
        .map_err(refused)?;
    Ok((StatusCode::CREATED, Json(added.into())))
}

/// Revoke a publisher key
///
/// Every installation it signed stops at its next invocation, without a restart.
#[utoipa::path(
    delete,
    path = "/v1/trust/{key}",
    tag = "trust",
    operation_id = "revoke_trusted_key",
    extensions(("x-airlock-scope" = json!("admin"))),
    params(("key" = String, Path, description = "The key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key (`not-found`)", body = ErrorBody),
        (status = 409, description = "Already revoked (`conflict`)", body = ErrorBody),
    ),
)]
pub(super) async fn revoke(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_admin(&app).await?;
    app.blocking(move |app| trust_service::revoke(&*app.store, &app.trail, &key))
        .await?
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

fn refused(e: TrustChangeError) -> ApiError {
    let e = match e {
        TrustChangeError::Trust(e) => e,
        TrustChangeError::Store(e) => return e.into(),
        TrustChangeError::Audit(e) => return e.into(),
    };
    match e {
        TrustError::AlreadyTrusted(_) | TrustError::WasRevoked(_) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        TrustError::UnknownKey(_) => ApiError::not_found(format!("{e}")),
        TrustError::EmptyPublisher => ApiError::bad_request(e.to_string()),
    }
}
