//! Schedules: cron schedules an installation's tenant gives a schedulable action, each with an
//! input sealed with the tenant's data key like a run's. Every node looks for due schedules;
//! firing one is a compare-and-set on its next tick, in the same write as the run it queues,
//! so each tick fires once across the cluster (docs/api.md, "Schedules").
//!
//! The store keeps what the schedule is and when it fires next; the cron grammar, time zones
//! and which ticks were missed are the caller's ([`Tick`] carries its verdict).

mod on_sled;

use serde::{Deserialize, Serialize};

use airlock_host_api::credentials::vault::{InputOwner, Sealed};

use crate::StoreError;
use crate::keys::TenantKeys;
use crate::runs::{NewRun, RunRecord, open_input, seal_input, seal_run_input};
use airlock_runtime::ids::{InstallationId, TenantId};

/// A schedule as kept: metadata only. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub id: String,
    pub tenant: String,
    pub installation: String,
    pub action: String,
    /// The cron expression, as given (validated on entry).
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    pub paused: bool,
    pub created: u64,
    pub updated: u64,
    /// The next tick to fire; none while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_tick: Option<u64>,
    /// Ticks that queued a run.
    pub fired: u64,
    /// Ticks missed while nothing ran (or refused by a full queue): skipped, never replayed.
    pub skipped: u64,
    /// The last tick that queued a run, and that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tick: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
}

/// A schedule to create.
#[derive(Debug, Clone)]
pub struct NewSchedule<'a> {
    pub id: &'a str,
    pub tenant: &'a TenantId,
    pub installation: &'a InstallationId,
    pub action: &'a str,
    pub cron: &'a str,
    pub timezone: &'a str,
    pub now: u64,
    pub first_tick: u64,
}

/// A due schedule's tick, as its caller judged it: the tick it is due at (the compare-and-set
/// holds only if the schedule still waits for it), the next one, and what becomes of it.
#[derive(Debug, Clone)]
pub struct Tick<'a> {
    pub schedule: &'a str,
    /// The tick the schedule waits for (its `next_tick`).
    pub due: u64,
    /// The latest tick due, handled now: fired, or skipped if too late.
    pub latest: u64,
    /// The tick after the one handled now; none if the expression has no more.
    pub next: Option<u64>,
    /// Ticks before the one fired that nothing ran at: counted, skipped.
    pub missed: u64,
    /// The run to queue for the latest tick, with the schedule's input; none when that tick is
    /// too late to run and is skipped too.
    pub run: Option<NewRun<'a>>,
    pub now: u64,
}

/// What firing a tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// The run was queued (its id).
    Queued(String),
    /// The tick was skipped: too late, or the tenant's queue was full.
    Skipped,
    /// Another node fired it first, or the schedule changed or went meanwhile: nothing done.
    Taken,
}

/// A fresh schedule record for `new`, and its `input` sealed with the tenant's data key.
pub(crate) fn created(
    keys: &impl TenantKeys,
    new: &NewSchedule<'_>,
    input: &[u8],
) -> Result<(ScheduleRecord, Sealed), StoreError> {
    let schedule = ScheduleRecord {
        id: new.id.to_string(),
        tenant: new.tenant.to_string(),
        installation: new.installation.to_string(),
        action: new.action.to_string(),
        cron: new.cron.to_string(),
        timezone: new.timezone.to_string(),
        paused: false,
        created: new.now,
        updated: new.now,
        next_tick: Some(new.first_tick),
        fired: 0,
        skipped: 0,
        last_tick: None,
        last_run: None,
    };
    let sealed = seal_input(
        keys,
        InputOwner::Schedule,
        new.tenant,
        &schedule.installation,
        &schedule.id,
        input,
    )?;
    Ok((schedule, sealed))
}

/// `schedule` paused, or resumed to fire next at `next_tick`.
pub(crate) fn pause(schedule: &mut ScheduleRecord, paused: bool, next_tick: u64, now: u64) {
    schedule.paused = paused;
    schedule.next_tick = (!paused).then_some(next_tick);
    schedule.updated = now;
}

/// What became of a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Its run was queued (the run's id).
    Queued(String),
    /// Too late, or the tenant's queue was full.
    Skipped,
    /// Its run was queued before (a schedule resumed by a node whose clock lags): the schedule
    /// only moves on.
    Passed,
}

/// `schedule` after `tick` was `handled`; what the caller is told.
pub(crate) fn advance(schedule: &mut ScheduleRecord, tick: &Tick<'_>, handled: Handled) -> Fired {
    schedule.next_tick = tick.next;
    schedule.updated = tick.now;
    schedule.skipped += tick.missed;
    match handled {
        Handled::Queued(run) => {
            schedule.fired += 1;
            schedule.last_tick = Some(tick.latest);
            schedule.last_run = Some(run.clone());
            Fired::Queued(run)
        }
        Handled::Skipped => {
            schedule.skipped += 1;
            Fired::Skipped
        }
        Handled::Passed => Fired::Taken,
    }
}

/// Whether `schedule` still waits for `tick` (nobody fired it, it was not paused).
pub(crate) fn waits_for(schedule: &ScheduleRecord, tick: &Tick<'_>) -> bool {
    schedule.next_tick == Some(tick.due)
}

/// The input of `schedule`, `sealed` under it, sealed anew as the input of the `run` a tick
/// queues.
pub(crate) fn reseal_for(
    keys: &impl TenantKeys,
    schedule: &ScheduleRecord,
    sealed: &Sealed,
    run: &RunRecord,
) -> Result<Sealed, StoreError> {
    let input = open_input(
        keys,
        InputOwner::Schedule,
        &schedule.tenant,
        &schedule.installation,
        &schedule.id,
        sealed,
    )?;
    seal_run_input(keys, run, &input)
}

pub(crate) fn encode(schedule: &ScheduleRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(schedule).map_err(|_| StoreError::Corrupt {
        what: format!("schedule {}", schedule.id),
    })
}

pub(crate) fn decode(bytes: &[u8]) -> Result<ScheduleRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        what: "a schedule record".into(),
    })
}
