//! Runs: the durable work queue and its history. A run is metadata (what, when, how it went)
//! plus its input, sealed with the tenant's data key and kept apart, only while the run may
//! still execute or be retried.
//!
//! The record, its changes and the sealing are shared by both stores; [`on_sled`] keeps them in
//! the embedded database.

mod on_sled;

use std::time::Duration;

use airlock_host_api::credentials::vault::{InputAad, InputOwner, Sealed};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub(crate) use self::on_sled::RunLock;
use crate::StoreError;
use crate::keys::{DATA_KEY_VERSION, TenantKeys};
use airlock_runtime::ids::{InstallationId, TenantId};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Waiting for a worker (first attempt, or a retry once its backoff ends).
    Queued,
    /// Claimed by a worker; queued again if its claim lapses (the worker died).
    Running,
    Succeeded,
    /// Failed with an outcome that is not retried.
    Failed,
    /// Out of attempts; `retry` queues it again while its input is kept.
    Dead,
}

impl RunStatus {
    /// The status as the API and the database spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    /// Whether the run has ended (and holds no claim).
    pub fn ended(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Dead)
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Queued,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Dead,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| {
            format!("unknown run status {s:?}: one of queued, running, succeeded, failed, dead")
        })
    }
}

/// What queued a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunTrigger {
    Api,
    Webhook,
    Schedule,
    Retry,
}

impl RunTrigger {
    /// The trigger as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Webhook => "webhook",
            Self::Schedule => "schedule",
            Self::Retry => "retry",
        }
    }
}

/// One attempt: when it started and ended, and its outcome class (`ok`, `upstream-5xx`,
/// `limit-timeout`, a guest error code…), never its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub started: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// A run as kept: metadata only. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub tenant: String,
    pub installation: String,
    pub action: String,
    pub trigger: RunTrigger,
    pub status: RunStatus,
    pub max_attempts: u32,
    pub attempts: Vec<Attempt>,
    pub created: u64,
    pub updated: u64,
    /// When a queued run is due (its backoff ends).
    pub not_before: u64,
    /// When a running run's claim lapses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<u64>,
    /// Whether its input is still kept (a run without one cannot run or be retried).
    pub input_kept: bool,
    /// Attempts made before the last `retry`: each retry gets `max_attempts` more.
    #[serde(default)]
    pub retried_after: usize,
    /// The schedule's tick that queued it (trigger `schedule`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick: Option<u64>,
}

impl RunRecord {
    /// Attempts made since the run was queued or last retried.
    pub fn attempts_made(&self) -> usize {
        self.attempts.len().saturating_sub(self.retried_after)
    }

    /// Whether the attempt under way is the last this run may make before it is dead.
    pub fn last_attempt(&self) -> bool {
        self.attempts_made() >= usize::try_from(self.max_attempts).unwrap_or(usize::MAX)
    }

    /// When the run can next be claimed, if ever: a queued run when due, a running one when
    /// its claim lapses.
    pub fn wakes(&self) -> Option<u64> {
        match self.status {
            RunStatus::Queued => Some(self.not_before),
            RunStatus::Running => self.lease_until,
            _ => None,
        }
    }
}

/// A run to queue.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub id: &'a str,
    pub tenant: &'a TenantId,
    pub installation: &'a InstallationId,
    pub action: &'a str,
    pub trigger: RunTrigger,
    pub max_attempts: u32,
    pub now: u64,
    /// The most runs the tenant may have queued or running: past it, [`StoreError::QueueFull`].
    pub pending_limit: u64,
    /// The schedule's tick that queues it.
    pub tick: Option<u64>,
}

/// A run a worker claimed: the record (status running, its attempt begun), its claim token
/// and its input, opened.
pub struct ClaimedRun {
    pub run: RunRecord,
    /// The attempt's number: [`Runs::finish_run`] with an older one is refused, so a worker
    /// whose claim lapsed cannot overwrite the attempt that replaced it.
    pub claim: u32,
    pub input: Zeroizing<Vec<u8>>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    Succeeded {
        outcome: String,
    },
    /// Not retried.
    Failed {
        outcome: String,
    },
    /// Retried at `at` (Unix ms).
    Retry {
        outcome: String,
        at: u64,
    },
    /// Out of attempts.
    Dead {
        outcome: String,
    },
}

/// Which runs to list, oldest first, after `after` (a run id, for the next page).
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub installation: Option<String>,
    pub status: Option<RunStatus>,
    /// Only runs created at or after (Unix ms).
    pub since: Option<u64>,
    pub after: Option<String>,
    pub limit: usize,
}

/// What `retry` made of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeued {
    Queued(Box<RunRecord>),
    /// Not dead or failed: only an ended, unsuccessful run is retried.
    NotEnded(RunStatus),
    /// Its input is gone (retention ended, or the tenant's key): nothing to run.
    InputGone,
    NoSuchRun,
}

/// Seals an action input for `owner` (run or schedule) `id` with the tenant's data key.
pub(crate) fn seal_input(
    keys: &impl TenantKeys,
    owner: InputOwner,
    tenant: &TenantId,
    installation: &str,
    id: &str,
    input: &[u8],
) -> Result<Sealed, StoreError> {
    let aad = InputAad {
        owner,
        tenant: tenant.as_str(),
        installation,
        id,
        key_version: DATA_KEY_VERSION,
    };
    Ok(keys.sealing_key(tenant)?.seal(&aad, input))
}

/// Opens what [`seal_input`] sealed.
pub(crate) fn open_input(
    keys: &impl TenantKeys,
    owner: InputOwner,
    tenant: &str,
    installation: &str,
    id: &str,
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let gone = || StoreError::Decrypt {
        what: format!("the input of {id}"),
    };
    let tenant_id: TenantId = tenant.parse().map_err(|_| gone())?;
    let key = keys.tenant_key(&tenant_id, false)?.ok_or_else(gone)?;
    let aad = InputAad {
        owner,
        tenant,
        installation,
        id,
        key_version: sealed.key_version,
    };
    key.open(&aad, sealed).map_err(|_| gone())
}

/// A sealed input as stored.
pub(crate) fn sealed_bytes(sealed: &Sealed, id: &str) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(sealed).map_err(|_| StoreError::Corrupt {
        what: format!("the input of {id}"),
    })
}

/// A sealed input as [`sealed_bytes`] stored it.
pub(crate) fn sealed_from(bytes: &[u8], id: &str) -> Result<Sealed, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        what: format!("the input of {id}"),
    })
}

/// Seals `input` as the input of `run`.
pub(crate) fn seal_run_input(
    keys: &impl TenantKeys,
    run: &RunRecord,
    input: &[u8],
) -> Result<Sealed, StoreError> {
    let tenant: TenantId = run.tenant.parse().map_err(|_| StoreError::Corrupt {
        what: format!("the tenant of run {}", run.id),
    })?;
    seal_input(
        keys,
        InputOwner::Run,
        &tenant,
        &run.installation,
        &run.id,
        input,
    )
}

/// Opens the input of `run`.
pub(crate) fn open_run_input(
    keys: &impl TenantKeys,
    run: &RunRecord,
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    open_input(
        keys,
        InputOwner::Run,
        &run.tenant,
        &run.installation,
        &run.id,
        sealed,
    )
}

/// A fresh run record, queued.
pub(crate) fn queued(new: &NewRun<'_>) -> RunRecord {
    RunRecord {
        id: new.id.to_string(),
        tenant: new.tenant.to_string(),
        installation: new.installation.to_string(),
        action: new.action.to_string(),
        trigger: new.trigger,
        status: RunStatus::Queued,
        max_attempts: new.max_attempts.max(1),
        attempts: Vec::new(),
        created: new.now,
        updated: new.now,
        not_before: new.now,
        lease_until: None,
        input_kept: true,
        retried_after: 0,
        tick: new.tick,
    }
}

/// What claiming a due run made of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Running, a new attempt begun: its claim token.
    Attempt(u32),
    /// Its claim lapsed on its last attempt: dead, not run again, so a run whose attempts
    /// kill their node cannot take the cluster down one node at a time.
    Dead,
}

/// `run` claimed at `now` for `lease`.
pub(crate) fn claim(run: &mut RunRecord, now: u64, lease: Duration) -> Claim {
    run.updated = now;
    // A claim that lapsed ends its attempt as abandoned: the worker died or stalled.
    if run.status == RunStatus::Running
        && let Some(last) = run.attempts.last_mut()
        && last.ended.is_none()
    {
        last.ended = Some(now);
        last.outcome = Some("abandoned".into());
        if run.last_attempt() {
            run.status = RunStatus::Dead;
            run.lease_until = None;
            return Claim::Dead;
        }
    }
    run.status = RunStatus::Running;
    run.attempts.push(Attempt {
        started: now,
        ended: None,
        outcome: None,
    });
    run.lease_until = Some(now + u64::try_from(lease.as_millis()).unwrap_or(u64::MAX / 2));
    Claim::Attempt(u32::try_from(run.attempts.len()).unwrap_or(u32::MAX))
}

/// Whether `run` counts against its tenant's pending limit: queued or running.
pub(crate) fn pending(run: &RunRecord) -> bool {
    !run.status.ended()
}

/// Whether `run` holds an input that retention will destroy: dead, input kept. When
/// (`updated`) it became so.
pub(crate) fn expires(run: &RunRecord) -> Option<u64> {
    (run.status == RunStatus::Dead && run.input_kept).then_some(run.updated)
}

/// Whether `claim` is the claim `run` holds now.
pub(crate) fn holds(run: &RunRecord, claim: u32) -> bool {
    run.status == RunStatus::Running
        && u32::try_from(run.attempts.len()).unwrap_or(u32::MAX) == claim
}

/// `run` after its attempt ended as `end` at `now`.
pub(crate) fn finish(run: &mut RunRecord, end: &RunEnd, now: u64) {
    let (status, outcome) = match end {
        RunEnd::Succeeded { outcome } => (RunStatus::Succeeded, outcome),
        RunEnd::Failed { outcome } => (RunStatus::Failed, outcome),
        RunEnd::Dead { outcome } => (RunStatus::Dead, outcome),
        RunEnd::Retry { outcome, at } => {
            run.not_before = *at;
            (RunStatus::Queued, outcome)
        }
    };
    if let Some(last) = run.attempts.last_mut() {
        last.ended = Some(now);
        last.outcome = Some(outcome.clone());
    }
    run.status = status;
    run.lease_until = None;
    run.updated = now;
    // A dead run keeps its input for `retry` until retention ends; the others need it no more.
    if matches!(status, RunStatus::Succeeded | RunStatus::Failed) {
        run.input_kept = false;
    }
}

/// Destroys the input of `run` if it is dead and last changed before `before`; whether it did.
pub(crate) fn expire_input(run: &mut RunRecord, before: u64) -> bool {
    let expired = expires(run).is_some_and(|since| since < before);
    if expired {
        run.input_kept = false;
    }
    expired
}

/// `run` queued again by `retry` at `now`, if it can be.
pub(crate) fn requeue(run: &mut RunRecord, now: u64) -> Result<(), Requeued> {
    if !matches!(run.status, RunStatus::Dead | RunStatus::Failed) {
        return Err(Requeued::NotEnded(run.status));
    }
    if !run.input_kept {
        return Err(Requeued::InputGone);
    }
    run.status = RunStatus::Queued;
    run.trigger = RunTrigger::Retry;
    run.not_before = now;
    run.updated = now;
    // A retried run gets its `max_attempts` again.
    run.retried_after = run.attempts.len();
    Ok(())
}

pub(crate) fn encode(run: &RunRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(run).map_err(|_| StoreError::Corrupt {
        what: format!("run {}", run.id),
    })
}

pub(crate) fn decode(bytes: &[u8]) -> Result<RunRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        what: "a run record".into(),
    })
}

/// Whether `run` is one `query` asks for (apart from paging).
pub(crate) fn matches(run: &RunRecord, query: &RunQuery) -> bool {
    query
        .installation
        .as_ref()
        .is_none_or(|i| *i == run.installation)
        && query.status.is_none_or(|s| s == run.status)
        && query.since.is_none_or(|since| run.created >= since)
}
