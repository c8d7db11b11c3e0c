//! Runs: the durable work queue and its history. A run is metadata (what, when, how it went)
//! plus its input, sealed with the tenant's data key and kept apart, only while the run may
//! still execute or be retried.
//!
//! On sled all of it lives in one tree under prefixed keys, written with one atomic batch per
//! change while the store's run lock is held (one process opens the data dir): the record, the
//! sealed input, a wake index (when a queued run is due or a running run's claim lapses) and
//! the history indexes (per tenant and per installation, newest last).
//!
//! The record and the sealing are shared with the PostgreSQL store.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use airlock_host_api::credentials::vault::{RunInputAad, Sealed};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::keys::{DATA_KEY_VERSION, TenantKeys};
use super::{Store, StoreError};
use crate::traits::Runs;
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
}

impl RunRecord {
    /// Whether the attempt under way is the last this run may make before it is dead.
    pub fn last_attempt(&self) -> bool {
        let made = self.attempts.len().saturating_sub(self.retried_after);
        made >= usize::try_from(self.max_attempts).unwrap_or(usize::MAX)
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

pub(crate) fn seal_input(
    keys: &impl TenantKeys,
    tenant: &TenantId,
    installation: &str,
    run: &str,
    input: &[u8],
) -> Result<Sealed, StoreError> {
    let aad = RunInputAad {
        tenant: tenant.as_str(),
        installation,
        run,
        key_version: DATA_KEY_VERSION,
    };
    Ok(keys.sealing_key(tenant)?.seal(&aad, input))
}

pub(crate) fn open_input(
    keys: &impl TenantKeys,
    run: &RunRecord,
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let gone = || StoreError::Decrypt {
        what: format!("the input of run {}", run.id),
    };
    let tenant: TenantId = run.tenant.parse().map_err(|_| gone())?;
    let key = keys.tenant_key(&tenant, false)?.ok_or_else(gone)?;
    let aad = RunInputAad {
        tenant: &run.tenant,
        installation: &run.installation,
        run: &run.id,
        key_version: sealed.key_version,
    };
    key.open(&aad, sealed).map_err(|_| gone())
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
    }
}

/// `run` claimed at `now` for `lease`: running, a new attempt begun. Its claim token.
pub(crate) fn claim(run: &mut RunRecord, now: u64, lease: Duration) -> u32 {
    // A claim that lapsed ends its attempt as abandoned: the worker died or stalled.
    if run.status == RunStatus::Running
        && let Some(last) = run.attempts.last_mut()
        && last.ended.is_none()
    {
        last.ended = Some(now);
        last.outcome = Some("abandoned".into());
    }
    run.status = RunStatus::Running;
    run.attempts.push(Attempt {
        started: now,
        ended: None,
        outcome: None,
    });
    run.lease_until = Some(now + u64::try_from(lease.as_millis()).unwrap_or(u64::MAX / 2));
    run.updated = now;
    u32::try_from(run.attempts.len()).unwrap_or(u32::MAX)
}

/// Whether `claim` is the claim `run` holds now.
pub(crate) fn holds(run: &RunRecord, claim: u32) -> bool {
    run.status == RunStatus::Running
        && u32::try_from(run.attempts.len()).unwrap_or(u32::MAX) == claim
}

/// `run` after its attempt ended as `end` at `now`; whether its input must go.
pub(crate) fn finish(run: &mut RunRecord, end: &RunEnd, now: u64) -> bool {
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
    let drop_input = matches!(status, RunStatus::Succeeded | RunStatus::Failed);
    if drop_input {
        run.input_kept = false;
    }
    drop_input
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

/// The one tree of runs on sled.
const RUNS: &str = "runs";
const RECORD: u8 = b'r';
const INPUT: u8 = b'i';
const WAKE: u8 = b'w';
const BY_TENANT: u8 = b't';
const BY_INSTALLATION: u8 = b'n';

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut key = vec![prefix];
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

fn wake_key(at: u64, id: &str) -> Vec<u8> {
    key(WAKE, &[&at.to_be_bytes(), id.as_bytes()])
}

/// The prefix of a tenant's history, or of one installation's.
fn history_prefix(tenant: &str, installation: Option<&str>) -> Vec<u8> {
    match installation {
        Some(installation) => key(
            BY_INSTALLATION,
            &[tenant.as_bytes(), b"\0", installation.as_bytes(), b"\0"],
        ),
        None => key(BY_TENANT, &[tenant.as_bytes(), b"\0"]),
    }
}

fn history_keys(run: &RunRecord) -> [Vec<u8>; 2] {
    let at = run.created.to_be_bytes();
    [None, Some(run.installation.as_str())].map(|installation| {
        let mut key = history_prefix(&run.tenant, installation);
        key.extend_from_slice(&at);
        key.extend_from_slice(run.id.as_bytes());
        key
    })
}

/// The store's lock for run changes: sled admits one process, so one lock orders them.
#[derive(Default)]
pub(crate) struct RunLock(Mutex<()>);

impl Store {
    fn runs_tree(&self) -> Result<sled::Tree, StoreError> {
        self.tree(RUNS)
    }

    fn stored_run(tree: &sled::Tree, id: &str) -> Result<Option<RunRecord>, StoreError> {
        tree.get(key(RECORD, &[id.as_bytes()]))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// Writes `run` as changed from `before`: its record, its wake entry, and `input` (kept,
    /// written or destroyed), in one batch.
    fn put_run(
        tree: &sled::Tree,
        before: Option<&RunRecord>,
        run: &RunRecord,
        input: Option<&Sealed>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        if let Some(before) = before
            && let Some(wake) = before.wakes()
        {
            batch.remove(wake_key(wake, &before.id));
        }
        if let Some(wake) = run.wakes() {
            batch.insert(wake_key(wake, &run.id), run.id.as_bytes());
        }
        if before.is_none() {
            for history in history_keys(run) {
                batch.insert(history, run.id.as_bytes());
            }
        }
        let input_key = key(INPUT, &[run.id.as_bytes()]);
        match input {
            Some(sealed) => {
                let bytes = serde_json::to_vec(sealed).map_err(|_| StoreError::Corrupt {
                    what: format!("the input of run {}", run.id),
                })?;
                batch.insert(input_key, bytes);
            }
            None if !run.input_kept => batch.remove(input_key),
            None => {}
        }
        batch.insert(key(RECORD, &[run.id.as_bytes()]), encode(run)?);
        tree.apply_batch(batch)?;
        tree.flush()?;
        Ok(())
    }

    fn lock_runs(&self) -> std::sync::MutexGuard<'_, ()> {
        self.run_lock
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes every run of `tenant`, or of one of its installations, with inputs and indexes.
    pub(crate) fn delete_runs_of(
        &self,
        tenant: &TenantId,
        installation: Option<&InstallationId>,
    ) -> Result<u64, StoreError> {
        let _turn = self.lock_runs();
        let tree = self.runs_tree()?;
        let prefix = history_prefix(tenant.as_str(), installation.map(InstallationId::as_str));
        let mut batch = sled::Batch::default();
        let mut deleted = 0;
        for entry in tree.scan_prefix(&prefix) {
            let (_, id) = entry?;
            let id = String::from_utf8_lossy(&id).into_owned();
            let Some(run) = Self::stored_run(&tree, &id)? else {
                continue;
            };
            if let Some(wake) = run.wakes() {
                batch.remove(wake_key(wake, &id));
            }
            for history in history_keys(&run) {
                batch.remove(history);
            }
            batch.remove(key(INPUT, &[id.as_bytes()]));
            batch.remove(key(RECORD, &[id.as_bytes()]));
            deleted += 1;
        }
        tree.apply_batch(batch)?;
        tree.flush()?;
        Ok(deleted)
    }
}

impl Runs for Store {
    fn enqueue_run(&self, new: &NewRun<'_>, input: &[u8]) -> Result<RunRecord, StoreError> {
        let _pass = self.writing();
        let _turn = self.lock_runs();
        let tree = self.runs_tree()?;
        if tree.contains_key(key(RECORD, &[new.id.as_bytes()]))? {
            return Err(StoreError::Exists {
                what: format!("run {}", new.id),
            });
        }
        let run = queued(new);
        let sealed = seal_input(self, new.tenant, &run.installation, &run.id, input)?;
        Self::put_run(&tree, None, &run, Some(&sealed))?;
        Ok(run)
    }

    fn claim_run(&self, now: u64, lease: Duration) -> Result<Option<ClaimedRun>, StoreError> {
        let _pass = self.writing();
        let _turn = self.lock_runs();
        let tree = self.runs_tree()?;
        let end = wake_key(now, "\u{10FFFF}");
        for entry in tree.range(vec![WAKE]..end) {
            let (_, id) = entry?;
            let id = String::from_utf8_lossy(&id).into_owned();
            let Some(before) = Self::stored_run(&tree, &id)? else {
                continue;
            };
            let Some(sealed) = tree.get(key(INPUT, &[id.as_bytes()]))? else {
                continue;
            };
            let sealed: Sealed =
                serde_json::from_slice(&sealed).map_err(|_| StoreError::Corrupt {
                    what: format!("the input of run {id}"),
                })?;
            let input = open_input(self, &before, &sealed)?;
            let mut run = before.clone();
            let claim = claim(&mut run, now, lease);
            Self::put_run(&tree, Some(&before), &run, None)?;
            return Ok(Some(ClaimedRun { run, claim, input }));
        }
        Ok(None)
    }

    fn finish_run(&self, id: &str, claim: u32, end: &RunEnd, now: u64) -> Result<bool, StoreError> {
        let _pass = self.writing();
        let _turn = self.lock_runs();
        let tree = self.runs_tree()?;
        let Some(before) = Self::stored_run(&tree, id)? else {
            return Ok(false);
        };
        if !holds(&before, claim) {
            return Ok(false);
        }
        let mut run = before.clone();
        finish(&mut run, end, now);
        Self::put_run(&tree, Some(&before), &run, None)?;
        Ok(true)
    }

    fn run(&self, tenant: &TenantId, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let tree = self.runs_tree()?;
        Ok(Self::stored_run(&tree, id)?.filter(|run| run.tenant == tenant.as_str()))
    }

    fn runs(&self, tenant: &TenantId, query: &RunQuery) -> Result<Vec<RunRecord>, StoreError> {
        let tree = self.runs_tree()?;
        let prefix = history_prefix(tenant.as_str(), query.installation.as_deref());
        let mut start = prefix.clone();
        match &query.after {
            Some(after) => match self.run(tenant, after)? {
                Some(run) => {
                    start.extend_from_slice(&run.created.to_be_bytes());
                    start.extend_from_slice(run.id.as_bytes());
                    start.push(0);
                }
                None => return Ok(Vec::new()),
            },
            None => start.extend_from_slice(&query.since.unwrap_or(0).to_be_bytes()),
        }
        let mut runs = Vec::new();
        for entry in tree.range(start..) {
            let (history, id) = entry?;
            if !history.starts_with(&prefix) || runs.len() >= query.limit {
                break;
            }
            let id = String::from_utf8_lossy(&id);
            if let Some(run) = Self::stored_run(&tree, &id)?
                && matches(&run, query)
            {
                runs.push(run);
            }
        }
        Ok(runs)
    }

    fn retry_run(&self, tenant: &TenantId, id: &str, now: u64) -> Result<Requeued, StoreError> {
        let _pass = self.writing();
        let _turn = self.lock_runs();
        let tree = self.runs_tree()?;
        let Some(before) = Self::stored_run(&tree, id)?.filter(|r| r.tenant == tenant.as_str())
        else {
            return Ok(Requeued::NoSuchRun);
        };
        let mut run = before.clone();
        if let Err(refused) = requeue(&mut run, now) {
            return Ok(refused);
        }
        Self::put_run(&tree, Some(&before), &run, None)?;
        Ok(Requeued::Queued(Box::new(run)))
    }

    fn purge_run_inputs(&self, before: u64) -> Result<usize, StoreError> {
        let _pass = self.writing();
        let _turn = self.lock_runs();
        let tree = self.runs_tree()?;
        let mut purged = 0;
        for entry in tree.scan_prefix([RECORD]) {
            let (_, bytes) = entry?;
            let old = decode(&bytes)?;
            if old.status == RunStatus::Dead && old.input_kept && old.updated < before {
                let mut run = old.clone();
                run.input_kept = false;
                Self::put_run(&tree, Some(&old), &run, None)?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    fn delete_runs(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<u64, StoreError> {
        let _pass = self.writing();
        self.delete_runs_of(tenant, Some(installation))
    }

    fn next_run_wake(&self) -> Result<Option<u64>, StoreError> {
        let tree = self.runs_tree()?;
        Ok(tree
            .scan_prefix([WAKE])
            .next()
            .transpose()?
            .and_then(|(key, _)| key.get(1..9).map(|b| b.try_into().map(u64::from_be_bytes)))
            .and_then(Result::ok))
    }
}
