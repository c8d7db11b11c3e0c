//! The one way a run enters the queue, whatever queued it (`?async=true`, a webhook delivery,
//! a schedule's tick): the action and the input are checked first, so a run that could never
//! start is not queued; its attempts are the action's, within the operator's ceiling; and the
//! tenant's limit on pending runs holds (docs/api.md, "Runs").

use std::sync::Arc;

use crate::app::App;
use crate::error::ApiError;
use airlock_runtime::clock;
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_runtime::invoke::check_input;
use airlock_runtime::manifest::Action;
use airlock_store::runs::{NewRun, RunRecord, RunTrigger};

/// A new run's id: `run_` and 24 random hex digits.
pub(crate) fn new_run_id() -> String {
    format!("run_{}", hex::encode(rand::random::<[u8; 12]>()))
}

/// The id of the run a webhook delivery queues: one per endpoint and delivery id, so a
/// delivery queued twice (a replay racing its original) is refused as existing.
pub(crate) fn delivery_run_id(endpoint: &str, delivery: &str) -> String {
    derived_id(&[
        b"airlock-delivery-run",
        endpoint.as_bytes(),
        delivery.as_bytes(),
    ])
}

/// The id of the run a schedule's tick queues: one per schedule and tick.
pub(crate) fn tick_run_id(schedule: &str, tick: u64) -> String {
    derived_id(&[
        b"airlock-tick-run",
        schedule.as_bytes(),
        &tick.to_be_bytes(),
    ])
}

fn derived_id(parts: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for part in parts {
        hash.update(part);
        hash.update(b"\0");
    }
    format!("run_{}", hex::encode(&hash.finalize()[..12]))
}

/// The installed version's declaration of `action`, if the installation loads (its code
/// still trusted) and declares it.
pub(crate) async fn declared(
    app: &Arc<App>,
    tenant: &TenantId,
    installation: &InstallationId,
    action: &str,
) -> Option<Action> {
    let loaded = app.installed(tenant, installation).await.ok()?;
    loaded
        .integration
        .manifest()
        .manifest
        .action(action)
        .cloned()
}

/// Attempts a run of `action` makes: its manifest's, within the operator's ceiling.
pub(crate) fn attempts(app: &App, action: Option<&Action>) -> u32 {
    action.map_or(1, |a| a.attempts(app.limits.max_attempts))
}

/// Queues `action` of the installation with `input` as run `id`, as `trigger` asks, and
/// wakes a worker.
pub(crate) async fn enqueue(
    app: &Arc<App>,
    id: &str,
    tenant: &TenantId,
    installation: &InstallationId,
    action: &str,
    input: &str,
    trigger: RunTrigger,
) -> Result<RunRecord, ApiError> {
    let loaded = app.installed(tenant, installation).await?;
    check_input(&loaded.integration, action, input).map_err(|e| ApiError::invoke_error(&e))?;
    let new = NewRun {
        id,
        tenant,
        installation,
        action,
        trigger,
        max_attempts: attempts(app, loaded.integration.manifest().manifest.action(action)),
        now: clock::now_unix_ms(),
        pending_limit: app.limits.tenant_runs,
        tick: None,
    };
    let run = app.store.enqueue_run(&new, input.as_bytes())?;
    app.runs_queued.notify_one();
    Ok(run)
}
