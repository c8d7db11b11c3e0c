//! `POST /v1/hooks/{endpoint}`: a webhook delivery. No API key: the signature authenticates it.
//!
//! In this order, so nothing reads, parses or runs what is not authentic (WH-10, WH-12):
//! 1. the endpoint is looked up (an unknown one is a plain 404, its body never read), and a
//!    `Content-Length` over [`MAX_DELIVERY`] is refused;
//! 2. the body is read raw, at most [`MAX_DELIVERY`] bytes, within [`READ_TIMEOUT`];
//! 3. the signature is verified on those bytes under the endpoint's live secrets (read after
//!    the body, so a rotation or deletion meanwhile counts);
//! 4. by default (asynchronously), the delivery id is recorded, first writer wins (a replay
//!    gets 409), and a run is queued with the body as input (checked against the action's
//!    input schema first) and answered `202` at once; the worker runs it with trigger
//!    `webhook`, retried as any run. Its id derives from the endpoint and the delivery id, so
//!    a replay racing its original queues nothing; a delivery whose id was recorded by a node
//!    that died before queuing its run is queued by the sender's retry;
//! 5. for an action whose manifest says `[actions.NAME.webhook] mode = "sync"`, an admission
//!    slot and the installation are obtained (a busy tenant gets 429 and the sender's retry
//!    is not mistaken for a replay), the delivery id recorded, and the action runs while the
//!    sender waits, audited with trigger `webhook`. The response is the action's, so a sender
//!    that reads it (Slack's URL verification) gets the output.
//!
//! When the delivery fails on our side or the tenant is busy (5xx, 429), its id is released,
//! so the sender's retry runs; a delivery the action refused (4xx) stays consumed.
//!
//! Refusals are security events, at most ten per endpoint a minute; the rest are
//! counted in `/metrics`, so a flood of forged deliveries cannot flood the trail.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use airlock_host_api::audit::Trigger;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::id;
use super::invoke::{ActionResult, Queued, prepare, queued, respond, run};
use crate::app::App;
use crate::client::Client;
use crate::error::{ApiError, ErrorBody};
use crate::queue::{delivery_run_id, enqueue};
use airlock_platform::deliveries::{self, DeliveryError, Verified};
use airlock_policy::webhook::Refusal;
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::{EndpointId, InstallationId, TenantId};
use airlock_runtime::manifest::Action;
use airlock_store::runs::RunTrigger;

/// Largest delivery body.
pub(crate) const MAX_DELIVERY: usize = 1 << 20;
/// Longest a sender may take to send the body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A webhook delivery
///
/// No API key: the signature authenticates it. Verified on its raw body (Standard Webhooks,
/// GitHub or Slack signature), deduplicated by delivery id, then a run of the endpoint's action
/// is queued with the body as input and answered `202` (`GET /v1/runs/{run}` follows it). An
/// action whose manifest says `[actions.NAME.webhook] mode = "sync"` runs while the sender
/// waits and answers as an invocation does (headers `airlock-invocation` and
/// `airlock-audit-record`). A delivery that fails on our side or finds the tenant busy (5xx,
/// 429) releases its delivery id, so the sender's retry runs.
#[utoipa::path(
    post,
    path = "/v1/hooks/{endpoint}",
    tag = "webhooks",
    operation_id = "deliver_webhook",
    security(),
    params(("endpoint" = String, Path, description = "The endpoint id")),
    request_body(content = Value, description = "At most 1 MiB, sent within 10 s; signed as the endpoint's scheme says"),
    responses(
        (status = 200, description = "`mode = \"sync\"`: the action's output, as from an invocation", body = ActionResult),
        (status = 202, description = "The run queued (`Location: /v1/runs/{run}`)", body = Queued),
        (status = 400, description = "The body is not UTF-8 (`bad-request`)", body = ErrorBody),
        (status = 401, description = "Signature refused (`signature-refused`, with `reason`): missing or malformed header, algorithm not accepted, timestamp outside 300 s, or no match", body = ErrorBody),
        (status = 404, description = "No such endpoint, or the action is gone (`not-found`, `unknown-action`)", body = ErrorBody),
        (status = 408, description = "The body did not arrive within 10 s (`timeout`)", body = ErrorBody),
        (status = 409, description = "A delivery with this id was already received: a replay (`duplicate-delivery`)", body = ErrorBody),
        (status = 413, description = "Over 1 MiB (`too-large`)", body = ErrorBody),
        (status = 422, description = "Input or output refused by its schema (`input-rejected`, `output-rejected`)", body = ErrorBody),
        (status = 429, description = "The tenant is busy, or has as many runs pending as it may; the retry is not a replay (`busy`, `Retry-After`)", body = ErrorBody),
        (status = 502, description = "The guest failed or trapped (`guest-error`, `guest-trap`)", body = ErrorBody),
        (status = 503, description = "The audit trail cannot take records (`audit-unavailable`)", body = ErrorBody),
        (status = 504, description = "A limit stopped it (`limit-timeout`, …)", body = ErrorBody),
    ),
)]
pub(super) async fn deliver(
    State(app): State<Arc<App>>,
    client: Client,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let endpoint: EndpointId = id(&endpoint)?;
    let unknown = || ApiError::not_found("webhook endpoint");
    if !app.store.webhook_exists(&endpoint)? {
        return Err(unknown());
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_DELIVERY as u64) {
        return Err(too_large());
    }
    let raw =
        match tokio::time::timeout(READ_TIMEOUT, axum::body::to_bytes(body, MAX_DELIVERY)).await {
            Ok(Ok(raw)) => raw,
            Ok(Err(_)) => return Err(too_large()),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    format!(
                        "the body did not arrive within {} s",
                        READ_TIMEOUT.as_secs()
                    ),
                ));
            }
        };
    let now = now_unix();
    let verified = match deliveries::verify(&*app.store, &endpoint, &headers, &raw, now) {
        Ok(verified) => verified,
        Err(e) => return Err(refuse(&app, e, client).await),
    };
    let tenant: TenantId = id(&verified.endpoint.tenant)?;
    let installation: InstallationId = id(&verified.endpoint.installation)?;
    let loaded = app.installed(&tenant, &installation).await?;
    let declared = loaded
        .integration
        .manifest()
        .manifest
        .action(&verified.endpoint.action);
    if !declared.is_some_and(Action::answers_webhooks) {
        return queue(&app, &verified, &tenant, &installation, &raw, client, now).await;
    }
    let ready = prepare(&app, tenant, installation, None, Trigger::Webhook).await?;
    if let Err(e) = deliveries::claim(&*app.store, &verified, now) {
        return Err(refuse(&app, e, client).await);
    }
    let input = String::from_utf8(raw.to_vec())
        .map_err(|_| ApiError::bad_request("the delivery body is not UTF-8 JSON".to_string()))?;
    let response = run(app.clone(), ready, verified.endpoint.action.clone(), input)
        .await
        .map(|invocation| respond(invocation, false));
    // A sender retries what failed on our side (5xx); its retry must run, not meet a 409.
    let failed = response
        .as_ref()
        .map_or(true, |r| r.status().is_server_error());
    if failed {
        deliveries::release(&*app.store, &verified)?;
    }
    response
}

/// Records the delivery id and queues its run, answered `202`.
async fn queue(
    app: &Arc<App>,
    verified: &Verified,
    tenant: &TenantId,
    installation: &InstallationId,
    raw: &[u8],
    client: Client,
    now: u64,
) -> Result<Response, ApiError> {
    let run_id = delivery_run_id(verified.id.as_str(), &verified.delivery);
    match deliveries::claim(&*app.store, verified, now) {
        Ok(()) => {}
        // Recorded by a delivery that never queued its run (its node died in between).
        Err(DeliveryError::Refused {
            refusal: Refusal::Replayed,
            ..
        }) if app.store.run(tenant, &run_id)?.is_none() => {}
        Err(e) => return Err(refuse(app, e, client).await),
    }
    let input = std::str::from_utf8(raw)
        .map_err(|_| ApiError::bad_request("the delivery body is not UTF-8 JSON".to_string()))?;
    let action = &verified.endpoint.action;
    match enqueue(
        app,
        &run_id,
        tenant,
        installation,
        action,
        input,
        RunTrigger::Webhook,
    )
    .await
    {
        Ok(run) => Ok(queued(&run)),
        Err(e) if e.code() == "exists" => {
            let replayed = DeliveryError::Refused {
                endpoint: Box::new(verified.endpoint.clone()),
                refusal: Refusal::Replayed,
            };
            Err(refuse(app, replayed, client).await)
        }
        Err(e) => {
            if e.passing() {
                deliveries::release(&*app.store, verified)?;
            }
            Err(e)
        }
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!("a delivery body may be at most {MAX_DELIVERY} bytes"),
    )
}

/// Records a refusal (within the endpoint's limit) and answers 401, or 409 for a replay.
async fn refuse(app: &App, error: DeliveryError, client: Client) -> ApiError {
    let (endpoint, refusal) = match error {
        DeliveryError::Refused { endpoint, refusal } => (endpoint, refusal),
        DeliveryError::Unknown => return ApiError::not_found("webhook endpoint"),
        DeliveryError::Store(e) => return e.into(),
    };
    if app.hook_refusals.blocked(&endpoint.id).is_none() {
        app.hook_refusals.fail(&endpoint.id);
        let peer = client.to_string();
        if let Err(e) = deliveries::record_refusal(&app.trail, &endpoint, &refusal, &peer).await {
            return e.into();
        }
    } else {
        app.hook_refusals_unrecorded.fetch_add(1, Ordering::Relaxed);
    }
    let (status, code) = match refusal {
        Refusal::Replayed => (StatusCode::CONFLICT, "duplicate-delivery"),
        _ => (StatusCode::UNAUTHORIZED, "signature-refused"),
    };
    ApiError::new(status, code, refusal.to_string()).with_reason(refusal.code())
}
