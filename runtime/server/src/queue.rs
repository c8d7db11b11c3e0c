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
use airlock_store::runs::{NewRun, RunRecord, RunTrigger};

/// A new run's id: `run_` and 24 random hex digits.
pub(crate) fn new_run_id() -> String {
    format!("run_{}", hex::encode(rand::random::<[u8; 12]>()))
}

/// The id of the run a webhook delivery queues: one per endpoint and delivery id, so a
/// delivery queued twice (a replay racing its original) is refused as existing.
pub(crate) fn delivery_run_id(endpoint: &str, delivery: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(b"airlock-delivery-run\0")
        .chain_update(endpoint.as_bytes())
        .chain_update(b"\0")
        .chain_update(delivery.as_bytes())
        .finalize();
    format!("run_{}", hex::encode(&digest[..12]))
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
    let declared = loaded.integration.manifest().manifest.action(action);
    let new = NewRun {
        id,
        tenant,
        installation,
        action,
        trigger,
        max_attempts: declared.map_or(1, |a| a.attempts(app.limits.max_attempts)),
        now: clock::now_unix_ms(),
        pending_limit: app.limits.tenant_runs,
    };
    let run = app.store.enqueue_run(&new, input.as_bytes())?;
    app.runs_queued.notify_one();
    Ok(run)
}
