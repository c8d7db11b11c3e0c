//! One error shape for every refusal and failure: `{"error": {"code", "message"}}` with the
//! HTTP status the failure maps to. Internal failures say so without detail (the detail goes
//! to the server's log, never to the caller).

use airlock_host_api::audit::AuditUnavailable;
use axum::Json;
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::admission::{Busy, RETRY_AFTER_SECS};
use crate::install::WebhookError;
use crate::install::{CredentialSetError, InstallError};
use crate::invoke::InvokeError;
use crate::store::StoreError;
use crate::trust::TrustError;
use crate::webhook::SecretRefused;

/// A refusal or failure, as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    detail: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            detail: None,
        }
    }

    /// Extra fields in the error object (an invocation's id, a trust reason, …).
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn bad_request(message: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    pub fn invalid(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", error.to_string())
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: String) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{what} not found"),
        )
    }

    pub fn too_many_failures(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-failures",
                "too many failed attempts from this client or on this key; retry later",
            )
        }
    }

    pub fn busy(busy: Busy) -> Self {
        let message = match busy {
            Busy::QueueFull => "this tenant has as many invocations queued as it may; retry later",
            Busy::Waited => "no invocation slot freed up in time; retry later",
        };
        Self {
            retry_after: Some(RETRY_AFTER_SECS),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "busy", message)
        }
    }

    /// A failure of the host itself: logged here, reported without detail.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed; the operator's log has the detail",
        )
    }

    /// An invocation's failure: its class as the code, the CLI's exit-code class as the status,
    /// and the guest's log when the caller asked for it.
    pub fn invocation(error: &InvokeError, invocation: &str, log: Option<Value>) -> Self {
        let status = match error.exit_code() {
            2 => StatusCode::NOT_FOUND,
            3 => StatusCode::UNPROCESSABLE_ENTITY,
            4 => StatusCode::BAD_GATEWAY,
            5 => StatusCode::GATEWAY_TIMEOUT,
            _ if matches!(error, InvokeError::Audit(_)) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut detail = json!({
            "invocation": invocation,
            "exit_code": error.exit_code(),
        });
        if let Some(log) = log {
            detail["log"] = log;
        }
        Self::new(status, error.class(), error.to_string()).with_detail(detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let (Some(Value::Object(extra)), Some(object)) = (self.detail, body.as_object_mut()) {
            object.extend(extra);
        }
        let mut response = (self.status, Json(json!({ "error": body }))).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"airlock\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists { what } => Self::new(
                StatusCode::CONFLICT,
                "exists",
                format!("{what} already exists"),
            ),
            other => Self::internal(other),
        }
    }
}

impl From<AuditUnavailable> for ApiError {
    fn from(e: AuditUnavailable) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "audit-unavailable", e.0)
    }
}

impl From<TrustError> for ApiError {
    fn from(e: TrustError) -> Self {
        Self::internal(e)
    }
}

impl From<InstallError> for ApiError {
    fn from(e: InstallError) -> Self {
        if let Some(reason) = e.trust_reason() {
            return Self::new(StatusCode::FORBIDDEN, "untrusted", e.to_string())
                .with_detail(json!({ "reason": reason }));
        }
        let (status, code) = match &e {
            InstallError::NoTenant(_)
            | InstallError::NoInstallation { .. }
            | InstallError::NoPending { .. } => (StatusCode::NOT_FOUND, "not-found"),
            InstallError::Grant(_) => (StatusCode::UNPROCESSABLE_ENTITY, "grant-refused"),
            InstallError::Config(_) => (StatusCode::UNPROCESSABLE_ENTITY, "config-rejected"),
            InstallError::InstallationId(..) => (StatusCode::BAD_REQUEST, "bad-request"),
            InstallError::Open(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-bundle"),
            InstallError::OtherIntegration { .. }
            | InstallError::SameVersion { .. }
            | InstallError::Rollback { .. } => (StatusCode::CONFLICT, "conflict"),
            InstallError::AdminOnly { .. } => (StatusCode::FORBIDDEN, "admin-only"),
            InstallError::Audit(a) => return Self::from(a.clone()),
            InstallError::MissingBundle(..) | InstallError::Store(_) => return Self::internal(e),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<CredentialSetError> for ApiError {
    fn from(e: CredentialSetError) -> Self {
        match e {
            CredentialSetError::Install(e) => e.into(),
            other => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "credential-rejected",
                other.to_string(),
            ),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Install(e) => e.into(),
            WebhookError::NotFound(_) => Self::not_found("webhook endpoint"),
            WebhookError::Secret(SecretRefused::InUse) => {
                Self::new(StatusCode::CONFLICT, "exists", e.to_string())
            }
            other => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "webhook-rejected",
                other.to_string(),
            ),
        }
    }
}
