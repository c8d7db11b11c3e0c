//! Runs on sled: all of it in one tree under prefixed keys, written with one atomic batch per
//! change while the store's run lock is held (one process opens the data dir): the record, the
//! sealed input, a wake index (when a queued run is due or a running run's claim lapses) and
//! the history indexes (per tenant and per installation, oldest first), each tenant's count of
//! pending runs and the index of dead runs' inputs that retention destroys.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use airlock_host_api::credentials::vault::Sealed;

use super::{
    Claim, ClaimedRun, NewRun, Requeued, RunEnd, RunQuery, RunRecord, claim, decode, encode,
    expire_input, expires, finish, holds, matches, open_run_input, pending, queued, requeue,
    seal_run_input, sealed_bytes, sealed_from,
};
use crate::traits::Runs;
use crate::{Store, StoreError};
use airlock_runtime::ids::{InstallationId, TenantId};

/// The one tree of runs on sled.
const RUNS: &str = "runs";
const RECORD: u8 = b'r';
const INPUT: u8 = b'i';
const WAKE: u8 = b'w';
const BY_TENANT: u8 = b't';
const BY_INSTALLATION: u8 = b'n';
const PENDING: u8 = b'p';
const EXPIRES: u8 = b'x';
/// Set once the pending counts and the expiry index cover every run (runs queued before they
/// were kept are counted on the first open after).
const INDEXED: &[u8] = b"m-indexed-v1";

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

fn expires_key(since: u64, id: &str) -> Vec<u8> {
    key(EXPIRES, &[&since.to_be_bytes(), id.as_bytes()])
}

fn pending_key(tenant: &str) -> Vec<u8> {
    key(PENDING, &[tenant.as_bytes()])
}

/// How many runs of `tenant` are queued or running.
fn pending_of(tree: &sled::Tree, tenant: &str) -> Result<u64, StoreError> {
    Ok(tree
        .get(pending_key(tenant))?
        .and_then(|n| <[u8; 8]>::try_from(n.as_ref()).ok())
        .map_or(0, u64::from_be_bytes))
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
    pub(crate) fn runs_tree(&self) -> Result<sled::Tree, StoreError> {
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
        Self::stage_run(tree, &mut batch, before, run, input)?;
        tree.apply_batch(batch)?;
        tree.flush()?;
        Ok(())
    }

    /// Adds the writes of [`Self::put_run`] to `batch` (one run per batch: the tenant's
    /// pending count is read from the tree).
    pub(crate) fn stage_run(
        tree: &sled::Tree,
        batch: &mut sled::Batch,
        before: Option<&RunRecord>,
        run: &RunRecord,
        input: Option<&Sealed>,
    ) -> Result<(), StoreError> {
        if let Some(before) = before {
            if let Some(wake) = before.wakes() {
                batch.remove(wake_key(wake, &before.id));
            }
            if let Some(since) = expires(before) {
                batch.remove(expires_key(since, &before.id));
            }
        }
        if let Some(wake) = run.wakes() {
            batch.insert(wake_key(wake, &run.id), run.id.as_bytes());
        }
        if let Some(since) = expires(run) {
            batch.insert(expires_key(since, &run.id), run.id.as_bytes());
        }
        let was_pending = before.is_some_and(pending);
        if was_pending != pending(run) {
            let count = pending_of(tree, &run.tenant)?;
            let count = if was_pending {
                count.saturating_sub(1)
            } else {
                count + 1
            };
            batch.insert(pending_key(&run.tenant), &count.to_be_bytes());
        }
        if before.is_none() {
            for history in history_keys(run) {
                batch.insert(history, run.id.as_bytes());
            }
        }
        let input_key = key(INPUT, &[run.id.as_bytes()]);
        match input {
            Some(sealed) => batch.insert(input_key, sealed_bytes(sealed, &run.id)?),
            None if !run.input_kept => batch.remove(input_key),
            None => {}
        }
        batch.insert(key(RECORD, &[run.id.as_bytes()]), encode(run)?);
        Ok(())
    }

    /// The record of `new`, queued, if its id is free and its tenant below its pending limit.
    pub(crate) fn admit_run(tree: &sled::Tree, new: &NewRun<'_>) -> Result<RunRecord, StoreError> {
        if tree.contains_key(key(RECORD, &[new.id.as_bytes()]))? {
            return Err(StoreError::Exists {
                what: format!("run {}", new.id),
            });
        }
        if pending_of(tree, new.tenant.as_str())? >= new.pending_limit {
            return Err(StoreError::QueueFull {
                tenant: new.tenant.to_string(),
                limit: new.pending_limit,
            });
        }
        Ok(queued(new))
    }

    pub(crate) fn lock_runs(&self) -> std::sync::MutexGuard<'_, ()> {
        self.run_lock
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Builds each tenant's pending count and the index of dead runs' inputs from the records,
    /// once: a data dir written before they were kept has runs neither covers.
    pub(crate) fn index_runs(&self) -> Result<(), StoreError> {
        let _turn = self.lock_runs();
        let tree = self.runs_tree()?;
        if tree.contains_key(INDEXED)? {
            return Ok(());
        }
        let mut pending_of = std::collections::BTreeMap::<String, u64>::new();
        let mut batch = sled::Batch::default();
        for entry in tree.scan_prefix([RECORD]) {
            let (_, bytes) = entry?;
            let run = decode(&bytes)?;
            if pending(&run) {
                *pending_of.entry(run.tenant.clone()).or_default() += 1;
            }
            if let Some(since) = expires(&run) {
                batch.insert(expires_key(since, &run.id), run.id.as_bytes());
            }
        }
        for (tenant, count) in pending_of {
            batch.insert(pending_key(&tenant), &count.to_be_bytes());
        }
        batch.insert(INDEXED, &[]);
        tree.apply_batch(batch)?;
        tree.flush()?;
        Ok(())
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
        let mut pending_deleted = 0;
        for entry in tree.scan_prefix(&prefix) {
            let (_, id) = entry?;
            let id = String::from_utf8_lossy(&id).into_owned();
            let Some(run) = Self::stored_run(&tree, &id)? else {
                continue;
            };
            if let Some(wake) = run.wakes() {
                batch.remove(wake_key(wake, &id));
            }
            if let Some(since) = expires(&run) {
                batch.remove(expires_key(since, &id));
            }
            pending_deleted += u64::from(pending(&run));
            for history in history_keys(&run) {
                batch.remove(history);
            }
            batch.remove(key(INPUT, &[id.as_bytes()]));
            batch.remove(key(RECORD, &[id.as_bytes()]));
            deleted += 1;
        }
        let left = pending_of(&tree, tenant.as_str())?.saturating_sub(pending_deleted);
        match (installation, left) {
            (Some(_), 1..) => batch.insert(pending_key(tenant.as_str()), &left.to_be_bytes()),
            _ => batch.remove(pending_key(tenant.as_str())),
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
        let run = Self::admit_run(&tree, new)?;
        let sealed = seal_run_input(self, &run, input)?;
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
            let sealed = sealed_from(&sealed, &id)?;
            let mut run = before.clone();
            let claimed = claim(&mut run, now, lease);
            Self::put_run(&tree, Some(&before), &run, None)?;
            if let Claim::Attempt(claim) = claimed {
                let input = open_run_input(self, &before, &sealed)?;
                return Ok(Some(ClaimedRun { run, claim, input }));
            }
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

    fn retry_run(
        &self,
        tenant: &TenantId,
        id: &str,
        now: u64,
        pending_limit: u64,
    ) -> Result<Requeued, StoreError> {
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
        if pending_of(&tree, tenant.as_str())? >= pending_limit {
            return Err(StoreError::QueueFull {
                tenant: tenant.to_string(),
                limit: pending_limit,
            });
        }
        Self::put_run(&tree, Some(&before), &run, None)?;
        Ok(Requeued::Queued(Box::new(run)))
    }

    fn purge_run_inputs(&self, before: u64) -> Result<usize, StoreError> {
        let _pass = self.writing();
        let _turn = self.lock_runs();
        let tree = self.runs_tree()?;
        let mut purged = 0;
        for entry in tree.range(vec![EXPIRES]..expires_key(before, "")) {
            let (_, id) = entry?;
            let Some(old) = Self::stored_run(&tree, &String::from_utf8_lossy(&id))? else {
                continue;
            };
            let mut run = old.clone();
            if expire_input(&mut run, before) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{RunEnd, RunTrigger};
    use crate::traits::Tenants;

    /// A data dir written before the pending counts and the expiry index were kept: the first
    /// open builds them from the records.
    #[test]
    fn runs_stored_before_their_indexes_are_counted_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (data, key) = (dir.path().join("data"), dir.path().join("master.key"));
        let (acme, crm) = (
            "acme".parse::<TenantId>().expect("tenant"),
            "crm".parse::<InstallationId>().expect("installation"),
        );
        let new = |id: &'static str| NewRun {
            id,
            tenant: &acme,
            installation: &crm,
            action: "sync",
            trigger: RunTrigger::Api,
            max_attempts: 1,
            now: 100,
            pending_limit: 2,
            tick: None,
        };
        {
            let store = Store::open(&data, Some(&key)).expect("store");
            store.create_tenant(&acme).expect("tenant");
            store.enqueue_run(&new("run-1"), b"{}").expect("queue");
            store.enqueue_run(&new("run-2"), b"{}").expect("queue");
            let claimed = store
                .claim_run(100, Duration::from_secs(60))
                .expect("claim")
                .expect("due");
            let dead = RunEnd::Dead {
                outcome: "limit-timeout".into(),
            };
            assert!(
                store
                    .finish_run(&claimed.run.id, claimed.claim, &dead, 200)
                    .expect("end")
            );
            // What an older build left: no counts, no index, no mark.
            let tree = store.runs_tree().expect("tree");
            for key in [pending_key("acme"), INDEXED.to_vec()] {
                tree.remove(key).expect("remove");
            }
            for entry in tree.scan_prefix([EXPIRES]) {
                tree.remove(entry.expect("entry").0).expect("remove");
            }
        }
        let store = Store::open(&data, Some(&key)).expect("store");
        assert_eq!(
            pending_of(&store.runs_tree().expect("tree"), "acme").expect("count"),
            1
        );
        assert!(store.enqueue_run(&new("run-3"), b"{}").is_ok());
        assert!(
            matches!(
                store.enqueue_run(&new("run-4"), b"{}"),
                Err(StoreError::QueueFull { .. })
            ),
            "the run queued before counts"
        );
        assert_eq!(
            store.purge_run_inputs(201).expect("purge"),
            1,
            "the dead run's input"
        );
    }
}
