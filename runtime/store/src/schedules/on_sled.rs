//! Schedules on sled: in the runs tree, under their own prefixes, so firing a tick (the
//! schedule advanced, its run queued) is one atomic batch under the store's run lock.

use super::{
    Fired, Handled, NewSchedule, ScheduleRecord, Tick, advance, created, decode, encode, pause,
    reseal_for, waits_for,
};
use crate::runs::{sealed_bytes, sealed_from};
use crate::traits::Schedules;
use crate::{Store, StoreError};
use airlock_runtime::ids::{InstallationId, TenantId};

const SCHEDULE: u8 = b's';
const SCHEDULE_INPUT: u8 = b'v';
/// Due index: next tick, then id.
const DUE: u8 = b'd';
/// Per installation: tenant, installation, id.
const BY_INSTALLATION: u8 = b'q';

fn record_key(id: &str) -> Vec<u8> {
    [&[SCHEDULE], id.as_bytes()].concat()
}

fn input_key(id: &str) -> Vec<u8> {
    [&[SCHEDULE_INPUT], id.as_bytes()].concat()
}

fn due_key(at: u64, id: &str) -> Vec<u8> {
    [&[DUE][..], &at.to_be_bytes(), id.as_bytes()].concat()
}

fn owner_prefix(tenant: &str, installation: Option<&str>) -> Vec<u8> {
    let mut key = [&[BY_INSTALLATION], tenant.as_bytes(), b"\0"].concat();
    if let Some(installation) = installation {
        key.extend_from_slice(installation.as_bytes());
        key.push(0);
    }
    key
}

fn owner_key(schedule: &ScheduleRecord) -> Vec<u8> {
    let mut key = owner_prefix(&schedule.tenant, Some(&schedule.installation));
    key.extend_from_slice(schedule.id.as_bytes());
    key
}

impl Store {
    fn stored_schedule(tree: &sled::Tree, id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        tree.get(record_key(id))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// Adds `schedule` as changed from `before` to `batch`: its record and due entry.
    fn stage_schedule(
        batch: &mut sled::Batch,
        before: Option<&ScheduleRecord>,
        schedule: &ScheduleRecord,
    ) -> Result<(), StoreError> {
        if let Some(at) = before.and_then(|b| b.next_tick) {
            batch.remove(due_key(at, &schedule.id));
        }
        if let Some(at) = schedule.next_tick {
            batch.insert(due_key(at, &schedule.id), schedule.id.as_bytes());
        }
        batch.insert(owner_key(schedule), schedule.id.as_bytes());
        batch.insert(record_key(&schedule.id), encode(schedule)?);
        Ok(())
    }

    fn apply(tree: &sled::Tree, batch: sled::Batch) -> Result<(), StoreError> {
        tree.apply_batch(batch)?;
        tree.flush()?;
        Ok(())
    }

    /// Adds the removal of `schedule`, its input and indexes to `batch`.
    fn unstage_schedule(batch: &mut sled::Batch, schedule: &ScheduleRecord) {
        if let Some(at) = schedule.next_tick {
            batch.remove(due_key(at, &schedule.id));
        }
        batch.remove(owner_key(schedule));
        batch.remove(input_key(&schedule.id));
        batch.remove(record_key(&schedule.id));
    }

    /// Removes every schedule of `tenant`, or of one of its installations; how many.
    pub(crate) fn delete_schedules_of(
        &self,
        tenant: &TenantId,
        installation: Option<&InstallationId>,
    ) -> Result<u64, StoreError> {
        let _turn = self.lock_runs();
        let tree = self.runs_tree()?;
        let prefix = owner_prefix(tenant.as_str(), installation.map(InstallationId::as_str));
        let mut batch = sled::Batch::default();
        let mut deleted = 0;
        for entry in tree.scan_prefix(&prefix) {
            let (_, id) = entry?;
            if let Some(schedule) = Self::stored_schedule(&tree, &String::from_utf8_lossy(&id))? {
                Self::unstage_schedule(&mut batch, &schedule);
                deleted += 1;
            }
        }
        Self::apply(&tree, batch)?;
        Ok(deleted)
    }
}

impl Schedules for Store {
    fn create_schedule(
        &self,
        new: &NewSchedule<'_>,
        input: &[u8],
    ) -> Result<ScheduleRecord, StoreError> {
        let _pass = self.writing();
        let _turn = self.lock_runs();
        let tree = self.runs_tree()?;
        if tree.contains_key(record_key(new.id))? {
            return Err(StoreError::Exists {
                what: format!("schedule {}", new.id),
            });
        }
        let (schedule, sealed) = created(self, new, input)?;
        let mut batch = sled::Batch::default();
        Self::stage_schedule(&mut batch, None, &schedule)?;
        batch.insert(
            input_key(&schedule.id),
            sealed_bytes(&sealed, &schedule.id)?,
        );
        Self::apply(&tree, batch)?;
        Ok(schedule)
    }

    fn schedule(&self, tenant: &TenantId, id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        let tree = self.runs_tree()?;
        Ok(Self::stored_schedule(&tree, id)?.filter(|s| s.tenant == tenant.as_str()))
    }

    fn schedules(
        &self,
        tenant: &TenantId,
        installation: Option<&InstallationId>,
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let tree = self.runs_tree()?;
        let prefix = owner_prefix(tenant.as_str(), installation.map(InstallationId::as_str));
        let mut schedules = Vec::new();
        for entry in tree.scan_prefix(&prefix) {
            let (_, id) = entry?;
            if let Some(schedule) = Self::stored_schedule(&tree, &String::from_utf8_lossy(&id))? {
                schedules.push(schedule);
            }
        }
        schedules.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(schedules)
    }

    fn pause_schedule(
        &self,
        tenant: &TenantId,
        id: &str,
        paused: bool,
        next_tick: u64,
        now: u64,
    ) -> Result<Option<ScheduleRecord>, StoreError> {
        let _pass = self.writing();
        let _turn = self.lock_runs();
        let tree = self.runs_tree()?;
        let Some(before) =
            Self::stored_schedule(&tree, id)?.filter(|s| s.tenant == tenant.as_str())
        else {
            return Ok(None);
        };
        let mut schedule = before.clone();
        pause(&mut schedule, paused, next_tick, now);
        let mut batch = sled::Batch::default();
        Self::stage_schedule(&mut batch, Some(&before), &schedule)?;
        Self::apply(&tree, batch)?;
        Ok(Some(schedule))
    }

    fn delete_schedule(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let _pass = self.writing();
        let _turn = self.lock_runs();
        let tree = self.runs_tree()?;
        let Some(schedule) =
            Self::stored_schedule(&tree, id)?.filter(|s| s.tenant == tenant.as_str())
        else {
            return Ok(false);
        };
        let mut batch = sled::Batch::default();
        Self::unstage_schedule(&mut batch, &schedule);
        Self::apply(&tree, batch)?;
        Ok(true)
    }

    fn delete_schedules(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<u64, StoreError> {
        let _pass = self.writing();
        self.delete_schedules_of(tenant, Some(installation))
    }

    fn due_schedules(&self, now: u64, limit: usize) -> Result<Vec<ScheduleRecord>, StoreError> {
        let tree = self.runs_tree()?;
        let mut due = Vec::new();
        for entry in tree
            .range(vec![DUE]..due_key(now, "\u{10FFFF}"))
            .take(limit)
        {
            let (_, id) = entry?;
            if let Some(schedule) = Self::stored_schedule(&tree, &String::from_utf8_lossy(&id))? {
                due.push(schedule);
            }
        }
        Ok(due)
    }

    fn fire_schedule(&self, tick: &Tick<'_>) -> Result<Fired, StoreError> {
        let _pass = self.writing();
        let _turn = self.lock_runs();
        let tree = self.runs_tree()?;
        let Some(before) = Self::stored_schedule(&tree, tick.schedule)? else {
            return Ok(Fired::Taken);
        };
        if !waits_for(&before, tick) {
            return Ok(Fired::Taken);
        }
        let mut batch = sled::Batch::default();
        let queued = match &tick.run {
            Some(new) => match Self::admit_run(&tree, new) {
                Ok(run) => {
                    let sealed =
                        tree.get(input_key(&before.id))?
                            .ok_or_else(|| StoreError::Corrupt {
                                what: format!("the input of schedule {}", before.id),
                            })?;
                    let sealed = sealed_from(&sealed, &before.id)?;
                    let resealed = reseal_for(self, &before, &sealed, &run)?;
                    Self::stage_run(&tree, &mut batch, None, &run, Some(&resealed))?;
                    Handled::Queued(run.id)
                }
                Err(StoreError::QueueFull { .. }) => Handled::Skipped,
                Err(StoreError::Exists { .. }) => Handled::Passed,
                Err(e) => return Err(e),
            },
            None => Handled::Skipped,
        };
        let mut schedule = before.clone();
        let fired = advance(&mut schedule, tick, queued);
        Self::stage_schedule(&mut batch, Some(&before), &schedule)?;
        Self::apply(&tree, batch)?;
        Ok(fired)
    }

    fn next_schedule_tick(&self) -> Result<Option<u64>, StoreError> {
        let tree = self.runs_tree()?;
        Ok(tree
            .scan_prefix([DUE])
            .next()
            .transpose()?
            .and_then(|(key, _)| key.get(1..9).map(|b| b.try_into().map(u64::from_be_bytes)))
            .and_then(Result::ok))
    }
}
