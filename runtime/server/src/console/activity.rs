//! The console's pages of what happens: runs (retried from here), webhooks and schedules
//! (paused and resumed from here), security events, the audit trail and metrics.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use super::{Posted, Scoped, Signed, TenantForm, pages, see_other};
use crate::app::App;
use crate::error::ApiError;
use airlock_platform::api_keys::Scope;
use serde::Deserialize;

use super::Csrf;
use airlock_store::runs::{RunQuery, RunStatus};

/// Most runs one page shows.
const RUNS_SHOWN: usize = 100;

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
    let listed = async {
        signed
            .principal
            .require(&app, Scope::InstallationsRead)
            .await?;
        let tenant = signed.principal.tenant(filter.tenant.as_deref())?;
        let status = filter
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(str::parse::<RunStatus>)
            .transpose()
            .map_err(ApiError::invalid)?;
        let query = RunQuery {
            installation: filter.installation.clone().filter(|i| !i.is_empty()),
            status,
            limit: RUNS_SHOWN,
            ..RunQuery::default()
        };
        Ok::<_, ApiError>((tenant.clone(), app.store.runs(&tenant, &query)?))
    };
    match listed.await {
        Ok((tenant, runs)) => pages::runs(
            &signed.principal,
            &signed.session.csrf,
            &tenant,
            &filter.installation.unwrap_or_default(),
            &filter.status.unwrap_or_default(),
            &runs,
        )
        .into_response(),
        Err(e) => pages::refusal(&e),
    }
}

pub(super) async fn retry(
    State(app): State<Arc<App>>,
    Path(run): Path<String>,
    Posted { signed, form }: Posted<TenantForm>,
) -> Response {
    let retried = async {
        signed.principal.require(&app, Scope::Invoke).await?;
        let tenant = signed.principal.tenant(Some(&form.tenant))?;
        crate::routes::runs::requeue(&app, &tenant, &run)?;
        Ok::<_, ApiError>(tenant)
    };
    match retried.await {
        Ok(tenant) => see_other(&format!("/console/runs?tenant={tenant}")),
        Err(e) => pages::refusal(&e),
    }
}

/// How far back the events page looks, and the most records it reads.
const EVENTS_SINCE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
const EVENTS_READ: usize = 1_000;

pub(super) async fn events(
    State(app): State<Arc<App>>,
    signed: Signed,
    Query(query): Query<Scoped>,
) -> Response {
    let read = async {
        signed.principal.require(&app, Scope::AuditRead).await?;
        let tenant = signed.principal.tenant_filter(query.tenant.as_deref())?;
        let now = airlock_runtime::clock::now_unix_ms();
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
                airlock_audit::query::Entry::Record { record, .. } => {
                    Some(pages::Event::of(&record.envelope))
                }
                airlock_audit::query::Entry::Damaged { .. } => None,
            })
            .collect();
        Ok::<_, ApiError>((events, since, now))
    };
    match read.await {
        Ok((events, since, now)) => {
            pages::events(&signed.principal, &signed.session.csrf, &events, since, now)
                .into_response()
        }
        Err(e) => pages::refusal(&e),
    }
}

pub(super) async fn hooks(
    State(app): State<Arc<App>>,
    signed: Signed,
    Query(query): Query<Scoped>,
) -> Response {
    let listed = async {
        signed
            .principal
            .require(&app, Scope::InstallationsRead)
            .await?;
        let tenant = signed.principal.tenant(query.tenant.as_deref())?;
        let webhooks = app
            .store
            .webhooks_of(&tenant, airlock_runtime::clock::now_unix())?;
        let schedules = app.store.schedules(&tenant, None)?;
        Ok::<_, ApiError>((tenant, webhooks, schedules))
    };
    match listed.await {
        Ok((tenant, webhooks, schedules)) => pages::hooks(
            &signed.principal,
            &signed.session.csrf,
            &tenant,
            &webhooks,
            &schedules,
        )
        .into_response(),
        Err(e) => pages::refusal(&e),
    }
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
    let changed = async {
        signed
            .principal
            .require(&app, Scope::InstallationsWrite)
            .await?;
        signed.principal.require(&app, Scope::Invoke).await?;
        let tenant = signed.principal.tenant(Some(&form.tenant))?;
        let t = tenant.clone();
        app.installing(move |i| i.pause_schedule(&t, &schedule, paused))
            .await??;
        app.schedules_changed.notify_one();
        Ok::<_, ApiError>(tenant)
    };
    match changed.await {
        Ok(tenant) => see_other(&format!("/console/hooks?tenant={tenant}")),
        Err(e) => pages::refusal(&e),
    }
}

pub(super) async fn audit(State(app): State<Arc<App>>, signed: Signed) -> Response {
    let read = async {
        signed.principal.require_admin(&app).await?;
        let trail = app.trail.clone();
        tokio::task::spawn_blocking(move || {
            let newest = trail
                .dir()
                .checkpoints(trail.chain())?
                .into_iter()
                .filter_map(Result::ok)
                .next_back();
            Ok::<_, airlock_audit::AuditError>((trail.chain().to_string(), newest))
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
    };
    match read.await {
        Ok((chain, newest)) => pages::audit(
            &signed.principal,
            &signed.session.csrf,
            &chain,
            newest.as_ref(),
            None,
        )
        .into_response(),
        Err(e) => pages::refusal(&e),
    }
}

pub(super) async fn verify_audit(
    State(app): State<Arc<App>>,
    Posted { signed, .. }: Posted<Csrf>,
) -> Response {
    let verified = async {
        signed.principal.require_admin(&app).await?;
        let trail = app.trail.clone();
        tokio::task::spawn_blocking(move || {
            let key = trail.dir().public_key()?;
            let lines: Vec<(u64, Vec<u8>)> = trail.lines().collect::<Result<_, _>>()?;
            let checkpoints = trail.dir().checkpoints(trail.chain())?;
            let newest = checkpoints
                .iter()
                .filter_map(|c| c.as_ref().ok())
                .next_back()
                .cloned();
            let report =
                airlock_audit::verify::verify(&lines, &checkpoints, &key, trail.checkpointed());
            Ok::<_, airlock_audit::AuditError>((trail.chain().to_string(), newest, report))
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
    };
    match verified.await {
        Ok((chain, newest, report)) => pages::audit(
            &signed.principal,
            &signed.session.csrf,
            &chain,
            newest.as_ref(),
            Some(&report),
        )
        .into_response(),
        Err(e) => pages::refusal(&e),
    }
}

pub(super) async fn metrics(State(app): State<Arc<App>>, signed: Signed) -> Response {
    if let Err(e) = signed.principal.require_admin(&app).await {
        return pages::refusal(&e);
    }
    pages::metrics(&signed.principal, &signed.session.csrf, &app.history()).into_response()
}
