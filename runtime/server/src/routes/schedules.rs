//! Cron schedules (docs/api.md, "Schedules"): a tenant gives an action its installed version
//! declares `schedulable` a cron expression, a time zone and an input; each tick queues a run
//! with trigger `schedule`, once across the cluster. A schedule runs the action, so creating,
//! pausing and resuming need `invoke` as well as `installations:write`; deleting one needs
//! only `installations:write`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::installations::scope;
use super::{InstallationPath, TenantQuery, json_body};
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use airlock_platform::api_keys::Scope;
use airlock_platform::install::{ScheduleError, ScheduleRequest};
use airlock_platform::timetable::Timetable;
use airlock_runtime::ids::InstallationId;
use airlock_runtime::invoke::check_input;
use airlock_store::schedules::ScheduleRecord;

/// A schedule to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewSchedule)]
pub(super) struct NewSchedule {
    /// A schedulable action of the installed version; may be left out when it declares one.
    action: Option<String>,
    /// Five fields (minute hour day-of-month month day-of-week), or six with seconds first;
    /// `L`, `W`, `#`, ranges, steps, names and `@hourly`-style aliases.
    cron: String,
    /// The IANA time zone the expression is read in (default `UTC`).
    timezone: Option<String>,
    /// The input each run gets, valid against the action's input schema (default `{}`).
    input: Option<Value>,
}

/// A cron schedule: when it fires and how it went; never its input.
#[derive(Serialize, ToSchema)]
pub(super) struct Schedule {
    id: String,
    tenant: String,
    installation: String,
    action: String,
    cron: String,
    timezone: String,
    paused: bool,
    /// Unix milliseconds, as are the other times.
    created: u64,
    updated: u64,
    /// The next tick to fire; absent while paused.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    next_tick: Option<u64>,
    /// Ticks that queued a run.
    fired: u64,
    /// Ticks missed while nothing ran, or refused by a full queue: skipped, never replayed.
    skipped: u64,
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    last_tick: Option<u64>,
    /// The run the last tick queued.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    last_run: Option<String>,
}

impl From<ScheduleRecord> for Schedule {
    fn from(s: ScheduleRecord) -> Self {
        Self {
            id: s.id,
            tenant: s.tenant,
            installation: s.installation,
            action: s.action,
            cron: s.cron,
            timezone: s.timezone,
            paused: s.paused,
            created: s.created,
            updated: s.updated,
            next_tick: s.next_tick,
            fired: s.fired,
            skipped: s.skipped,
            last_tick: s.last_tick,
            last_run: s.last_run,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct ScheduleList {
    schedules: Vec<Schedule>,
}

/// `?tenant=`, and which installation's.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SchedulesQuery {
    /// Admin key: the tenant whose schedules to list. A tenant key may only name its own.
    tenant: Option<String>,
    /// Only this installation's schedules.
    installation: Option<String>,
}

/// A schedule of the caller's tenant, named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct SchedulePath {
    /// The schedule id (`sch_` and 24 hex digits).
    schedule: String,
}

/// Create a schedule
///
/// Each tick of `cron` in `timezone` queues a run of the action with `input` (checked against
/// its schema now). Ticks missed while no node ran are skipped, not replayed.
#[utoipa::path(
    post,
    path = "/v1/installations/{installation}/schedules",
    tag = "schedules",
    operation_id = "create_schedule",
    extensions(("x-airlock-scope" = json!("installations:write, invoke"))),
    params(InstallationPath, TenantQuery),
    request_body = NewSchedule,
    responses(
        (status = 201, description = "Created", body = Schedule),
        (status = 404, description = "No such installation of the caller's tenant (`not-found`)", body = ErrorBody),
        (status = 409, description = "The installation has as many schedules as it may (`conflict`)", body = ErrorBody),
        (status = 422, description = "Not a schedulable action, an invalid cron expression or time zone (`schedule-rejected`), or an input its schema refuses (`input-rejected`)", body = ErrorBody),
    ),
)]
pub(super) async fn create(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(InstallationPath { installation }): Path<InstallationPath>,
    Query(query): Query<TenantQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Schedule>), ApiError> {
    principal.require(&app, Scope::InstallationsWrite).await?;
    principal.require(&app, Scope::Invoke).await?;
    let (tenant, installation) = scope(&principal, &query, &installation)?;
    let new: NewSchedule = json_body(
        raw,
        "schedule (`{\"cron\": \"*/15 * * * *\", \"timezone\": \"Europe/Berlin\", \"input\": {}}`)",
    )?;
    let action = {
        let (tenant, installation) = (tenant.clone(), installation.clone());
        let named = new.action.clone();
        app.installing(move |i| i.schedulable_action(&tenant, &installation, named.as_deref()))
            .await??
    };
    let timezone = new.timezone.unwrap_or_else(|| "UTC".into());
    // The schedule is judged before its input, so a refusal names what is wrong with it.
    Timetable::parse(&new.cron, &timezone).map_err(ScheduleError::from)?;
    let input = serde_json::to_string(
        &new.input
            .unwrap_or_else(|| Value::Object(Default::default())),
    )
    .map_err(ApiError::internal)?;
    let loaded = app.installed(&tenant, &installation).await?;
    check_input(&loaded.integration, &action, &input).map_err(|e| ApiError::invoke_error(&e))?;
    let created = app
        .installing(move |i| {
            let request = ScheduleRequest {
                cron: &new.cron,
                timezone: &timezone,
                input: input.as_bytes(),
            };
            i.create_schedule(&tenant, &installation, &action, &request)
        })
        .await??;
    app.schedules_changed.notify_one();
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// List schedules
#[utoipa::path(
    get,
    path = "/v1/schedules",
    tag = "schedules",
    operation_id = "list_schedules",
    extensions(("x-airlock-scope" = json!("installations:read"))),
    params(SchedulesQuery),
    responses((status = 200, description = "Schedules, by id", body = ScheduleList)),
)]
pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(query): Query<SchedulesQuery>,
) -> Result<Json<ScheduleList>, ApiError> {
    principal.require(&app, Scope::InstallationsRead).await?;
    let tenant = principal.tenant(query.tenant.as_deref())?;
    let installation: Option<InstallationId> =
        query.installation.as_deref().map(super::id).transpose()?;
    let schedules = app.store.schedules(&tenant, installation.as_ref())?;
    Ok(Json(ScheduleList {
        schedules: schedules.into_iter().map(Schedule::from).collect(),
    }))
}

/// Pause a schedule
///
/// No tick fires until it is resumed; the ticks meanwhile are not counted as missed.
#[utoipa::path(
    post,
    path = "/v1/schedules/{schedule}/pause",
    tag = "schedules",
    operation_id = "pause_schedule",
    extensions(("x-airlock-scope" = json!("installations:write, invoke"))),
    params(SchedulePath, TenantQuery),
    responses(
        (status = 200, description = "Paused", body = Schedule),
        (status = 404, description = "No such schedule of the caller's tenant (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn pause(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(SchedulePath { schedule }): Path<SchedulePath>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Schedule>, ApiError> {
    set_paused(app, principal, schedule, query, true).await
}

/// Resume a schedule
///
/// From its next tick after now.
#[utoipa::path(
    post,
    path = "/v1/schedules/{schedule}/resume",
    tag = "schedules",
    operation_id = "resume_schedule",
    extensions(("x-airlock-scope" = json!("installations:write, invoke"))),
    params(SchedulePath, TenantQuery),
    responses(
        (status = 200, description = "Resumed", body = Schedule),
        (status = 404, description = "No such schedule of the caller's tenant (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn resume(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(SchedulePath { schedule }): Path<SchedulePath>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Schedule>, ApiError> {
    set_paused(app, principal, schedule, query, false).await
}

async fn set_paused(
    app: Arc<App>,
    principal: Principal,
    schedule: String,
    query: TenantQuery,
    paused: bool,
) -> Result<Json<Schedule>, ApiError> {
    principal.require(&app, Scope::InstallationsWrite).await?;
    principal.require(&app, Scope::Invoke).await?;
    let tenant = principal.tenant(query.tenant.as_deref())?;
    let changed = app
        .installing(move |i| i.pause_schedule(&tenant, &schedule, paused))
        .await??;
    app.schedules_changed.notify_one();
    Ok(Json(changed.into()))
}

/// Delete a schedule
///
/// Runs it queued stay queued.
#[utoipa::path(
    delete,
    path = "/v1/schedules/{schedule}",
    tag = "schedules",
    operation_id = "delete_schedule",
    extensions(("x-airlock-scope" = json!("installations:write"))),
    params(SchedulePath, TenantQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such schedule of the caller's tenant (`not-found`)", body = ErrorBody),
    ),
)]
pub(super) async fn delete(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(SchedulePath { schedule }): Path<SchedulePath>,
    Query(query): Query<TenantQuery>,
) -> Result<StatusCode, ApiError> {
    principal.require(&app, Scope::InstallationsWrite).await?;
    let tenant = principal.tenant(query.tenant.as_deref())?;
    app.installing(move |i| i.delete_schedule(&tenant, &schedule))
        .await??;
    Ok(StatusCode::NO_CONTENT)
}
