//! The workers: each claims the run that woke first from the store's queue and invokes it,
//! under the same admission (the tenant's and the global caps) as API invocations, then ends
//! its attempt: succeeded, failed, queued again after a backoff, or dead (docs/api.md, "Runs").
//!
//! At least once: a run is claimed for [`LEASE`]; if its node dies the claim lapses and any
//! node's worker claims it again. Idle workers sleep until the next run wakes, at most
//! [`IDLE`], or until this node queues one.

use std::sync::Arc;

use std::time::Duration;
use tracing::Instrument as _;

use airlock_host_api::audit::Trigger;
use airlock_runtime::clock;
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_store::runs::{ClaimedRun, RunEnd, RunRecord, RunTrigger};
use tokio::sync::watch;

use super::app::App;
use super::retries::{self, Judged};
use super::routes::invoke;

/// How long a claimed run is this node's before another may claim it again: longer than the
/// longest invocation the ceilings allow, with room to record its end.
pub const LEASE: Duration = Duration::from_secs(180);
/// The longest an idle worker sleeps before it looks again (runs queued by other nodes).
const IDLE: Duration = Duration::from_secs(1);

/// Claims and runs runs until `stopped` turns true; the run under way finishes first.
pub(crate) async fn work(app: Arc<App>, mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        let claimed = {
            let app = app.clone();
            tokio::task::spawn_blocking(move || app.store.claim_run(clock::now_unix_ms(), LEASE))
                .await
        };
        match claimed {
            Ok(Ok(Some(claimed))) => execute(&app, claimed).await,
            Ok(Ok(None)) => idle(&app, &mut stopped).await,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot claim a run");
                idle(&app, &mut stopped).await;
            }
            Err(e) => tracing::warn!(error = %e, "claiming a run failed"),
        }
    }
}

/// Sleeps until the next run wakes (at most [`IDLE`]), this node queues one, or the stop.
async fn idle(app: &Arc<App>, stopped: &mut watch::Receiver<bool>) {
    let next = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || app.store.next_run_wake())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    };
    let now = clock::now_unix_ms();
    let sleep = next.map_or(IDLE, |at| {
        Duration::from_millis(at.saturating_sub(now)).min(IDLE)
    });
    tokio::select! {
        () = tokio::time::sleep(sleep) => {}
        () = app.runs_queued.notified() => {}
        _ = stopped.changed() => {}
    }
}

/// Invokes `claimed` and ends its attempt.
async fn execute(app: &Arc<App>, claimed: ClaimedRun) {
    let ClaimedRun { run, claim, input } = claimed;
    let span = tracing::info_span!(
        "queued.run",
        airlock.run = %run.id,
        airlock.tenant = %run.tenant,
        airlock.installation = %run.installation,
        airlock.outcome = tracing::field::Empty,
    );
    let judged = invoke_run(app, &run, String::from_utf8_lossy(&input).into_owned())
        .instrument(span.clone())
        .await;
    span.record("airlock.outcome", judged.outcome.as_str());
    drop(input);
    let now = clock::now_unix_ms();
    let Judged {
        outcome,
        retryable,
        wait_at_least,
    } = judged;
    let end = match (outcome.as_str(), retryable) {
        ("ok", _) => RunEnd::Succeeded { outcome },
        (_, true) if !run.last_attempt() => RunEnd::Retry {
            at: retries::next_attempt_at(now, run.attempts_made(), wait_at_least),
            outcome,
        },
        (_, true) => RunEnd::Dead { outcome },
        (_, false) => RunEnd::Failed { outcome },
    };
    let (app, id) = (app.clone(), run.id.clone());
    let ended =
        tokio::task::spawn_blocking(move || app.store.finish_run(&id, claim, &end, now)).await;
    match ended {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => tracing::warn!(
            run = %run.id,
            "the run's claim lapsed while it ran: another attempt replaced this one"
        ),
        Ok(Err(e)) => tracing::error!(run = %run.id, error = %e, "cannot record a run's end"),
        Err(e) => tracing::error!(run = %run.id, error = %e, "recording a run's end failed"),
    }
}

/// Runs `run` with `input` and judges how the attempt went.
async fn invoke_run(app: &Arc<App>, run: &RunRecord, input: String) -> Judged {
    let ids = run
        .tenant
        .parse::<TenantId>()
        .ok()
        .zip(run.installation.parse::<InstallationId>().ok());
    let Some((tenant, installation)) = ids else {
        return Judged::unstarted("not-found");
    };
    let trigger = match run.trigger {
        RunTrigger::Webhook => Trigger::Webhook,
        RunTrigger::Schedule => Trigger::Schedule,
        RunTrigger::Api | RunTrigger::Retry => Trigger::Api,
    };
    let ready = match invoke::prepare(app, tenant, installation, None, trigger).await {
        Ok(ready) => ready,
        Err(e) => return Judged::unstarted(e.code()),
    };
    let action = ready.action(&run.action);
    match invoke::run(app.clone(), ready, run.action.clone(), input).await {
        Ok(invocation) => retries::judge(
            invocation.result.as_ref().map(drop),
            &invocation.egress,
            action.as_ref(),
        ),
        Err(e) => Judged::unstarted(e.code()),
    }
}
