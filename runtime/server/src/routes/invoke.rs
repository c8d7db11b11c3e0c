//! `POST /v1/installations/{installation}/actions/{action}`: the body is the input; the
//! response is the output, or a typed error whose status follows the CLI's exit-code classes
//! (see `docs/api.md`).
//!
//! With `?log=true` the output comes as `{"output", "log"}` (and an error carries `log`).
//!
//! The invocation runs on its own thread: a client that disconnects does not cut it short, so
//! its egress and its audit record are whole. Webhook deliveries run through the same steps
//! ([`prepare`], [`run`], [`respond`]).

use std::sync::Arc;

use tracing::Instrument as _;

use airlock_host_api::audit::{Subject, Trigger};
use airlock_host_api::credentials::CredentialScope;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::installations::scope;
use super::{TenantQuery, body};
use crate::admission::Admitted;
use crate::app::{App, Loaded};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::wire::GuestLog;
use airlock_platform::api_keys::Scope;
use airlock_runtime::Output;
use airlock_runtime::ids::{InstallationId, TenantId, UserId};
use airlock_runtime::invoke::{Caller, Invocation};
use airlock_store::runs::{RunRecord, RunTrigger};

/// `?tenant=` as on every route, `?user=`, and `?log=true`: the guest's log lines (scrubbed of injected
/// credentials) come back with the result, to the caller who ran it, and are kept nowhere.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct InvokeQuery {
    /// Admin key: the tenant to act for. A tenant key may only name its own.
    tenant: Option<String>,
    /// Return the guest's log lines with the result, as `{"output", "log"}` (kept nowhere).
    #[serde(default)]
    log: bool,
    /// The end user the invocation runs for: per-user OAuth credentials are that user's
    /// connection (1-128 of `A-Z a-z 0-9 . _ @ + -`).
    user: Option<String>,
    /// Queue a run instead of waiting: answered `202` with the run at once (its input checked
    /// first); `GET /v1/runs/{run}` follows it.
    #[serde(default)]
    r#async: bool,
}

/// The action and the installation it belongs to.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct ActionPath {
    /// The installation id, looked up within the caller's tenant.
    installation: String,
    /// An action the installed version declares.
    action: String,
}

/// The action's output (valid against its output schema), or with `?log=true`
/// `{"output", "log"}`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(super) enum ActionResult {
    /// The output as the action wrote it, byte for byte (numbers keep their digits).
    #[schema(value_type = Value)]
    Output(Output),
    Logged {
        #[schema(value_type = Value)]
        output: Output,
        log: GuestLog,
    },
}

/// A run queued by `?async=true`.
#[derive(Serialize, ToSchema)]
pub(super) struct Queued {
    /// The run's id: `GET /v1/runs/{run}`.
    run: String,
    /// `queued`.
    status: String,
}

/// The response header naming the invocation (as its audit record does).
const INVOCATION_HEADER: &str = "airlock-invocation";
/// The response header with the sequence number of the invocation's audit record.
const RECORD_HEADER: &str = "airlock-audit-record";

/// Invoke an action
///
/// The body is its input. The invocation runs on its own thread: a client that disconnects
/// does not cut it short, so its egress and its audit record are whole. A failure's `code` is
/// its outcome class and its status follows the CLI's exit codes (docs/api.md, "Invocation
/// errors").
#[utoipa::path(
    post,
    path = "/v1/installations/{installation}/actions/{action}",
    tag = "invocations",
    operation_id = "invoke",
    extensions(("x-airlock-scope" = json!("invoke"))),
    params(ActionPath, InvokeQuery),
    request_body(content = Value, description = "The action's input, valid against its input schema"),
    responses(
        (status = 200, description = "The action's output", body = ActionResult, headers(
            ("airlock-invocation" = String, description = "The invocation's id, as its audit record names it"),
            ("airlock-audit-record" = u64, description = "The sequence number of its audit record"),
        )),
        (status = 202, description = "With `?async=true`: the run queued (`Location: /v1/runs/{run}`)", body = Queued),
        (status = 404, description = "No such installation of the caller's tenant, or action (`not-found`, `unknown-action`)", body = ErrorBody),
        (status = 422, description = "Input or output refused by its schema (`input-rejected`, `output-rejected`)", body = ErrorBody),
        (status = 429, description = "The tenant's queue is full, no slot freed up in time, or (`?async=true`) it has as many runs pending as it may (`busy`, `Retry-After`)", body = ErrorBody),
        (status = 502, description = "The guest failed or trapped (`guest-error`, `guest-trap`)", body = ErrorBody),
        (status = 503, description = "The audit trail cannot take records: nothing runs (`audit-unavailable`)", body = ErrorBody),
        (status = 504, description = "A limit stopped it (`limit-timeout`, `limit-memory`, …)", body = ErrorBody),
    ),
)]
pub(super) async fn invoke(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(ActionPath {
        installation,
        action,
    }): Path<ActionPath>,
    Query(query): Query<InvokeQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require(&app, Scope::Invoke).await?;
    let tenant_query = TenantQuery {
        tenant: query.tenant,
    };
    let (tenant, installation) = scope(&principal, &tenant_query, &installation)?;
    let input = String::from_utf8(body(raw)?.to_vec())
        .map_err(|_| ApiError::bad_request("the input is not UTF-8 JSON".to_string()))?;
    let user: Option<UserId> = query
        .user
        .as_deref()
        .map(|u| u.parse().map_err(ApiError::invalid))
        .transpose()?;
    if query.r#async {
        if user.is_some() {
            return Err(ApiError::bad_request(
                "?async=true runs for the installation, not an end user: drop ?user= or \
                 invoke synchronously"
                    .to_string(),
            ));
        }
        return queue(&app, &tenant, &installation, &action, &input).await;
    }
    let ready = prepare(&app, tenant, installation, user, Trigger::Api).await?;
    let invocation = run(app, ready, action, input).await?;
    Ok(respond(invocation, query.log))
}

/// The run queued by `?async=true`, answered `202` with its id and a `Location`.
async fn queue(
    app: &Arc<App>,
    tenant: &TenantId,
    installation: &InstallationId,
    action: &str,
    input: &str,
) -> Result<Response, ApiError> {
    let id = crate::queue::new_run_id();
    let run = crate::queue::enqueue(
        app,
        &id,
        tenant,
        installation,
        action,
        input,
        RunTrigger::Api,
    )
    .await?;
    Ok(queued(&run))
}

/// `202 Accepted` naming the queued `run`, with its `Location`.
pub(super) fn queued(run: &RunRecord) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        Json(Queued {
            run: run.id.clone(),
            status: run.status.as_str().into(),
        }),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/runs/{}", run.id)) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// An invocation admitted and ready to run: a slot, the loaded installation, its caller.
pub(crate) struct Ready {
    admitted: Admitted,
    loaded: Arc<Loaded>,
    caller: Caller,
}

impl Ready {
    /// The installed version's declaration of `action`, if it has one.
    pub(crate) fn action(&self, action: &str) -> Option<airlock_runtime::manifest::Action> {
        self.declared(action).cloned()
    }

    fn declared(&self, action: &str) -> Option<&airlock_runtime::manifest::Action> {
        self.loaded.integration.manifest().manifest.action(action)
    }
}

/// Waits for an admission slot of `tenant`, then loads the installation (refused if its code
/// is no longer trusted) and its credential and kv scopes, for `user` if one is named (a
/// user id means something only within its tenant, which the key already fixed).
pub(crate) async fn prepare(
    app: &Arc<App>,
    tenant: TenantId,
    installation: InstallationId,
    user: Option<UserId>,
    trigger: Trigger,
) -> Result<Ready, ApiError> {
    let admitted = app
        .admission
        .admit(tenant.as_str())
        .await
        .map_err(ApiError::busy)?;
    let loaded = app.installed(&tenant, &installation).await?;
    // The trail names the user by reference only: it outlives the tenant's data key.
    let user_ref = user
        .as_ref()
        .map(|u| app.store.user_ref(&tenant, u))
        .transpose()?;
    let credentials = app.runtime.credentials(
        CredentialScope {
            user: user.map(|u| u.to_string()),
            ..CredentialScope::new(tenant.to_string(), installation.to_string())
        },
        app.store.secrets(&tenant, &installation),
    );
    let caller = Caller {
        subject: Subject {
            user: user_ref,
            ..Subject::new(tenant.to_string(), installation.to_string())
        },
        trigger,
        credentials,
        kv: Some(app.store.kv(&tenant, &installation)),
    };
    Ok(Ready {
        admitted,
        loaded,
        caller,
    })
}

/// Runs `action` with `input`.
///
/// Guest code runs on a thread of its own, scheduled by the kernel, never on the workers that
/// serve requests: a tenant's busy loops get at most their share of the CPU, at the lowest
/// priority once they run long (`demote_after`), and the thread ends with the call.
pub(crate) async fn run(
    app: Arc<App>,
    ready: Ready,
    action: String,
    input: String,
) -> Result<Invocation, ApiError> {
    let runtime = tokio::runtime::Handle::current();
    let (done, task) = tokio::sync::oneshot::channel();
    // Metadata only: ids, the trigger, and the action only if the integration declares it.
    let declared = ready.declared(&action).is_some().then_some(action.as_str());
    let span = tracing::info_span!(
        "invocation",
        airlock.tenant = %ready.caller.subject.tenant,
        airlock.installation = %ready.caller.subject.installation,
        airlock.action = declared,
        airlock.trigger = ?ready.caller.trigger,
        airlock.outcome = tracing::field::Empty,
    );
    let traced = span.clone();
    std::thread::Builder::new()
        .name("airlock-guest".into())
        .spawn(move || {
            let Ready {
                admitted,
                loaded,
                caller,
            } = ready;
            let invocation = runtime.block_on(
                app.runtime
                    .invoke_as(
                        &loaded.integration,
                        &loaded.config,
                        &caller,
                        &action,
                        &input,
                    )
                    .instrument(traced),
            );
            drop(admitted);
            let _ = done.send(invocation);
        })
        .map_err(ApiError::internal)?;
    let invocation = task.await.map_err(ApiError::internal)?;
    let outcome = invocation
        .result
        .as_ref()
        .map_or_else(|e| e.class(), |_| "ok");
    span.record("airlock.outcome", outcome);
    Ok(invocation)
}

/// The output (with the guest's log if asked for), or the typed error; headers name the
/// invocation and its audit record.
pub(super) fn respond(invocation: Invocation, with_log: bool) -> Response {
    let id = invocation.id.to_string();
    let log = with_log.then(|| GuestLog::from(invocation.log));
    let mut response = match (invocation.result, log) {
        (Ok(output), None) => Json(ActionResult::Output(output)).into_response(),
        (Ok(output), Some(log)) => Json(ActionResult::Logged { output, log }).into_response(),
        (Err(error), log) => ApiError::invocation(&error, &id, log).into_response(),
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(INVOCATION_HEADER, value);
    }
    if let Some(seq) = invocation.record {
        headers.insert(RECORD_HEADER, HeaderValue::from(seq));
    }
    response
}
