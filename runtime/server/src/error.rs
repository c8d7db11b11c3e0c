//! One error shape for every refusal and failure: `{"error": {"code", "message"}}` with the
//! HTTP status the failure maps to. Internal failures say so without detail (the detail goes
//! to the server's log, never to the caller). [`ErrorBody`] is that shape as the OpenAPI
//! document describes it (docs/api.md, "Errors").

use airlock_host_api::audit::AuditUnavailable;
use axum::Json;
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::admission::{Busy, RETRY_AFTER_SECS};
use super::wire::GuestLog;
use airlock_platform::connections::ConsentError;
use airlock_platform::install::{CredentialSetError, InstallError};
use airlock_platform::install::{ScheduleError, WebhookError};
use airlock_policy::webhook::SecretRefused;
use airlock_runtime::invoke::InvokeError;
use airlock_store::StoreError;

/// A refusal or failure, as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Box<ErrorObject>,
}

/// A refusal or failure: `{"error": {…}}`, with the status it maps to.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    error: ErrorObject,
}

/// What went wrong. Fields beyond `code` and `message` appear where they apply.
#[derive(Debug, Serialize, ToSchema)]
struct ErrorObject {
    /// Stable and kebab-case: the table in docs/api.md ("Errors"), or for a failed invocation
    /// its outcome class (`input-rejected`, `limit-timeout`, …), as the audit trail records it.
    code: &'static str,
    /// For a person to read; it never holds a secret or another tenant's data.
    message: String,
    /// A failed invocation's id, as its audit record names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    invocation: Option<String>,
    /// A failed invocation's class as the CLI's exit code (docs/api.md, "Invocation errors").
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    exit_code: Option<u8>,
    /// Why a bundle, a webhook delivery or an OAuth consent was refused, as the audit trail
    /// records it (`unknown-key`, `signature-mismatch`, `browser-mismatch`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    reason: Option<String>,
    /// A failed invocation's guest log, when the caller asked for it (`?log=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    log: Option<GuestLog>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            retry_after: None,
            body: Box::new(ErrorObject {
                code,
                message: message.into(),
                invocation: None,
                exit_code: None,
                reason: None,
                log: None,
            }),
        }
    }

    /// Why it was refused (a trust reason, a signature refusal, a consent refusal).
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.body.reason = Some(reason.into());
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
    pub fn invocation(error: &InvokeError, invocation: &str, log: Option<GuestLog>) -> Self {
        let mut failed = Self::invoke_error(error);
        failed.body.invocation = Some(invocation.to_string());
        failed.body.log = log;
        failed
    }

    /// An invocation's failure, or an input refused before one ran (a run not queued).
    pub fn invoke_error(error: &InvokeError) -> Self {
        let status = match error.exit_code() {
            2 => StatusCode::NOT_FOUND,
            3 => StatusCode::UNPROCESSABLE_ENTITY,
            4 => StatusCode::BAD_GATEWAY,
            5 => StatusCode::GATEWAY_TIMEOUT,
            _ if matches!(error, InvokeError::Audit(_)) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut failed = Self::new(status, error.class(), error.to_string());
        failed.body.exit_code = Some(error.exit_code());
        failed
    }

    /// The error's code, as its body names it.
    pub fn code(&self) -> &'static str {
        self.body.code
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What the caller is told.
    pub fn message(&self) -> String {
        self.body.message.clone()
    }

    /// Whether the failure is ours or passing (5xx, 429): a caller's retry may succeed.
    pub fn passing(&self) -> bool {
        self.status.is_server_error() || self.status == StatusCode::TOO_MANY_REQUESTS
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: *self.body };
        let mut response = (self.status, Json(body)).into_response();
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
            full @ StoreError::QueueFull { .. } => Self {
                retry_after: Some(RETRY_AFTER_SECS),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "busy", full.to_string())
            },
            down @ StoreError::Unavailable { .. } => Self {
                retry_after: Some(RETRY_AFTER_SECS),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                    down.to_string(),
                )
            },
            other => Self::internal(other),
        }
    }
}

impl From<AuditUnavailable> for ApiError {
    fn from(e: AuditUnavailable) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "audit-unavailable", e.0)
    }
}

impl From<InstallError> for ApiError {
    fn from(e: InstallError) -> Self {
        if let Some(reason) = e.trust_reason() {
            return Self::new(StatusCode::FORBIDDEN, "untrusted", e.to_string())
                .with_reason(reason);
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
            InstallError::Quarantined { .. } => (StatusCode::LOCKED, "quarantined"),
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

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::Install(e) => e.into(),
            ScheduleError::NotFound(id) => Self::not_found(format!("schedule {id}")),
            ScheduleError::TooMany(_) => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            other => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "schedule-rejected",
                other.to_string(),
            ),
        }
    }
}

impl From<ConsentError> for ApiError {
    /// An unknown start link or state maps like a refused one, but only after the route has
    /// applied its per-client limit and recorded it (`routes::consent`).
    fn from(e: ConsentError) -> Self {
        let refused = |message: String| {
            Self::new(StatusCode::UNPROCESSABLE_ENTITY, "connect-refused", message)
        };
        match e {
            ConsentError::Unknown(refusal) | ConsentError::Refused(refusal) => Self::new(
                StatusCode::BAD_REQUEST,
                "connect-refused",
                refusal.to_string(),
            )
            .with_reason(refusal.reason()),
            ConsentError::NoCredential(name) => Self::not_found(format!("credential {name}")),
            ConsentError::NoAuthorizeUrl(_) => {
                Self::internal("authorization-code without authorize-url")
            }
            ConsentError::NoUser(name) => refused(format!(
                "credential `{name}` is per user: name the user (`\"user\": …`)"
            )),
            ConsentError::NoClient(name) => Self::new(
                StatusCode::CONFLICT,
                "no-oauth-client",
                format!(
                    "register the OAuth client first: store `{{\"client_id\": …, \"client_secret\": …}}` \
                     as credential `{name}` (PUT …/credentials/{name})"
                ),
            ),
            ConsentError::Unbound { name, origin } => Self::new(
                StatusCode::CONFLICT,
                "credential-unbound",
                format!(
                    "credential `{name}` was stored for another token endpoint than {origin}, which \
                     the installed version declares: its secret is not sent there until it is \
                     stored again (PUT …/credentials/{name})"
                ),
            ),
            ConsentError::NotAuthorizationCode(_)
            | ConsentError::NotPerUser(_)
            | ConsentError::UndeclaredScope { .. }
            | ConsentError::Client(_) => refused(e.to_string()),
            ConsentError::NoConnection => Self::not_found("connection"),
            ConsentError::Id(e) => Self::invalid(e),
            ConsentError::User(e) => Self::invalid(e),
            ConsentError::Store(e) => e.into(),
            ConsentError::Audit(e) => e.into(),
        }
    }
}
