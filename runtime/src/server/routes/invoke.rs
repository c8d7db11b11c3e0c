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

use airlock_host_api::audit::{Subject, Trigger};
use airlock_host_api::credentials::CredentialScope;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::installations::scope;
use super::{TenantQuery, body};
use crate::apikey::Scope;
use crate::ids::{InstallationId, TenantId, UserId};
use crate::invoke::{Caller, Invocation};
use crate::server::admission::Admitted;
use crate::server::app::{App, Loaded};
use crate::server::auth::Principal;
use crate::server::error::ApiError;
use crate::store::StoredSecrets;
use crate::store::kv::StoredKv;
use airlock_store::Connections;

/// `?tenant=` as on every route, `?user=`, and `?log=true`: the guest's log lines (scrubbed of injected
/// credentials) come back with the result, to the caller who ran it, and are kept nowhere.
#[derive(Deserialize)]
pub(super) struct InvokeQuery {
    tenant: Option<String>,
    #[serde(default)]
    log: bool,
    /// The end user the invocation runs for: per-user credentials are that user's.
    user: Option<String>,
}

/// The response header naming the invocation (as its audit record does).
const INVOCATION_HEADER: &str = "airlock-invocation";
/// The response header with the sequence number of the invocation's audit record.
const RECORD_HEADER: &str = "airlock-audit-record";

pub(super) async fn invoke(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path((installation, action)): Path<(String, String)>,
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
    let ready = prepare(&app, tenant, installation, user, Trigger::Api).await?;
    let invocation = run(app, ready, action, input).await?;
    Ok(respond(invocation, query.log))
}

/// An invocation admitted and ready to run: a slot, the loaded installation, its caller.
pub(super) struct Ready {
    admitted: Admitted,
    loaded: Arc<Loaded>,
    caller: Caller,
}

/// Waits for an admission slot of `tenant`, then loads the installation (refused if its code
/// is no longer trusted) and its credential and kv scopes, for `user` if one is named (a
/// user id means something only within its tenant, which the key already fixed).
pub(super) async fn prepare(
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
        Arc::new(StoredSecrets::new(
            app.store.clone(),
            tenant.clone(),
            installation.clone(),
        )),
    );
    let caller = Caller {
        subject: Subject {
            user: user_ref,
            ..Subject::new(tenant.to_string(), installation.to_string())
        },
        trigger,
        credentials,
        kv: Some(StoredKv::new(app.store.clone(), tenant, installation)),
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
pub(super) async fn run(
    app: Arc<App>,
    ready: Ready,
    action: String,
    input: String,
) -> Result<Invocation, ApiError> {
    let runtime = tokio::runtime::Handle::current();
    let (done, task) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("airlock-guest".into())
        .spawn(move || {
            let Ready {
                admitted,
                loaded,
                caller,
            } = ready;
            let invocation = runtime.block_on(app.runtime.invoke_as(
                &loaded.integration,
                &loaded.config,
                &caller,
                &action,
                &input,
            ));
            drop(admitted);
            let _ = done.send(invocation);
        })
        .map_err(ApiError::internal)?;
    task.await.map_err(ApiError::internal)
}

/// The output (with the guest's log if asked for), or the typed error; headers name the
/// invocation and its audit record.
pub(super) fn respond(invocation: Invocation, with_log: bool) -> Response {
    let id = invocation.id.to_string();
    let log = with_log.then(|| json!(invocation.log));
    let mut response = match (invocation.result, log) {
        (Ok(output), None) => Json(output).into_response(),
        (Ok(output), Some(log)) => Json(json!({ "output": output, "log": log })).into_response(),
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
