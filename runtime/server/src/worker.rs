//! The workers: each claims the run that woke first from the store's queue and invokes it,
//! under the same admission (the tenant's and the global caps) as API invocations, then ends
//! its attempt: succeeded, failed, queued again after a backoff, or dead (docs/api.md, "Runs").
//!
//! At least once: a run is claimed for [`LEASE`]; if its node dies the claim lapses and any
//! node's worker claims it again. Idle workers sleep until the next run wakes, at most
//! [`IDLE`], or until this node queues one.

use std::sync::Arc;
use std::time::Duration;

use airlock_host_api::audit::Trigger;
use airlock_runtime::clock;
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_store::runs::{ClaimedRun, RunEnd, RunRecord, RunTrigger};
use tokio::sync::watch;

use super::app::App;
use super::routes::invoke;

/// How long a claimed run is this node's before another may claim it again: longer than the
/// longest invocation the ceilings allow, with room to record its end.
pub const LEASE: Duration = Duration::from_secs(180);
/// The longest an idle worker sleeps before it looks again (runs queued by other nodes).
const IDLE: Duration = Duration::from_secs(1);
/// The first retry waits up to this long; each next one up to twice as long…
const BACKOFF_BASE_MS: u64 = 1_000;
/// …but never longer than this.
const BACKOFF_CAP_MS: u64 = 300_000;
/// Dead runs keep their input this long (for `retry`), then it is destroyed.
pub const DEAD_INPUT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Outcome classes worth another attempt: the failure may not happen again.
fn retryable(class: &str) -> bool {
    matches!(
        class,
        "limit-timeout" | "host-failure" | "audit-unavailable" | "busy" | "internal"
    )
}

/// Full jitter: a random wait up to the exponential bound of attempt `made` (1-based).
fn backoff(made: usize) -> u64 {
    let exponent = u32::try_from(made.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(20);
    let bound = BACKOFF_BASE_MS
        .saturating_mul(1 << exponent)
        .min(BACKOFF_CAP_MS);
    rand::random_range(0..=bound)
}

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
    let outcome = invoke_run(app, &run, String::from_utf8_lossy(&input).into_owned()).await;
    drop(input);
    let now = clock::now_unix_ms();
    let end = match outcome {
        Ok(()) => RunEnd::Succeeded {
            outcome: "ok".into(),
        },
        Err(class) if retryable(&class) && !run.last_attempt() => RunEnd::Retry {
            at: now + backoff(run.attempts_made()),
            outcome: class,
        },
        Err(class) if retryable(&class) => RunEnd::Dead { outcome: class },
        Err(class) => RunEnd::Failed { outcome: class },
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

/// Runs `run` with `input`: `Ok` when the action succeeded, else its outcome class.
async fn invoke_run(app: &Arc<App>, run: &RunRecord, input: String) -> Result<(), String> {
    let ids = run
        .tenant
        .parse::<TenantId>()
        .ok()
        .zip(run.installation.parse::<InstallationId>().ok());
    let Some((tenant, installation)) = ids else {
        return Err("not-found".into());
    };
    let trigger = match run.trigger {
        RunTrigger::Webhook => Trigger::Webhook,
        RunTrigger::Api | RunTrigger::Schedule | RunTrigger::Retry => Trigger::Api,
    };
    let ready = invoke::prepare(app, tenant, installation, None, trigger)
        .await
        .map_err(|e| e.code().to_string())?;
    let invocation = invoke::run(app.clone(), ready, run.action.clone(), input)
        .await
        .map_err(|e| e.code().to_string())?;
    invocation
        .result
        .map(drop)
        .map_err(|e| e.class().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_below_a_doubling_bound_and_capped() {
        for made in 1..30 {
            let bound = (BACKOFF_BASE_MS << (made - 1).min(20)).min(BACKOFF_CAP_MS);
            for _ in 0..50 {
                assert!(backoff(made) <= bound, "attempt {made}");
            }
        }
        let draws: std::collections::HashSet<u64> = (0..50).map(|_| backoff(5)).collect();
        assert!(draws.len() > 10, "full jitter spreads the waits: {draws:?}");
    }

    #[test]
    fn only_failures_that_may_pass_are_retried() {
        assert!(retryable("limit-timeout"));
        assert!(!retryable("input-rejected"));
        assert!(!retryable("guest-trap"));
        assert!(!retryable("unknown-action"));
    }
}
