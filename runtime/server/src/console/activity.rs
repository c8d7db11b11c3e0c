//! The console's pages of what happens: runs (retried from here), webhooks and schedules
//! (paused and resumed from here), security events, the audit trail and metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{Csrf, Posted, Scoped, Signed, TenantForm, done, pages, shown};
use crate::app::App;
use crate::error::ApiError;
use airlock_audit::AuditTrail;
use airlock_audit::checkpoint::Checkpoint;
use airlock_audit::verify::Report;
use airlock_platform::api_keys::Scope;
use airlock_runtime::clock;
use airlock_store::runs::{RunQuery, RunStatus};

/// Most runs one page shows.
const RUNS_SHOWN: usize = 100;
/// How far back the events page looks, and the most records it reads.
const EVENTS_SINCE: Duration = Duration::from_secs(24 * 3600);
const EVENTS_READ: usize = 1_000;

#[derive(Deserialize)]
pub(super) struct RunsFilter {
    tenant: Option<String>,
    installation: Option<String>,
    status: Option<String>,
}

pub(super) async fn runs(
    State(app): State<Arc<App>>,
    signed: Signed,
    Query(filter): Query<RunsFilter>,
) -> Response {
    shown(
        async {
            let principal = &signed.principal;
            principal.require(&app, Scope::InstallationsRead).await?;
            let tenant = principal.tenant(filter.tenant.as_deref())?;
            let installation = filter.installation.unwrap_or_default();
            let status = filter.status.unwrap_or_default();
            let query = RunQuery {
                installation: Some(installation.clone()).filter(|i| !i.is_empty()),
                status: Some(status.as_str())
                    .filter(|s| !s.is_empty())
                    .map(str::parse::<RunStatus>)
                    .transpose()
                    .map_err(ApiError::invalid)?,
                limit: RUNS_SHOWN,
                ..RunQuery::default()
            };
            let runs = app.store.runs(&tenant, &query)?;
            Ok(pages::runs(
                principal,
                &signed.session.csrf,
                &tenant,
                &installation,
                &status,
                &runs,
            ))
        }
        .await,
    )
}

pub(super) async fn retry(
    State(app): State<Arc<App>>,
    Path(run): Path<String>,
    Posted { signed, form }: Posted<TenantForm>,
) -> Response {
    done(
        async {
            signed.principal.require(&app, Scope::Invoke).await?;
            let tenant = signed.principal.tenant(Some(&form.tenant))?;
            crate::routes::runs::requeue(&app, &tenant, &run)?;
            Ok(format!("/console/runs?tenant={tenant}"))
        }
        .await,
    )
}

pub(super) async fn events(
    State(app): State<Arc<App>>,
    signed: Signed,
    Query(query): Query<Scoped>,
) -> Response {
    shown(
        async {
            let principal = &signed.principal;
            principal.require(&app, Scope::AuditRead).await?;
            let tenant = principal.tenant_filter(query.tenant.as_deref())?;
            let now = clock::now_unix_ms();
            let since = now.saturating_sub(u64::try_from(EVENTS_SINCE.as_millis()).unwrap_or(0));
            let query = airlock_audit::Query {
                tenant: tenant.map(|t| t.to_string()),
                security: true,
                since_ms: Some(since),
                after: None,
            };
            let trail = app.trail.clone();
            let page = tokio::task::spawn_blocking(move || trail.page(&query, EVENTS_READ))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            let events: Vec<pages::Event> = page
                .entries
                .into_iter()
                .filter_map(|entry| match entry {
                    airlock_audit::Entry::Record { record, .. } => {
                        Some(pages::Event::of(&record.envelope))
                    }
                    airlock_audit::Entry::Damaged { .. } => None,
                })
                .collect();
            Ok(pages::events(
                principal,
                &signed.session.csrf,
                &events,
                since,
                now,
            ))
        }
        .await,
    )
}

pub(super) async fn hooks(
    State(app): State<Arc<App>>,
    signed: Signed,
    Query(query): Query<Scoped>,
) -> Response {
    shown(
        async {
            let principal = &signed.principal;
            principal.require(&app, Scope::InstallationsRead).await?;
            let tenant = principal.tenant(query.tenant.as_deref())?;
            let webhooks = app.store.webhooks_of(&tenant, clock::now_unix())?;
            let schedules = app.store.schedules(&tenant, None)?;
            Ok(pages::hooks(
                principal,
                &signed.session.csrf,
                &tenant,
                &webhooks,
                &schedules,
            ))
        }
        .await,
    )
}

pub(super) async fn pause_schedule(
    State(app): State<Arc<App>>,
    Path(schedule): Path<String>,
    posted: Posted<TenantForm>,
) -> Response {
    set_paused(app, schedule, posted, true).await
}

pub(super) async fn resume_schedule(
    State(app): State<Arc<App>>,
    Path(schedule): Path<String>,
    posted: Posted<TenantForm>,
) -> Response {
    set_paused(app, schedule, posted, false).await
}

/// Pauses or resumes a schedule, as `POST /v1/schedules/{id}/pause|resume` does.
async fn set_paused(
    app: Arc<App>,
    schedule: String,
    Posted { signed, form }: Posted<TenantForm>,
    paused: bool,
) -> Response {
    done(
        async {
            let principal = &signed.principal;
            principal.require(&app, Scope::InstallationsWrite).await?;
            principal.require(&app, Scope::Invoke).await?;
            let tenant = principal.tenant(Some(&form.tenant))?;
            let t = tenant.clone();
            app.installing(move |i| i.pause_schedule(&t, &schedule, paused))
                .await??;
            app.schedules_changed.notify_one();
            Ok(format!("/console/hooks?tenant={tenant}"))
        }
        .await,
    )
}

/// The trail's chain, its newest signed checkpoint, and if `verify`, the whole chain
/// verified against its checkpoints (reading every record: on the blocking pool).
async fn trail_state(
    trail: AuditTrail,
    verify: bool,
) -> Result<(String, Option<Checkpoint>, Option<Report>), ApiError> {
    tokio::task::spawn_blocking(move || {
        let checkpoints = trail.dir().checkpoints(trail.chain())?;
        let newest = checkpoints
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .next_back()
            .cloned();
        let report = if verify {
            Some(trail.verify_whole(None)?.0)
        } else {
            None
        };
        Ok::<_, airlock_audit::AuditError>((trail.chain().to_string(), newest, report))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

pub(super) async fn audit(State(app): State<Arc<App>>, signed: Signed) -> Response {
    shown(
        async {
            signed.principal.require_admin(&app).await?;
            let (chain, newest, _) = trail_state(app.trail.clone(), false).await?;
            Ok(pages::audit(
                &signed.principal,
                &signed.session.csrf,
                &chain,
                newest.as_ref(),
                None,
            ))
        }
        .await,
    )
}

pub(super) async fn verify_audit(
    State(app): State<Arc<App>>,
    Posted { signed, .. }: Posted<Csrf>,
) -> Response {
    shown(
        async {
            signed.principal.require_admin(&app).await?;
            let (chain, newest, report) = trail_state(app.trail.clone(), true).await?;
            Ok(pages::audit(
                &signed.principal,
                &signed.session.csrf,
                &chain,
                newest.as_ref(),
                report.as_ref(),
            ))
        }
        .await,
    )
}

pub(super) async fn metrics(State(app): State<Arc<App>>, signed: Signed) -> Response {
    shown(
        async {
            signed.principal.require_admin(&app).await?;
            Ok(pages::metrics(
                &signed.principal,
                &signed.session.csrf,
                &app.history(),
            ))
        }
        .await,
    )
}
