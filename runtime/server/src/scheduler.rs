//! The scheduler: every node looks for schedules whose tick is due and fires them (docs/api.md,
//! "Schedules"). Firing is a compare-and-set on the schedule's next tick in the store, in the
//! same write as the run it queues, so with any number of nodes each tick fires once. Ticks
//! missed while no node ran are counted and skipped; the latest runs if it is recent
//! ([`airlock_platform::timetable`]). A node sleeps until the next tick, at most [`LOOK`], or
//! until it changes a schedule itself.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::queue;
use airlock_platform::timetable::Timetable;
use airlock_runtime::clock;
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_store::StoreError;
use airlock_store::runs::{NewRun, RunTrigger};
use airlock_store::schedules::{Fired, ScheduleRecord, Tick};

/// The longest the scheduler sleeps before it looks again (schedules made on other nodes).
const LOOK: Duration = Duration::from_secs(1);
/// The most due schedules fired in one round.
const ROUND: usize = 100;

/// Fires due schedules until `stopped` turns true.
pub(crate) async fn fire(app: Arc<App>, mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        let due = blocking(&app, move |app| {
            app.store.due_schedules(clock::now_unix_ms(), ROUND)
        })
        .await
        .unwrap_or_default();
        let mut moved = due.is_empty();
        for schedule in due {
            moved |= fire_one(&app, schedule).await;
        }
        let next = blocking(&app, |app| app.store.next_schedule_tick())
            .await
            .flatten();
        let now = clock::now_unix_ms();
        // A round in which no due schedule could be moved on (the store failing) waits the
        // whole look, not the tick that is still due.
        let sleep = match next {
            Some(at) if moved => Duration::from_millis(at.saturating_sub(now)).min(LOOK),
            _ => LOOK,
        };
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = app.schedules_changed.notified() => {}
            _ = stopped.changed() => {}
        }
    }
}

/// Judges the due tick of `schedule` and fires it; whether the schedule moved on (here or on
/// another node).
async fn fire_one(app: &Arc<App>, schedule: ScheduleRecord) -> bool {
    let Some(due) = schedule.next_tick else {
        return true;
    };
    let ids = schedule
        .tenant
        .parse::<TenantId>()
        .ok()
        .zip(schedule.installation.parse::<InstallationId>().ok());
    let (Some((tenant, installation)), Ok(timetable)) =
        (ids, Timetable::parse(&schedule.cron, &schedule.timezone))
    else {
        tracing::error!(schedule = %schedule.id, "a stored schedule no longer parses");
        return false;
    };
    // An upgrade that no longer lets the action be scheduled (or a revoked publisher) stops
    // its ticks from running: each is skipped and counted.
    let declared = queue::declared(app, &tenant, &installation, &schedule.action).await;
    let schedulable = declared.as_ref().is_some_and(|a| a.schedulable);
    if !schedulable {
        tracing::warn!(schedule = %schedule.id, "the installed version does not let this action be scheduled: tick skipped");
    }
    let max_attempts = queue::attempts(app, declared.as_ref());
    let pending_limit = app.limits.tenant_runs;
    let app = app.clone();
    let fired = tokio::task::spawn_blocking(move || {
        // Judging a long outage of a fast schedule walks many ticks: off the async workers.
        let now = clock::now_unix_ms();
        let judged = timetable.judge(due, now);
        let id = queue::tick_run_id(&schedule.id, judged.latest);
        let run = (judged.runs && schedulable).then(|| NewRun {
            id: &id,
            tenant: &tenant,
            installation: &installation,
            action: &schedule.action,
            trigger: RunTrigger::Schedule,
            max_attempts,
            now,
            pending_limit,
            tick: Some(judged.latest),
        });
        let tick = Tick {
            schedule: &schedule.id,
            due,
            latest: judged.latest,
            next: judged.next,
            missed: judged.missed,
            run,
            now,
        };
        let (moved, skipped) = match app.store.fire_schedule(&tick) {
            Ok(Fired::Queued(_)) => {
                app.schedule_ticks_fired.fetch_add(1, Ordering::Relaxed);
                app.runs_queued.notify_one();
                (true, judged.missed)
            }
            Ok(Fired::Skipped) => (true, judged.missed + 1),
            Ok(Fired::Taken) => (true, 0),
            Err(e) => {
                tracing::warn!(schedule = %schedule.id, error = %e, "cannot fire a schedule");
                (false, 0)
            }
        };
        app.schedule_ticks_missed
            .fetch_add(skipped, Ordering::Relaxed);
        moved
    })
    .await;
    fired.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "firing a schedule failed");
        false
    })
}

async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&App) -> Result<T, StoreError> + Send + 'static,
) -> Option<T> {
    let app = app.clone();
    match tokio::task::spawn_blocking(move || f(&app)).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the schedules");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the schedules failed");
            None
        }
    }
}
