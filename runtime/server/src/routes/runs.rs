//! `/v1/runs`: the queued executions of a tenant's installations and how they went, metadata
//! only (docs/api.md, "Runs"). A run is queued by `?async=true` on an action, and by `retry`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::TenantQuery;
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use airlock_platform::api_keys::Scope;
use airlock_runtime::clock;
use airlock_runtime::ids::TenantId;
use airlock_store::runs::{Attempt, Requeued, RunQuery, RunRecord, RunStatus};

/// Most runs one page lists.
const MOST: usize = 200;

/// One attempt of a run.
#[derive(Serialize, ToSchema)]
pub(super) struct RunAttempt {
    /// Unix milliseconds, as is `ended`.
    started: u64,
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    ended: Option<u64>,
    /// `ok`, or the failure's class (`limit-timeout`, `guest-error`, `abandoned` when its
    /// node stopped answering, …).
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
}

/// A queued execution: what ran, when and how it went; never its input or output.
#[derive(Serialize, ToSchema)]
pub(super) struct Run {
    id: String,
    tenant: String,
    installation: String,
    action: String,
    /// `api`, `webhook`, `schedule` or `retry`.
    trigger: String,
    /// `queued`, `running`, `succeeded`, `failed` or `dead`.
    status: String,
    max_attempts: u32,
    attempts: Vec<RunAttempt>,
    /// Unix milliseconds, as are `updated` and `not_before`.
    created: u64,
    updated: u64,
    /// When a queued run is due (its backoff ends).
    not_before: u64,
    /// Whether its input is still kept: a run without one cannot be retried.
    input_kept: bool,
    /// The schedule's tick that queued it (Unix milliseconds).
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tick: Option<u64>,
}

impl From<RunRecord> for Run {
    fn from(run: RunRecord) -> Self {
        Self {
            trigger: run.trigger.as_str().into(),
            status: run.status.as_str().into(),
            attempts: run
                .attempts
                .into_iter()
                .map(
                    |Attempt {
                         started,
                         ended,
                         outcome,
                     }| RunAttempt {
                        started,
                        ended,
                        outcome,
                    },
                )
                .collect(),
            id: run.id,
            tenant: run.tenant,
            installation: run.installation,
            action: run.action,
            max_attempts: run.max_attempts,
            created: run.created,
            updated: run.updated,
            not_before: run.not_before,
            input_kept: run.input_kept,
            tick: run.tick,
        }
    }
}

/// A page of runs, oldest first.
#[derive(Serialize, ToSchema)]
pub(super) struct RunList {
    runs: Vec<Run>,
    /// Pass as `after` for the next page; absent on the last.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `?tenant=`, and which runs.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RunsQuery {
    /// Admin key: the tenant whose runs to list. A tenant key may only name its own.
    tenant: Option<String>,
    /// Only this installation's runs.
    installation: Option<String>,
    /// Only runs in this status.
    status: Option<String>,
    /// Only runs queued at or after this Unix time in milliseconds.
    since: Option<u64>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// At most this many (default and most 200).
    limit: Option<usize>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct RunPath {
    run: String,
}

/// List runs
///
/// Read through an index by the time each was queued, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/runs",
    tag = "runs",
    operation_id = "list_runs",
    extensions(("x-airlock-scope" = json!("installations:read"))),
    params(RunsQuery),
    responses(
        (status = 200, description = "Runs", body = RunList),
        (status = 400, description = "An unknown status (`bad-request`)", body = ErrorBody),
    ),
)]
pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(query): Query<RunsQuery>,
) -> Result<Json<RunList>, ApiError> {
    principal.require(&app, Scope::InstallationsRead).await?;
    let tenant = principal.tenant(query.tenant.as_deref())?;
    let status = query
        .status
        .as_deref()
        .map(str::parse::<RunStatus>)
        .transpose()
        .map_err(ApiError::invalid)?;
    let limit = query.limit.unwrap_or(MOST).clamp(1, MOST);
    let filter = RunQuery {
        installation: query.installation,
        status,
        since: query.since,
        after: query.after,
        limit,
    };
    let runs = app.store.runs(&tenant, &filter)?;
    let next = (runs.len() == limit)
        .then(|| runs.last().map(|run| run.id.clone()))
        .flatten();
    Ok(Json(RunList {
        runs: runs.into_iter().map(Run::from).collect(),
        next,
    }))
}

/// Show a run
#[utoipa::path(
    get,
    path = "/v1/runs/{run}",
    tag = "runs",
    operation_id = "show_run",
    extensions(("x-airlock-scope" = json!("installations:read"))),
    params(RunPath, TenantQuery),
    responses(
        (status = 200, description = "The run", body = Run),
        (status = 404, description = "No such run of the caller's tenant (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn show(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(RunPath { run }): Path<RunPath>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Run>, ApiError> {
    principal.require(&app, Scope::InstallationsRead).await?;
    let tenant = principal.tenant(query.tenant.as_deref())?;
    let record = app
        .store
        .run(&tenant, &run)?
        .ok_or_else(|| ApiError::not_found(format!("run {run}")))?;
    Ok(Json(record.into()))
}

/// Retry a run
///
/// Queues a dead or failed run again, with its attempts renewed, while its input is kept.
#[utoipa::path(
    post,
    path = "/v1/runs/{run}/retry",
    tag = "runs",
    operation_id = "retry_run",
    extensions(("x-airlock-scope" = json!("invoke"))),
    params(RunPath, TenantQuery),
    responses(
        (status = 202, description = "Queued again", body = Run),
        (status = 404, description = "No such run of the caller's tenant (`not-found`)", body = ErrorBody),
        (status = 409, description = "Not dead or failed, or its input is gone (`conflict`)", body = ErrorBody),
        (status = 429, description = "The tenant has as many runs queued or running as it may (`busy`, `Retry-After`)", body = ErrorBody),
    ),
)]
pub(super) async fn retry(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(RunPath { run }): Path<RunPath>,
    Query(query): Query<TenantQuery>,
) -> Result<(StatusCode, Json<Run>), ApiError> {
    principal.require(&app, Scope::Invoke).await?;
    let tenant = principal.tenant(query.tenant.as_deref())?;
    let record = requeue(&app, &tenant, &run)?;
    Ok((StatusCode::ACCEPTED, Json(record.into())))
}

/// Queues `tenant`'s dead or failed run `run` again (for the API and the console).
pub(crate) fn requeue(app: &App, tenant: &TenantId, run: &str) -> Result<RunRecord, ApiError> {
    match app
        .store
        .retry_run(tenant, run, clock::now_unix_ms(), app.limits.tenant_runs)?
    {
        Requeued::Queued(record) => {
            app.runs_queued.notify_one();
            Ok(*record)
        }
        Requeued::NoSuchRun => Err(ApiError::not_found(format!("run {run}"))),
        Requeued::NotEnded(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "run {run} is {}: only a dead or failed run is retried",
                status.as_str()
            ),
        )),
        Requeued::InputGone => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("run {run} no longer has its input (its retention ended): nothing to retry"),
        )),
    }
}
