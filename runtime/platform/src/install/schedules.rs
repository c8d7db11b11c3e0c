//! An installation's cron schedules: created for an action its installed version declares
//! `schedulable`, with a cron expression and a time zone validated on entry; paused, resumed
//! and deleted. Every change is audited (docs/api.md, "Schedules"). The input is the caller's
//! to check against the action's schema: this service stores it sealed.

use airlock_host_api::audit::{AuditEvent, Change};

use super::{InstallError, Installer};
use crate::timetable::{Timetable, TimetableError};
use airlock_runtime::clock::now_unix_ms;
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_store::StoreError;
use airlock_store::schedules::{NewSchedule, ScheduleRecord};

/// The most schedules one installation may have.
pub const MAX_SCHEDULES: usize = 32;

/// Why a schedule was not created or changed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("{integration} declares no schedulable action `{action}`; schedulable: {schedulable}")]
    NotSchedulable {
        integration: String,
        action: String,
        schedulable: String,
    },
    #[error(
        "name the action to schedule: {integration} declares these schedulable actions: {schedulable}"
    )]
    NoAction {
        integration: String,
        schedulable: String,
    },
    #[error(transparent)]
    Timetable(#[from] TimetableError),
    #[error("installation {0} has {MAX_SCHEDULES} schedules, as many as it may")]
    TooMany(InstallationId),
    #[error("schedule {0} does not exist")]
    NotFound(String),
}

impl From<StoreError> for ScheduleError {
    fn from(e: StoreError) -> Self {
        Self::Install(e.into())
    }
}

/// A schedule asked for.
pub struct ScheduleRequest<'a> {
    pub cron: &'a str,
    pub timezone: &'a str,
    pub input: &'a [u8],
}

impl Installer<'_> {
    /// The action a schedule runs: `action` if the installed version declares it
    /// schedulable, or, if none is named, its only schedulable one.
    pub fn schedulable_action(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        action: Option<&str>,
    ) -> Result<String, ScheduleError> {
        let record = self.get(tenant, installation)?;
        let manifest = self.installed_manifest(&record)?.manifest;
        let schedulable: Vec<&str> = manifest
            .actions
            .iter()
            .filter(|(_, a)| a.schedulable)
            .map(|(name, _)| name.as_str())
            .collect();
        match action {
            Some(action) if schedulable.contains(&action) => Ok(action.to_string()),
            Some(action) => Err(ScheduleError::NotSchedulable {
                integration: record.integration,
                action: action.to_string(),
                schedulable: listed(&schedulable),
            }),
            None if schedulable.len() == 1 => Ok(schedulable[0].to_string()),
            None => Err(ScheduleError::NoAction {
                integration: record.integration,
                schedulable: listed(&schedulable),
            }),
        }
    }

    /// Creates a schedule of `action` (see [`Self::schedulable_action`]), its first tick the
    /// next one after now.
    pub fn create_schedule(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        action: &str,
        request: &ScheduleRequest<'_>,
    ) -> Result<ScheduleRecord, ScheduleError> {
        self.schedulable_action(tenant, installation, Some(action))?;
        let timetable = Timetable::parse(request.cron, request.timezone)?;
        if self.store.schedules(tenant, Some(installation))?.len() >= MAX_SCHEDULES {
            return Err(ScheduleError::TooMany(installation.clone()));
        }
        let now = now_unix_ms();
        let first_tick = timetable
            .after(now)
            .ok_or_else(|| TimetableError::Never(request.cron.to_string()))?;
        let id = format!("sch_{}", hex_id());
        let new = NewSchedule {
            id: &id,
            tenant,
            installation,
            action,
            cron: request.cron,
            timezone: request.timezone,
            now,
            first_tick,
        };
        let schedule = self.store.create_schedule(&new, request.input)?;
        self.record_schedule(&schedule, Change::Set)?;
        Ok(schedule)
    }

    /// Pauses the schedule, or resumes it from its next tick after now.
    pub fn pause_schedule(
        &self,
        tenant: &TenantId,
        id: &str,
        paused: bool,
    ) -> Result<ScheduleRecord, ScheduleError> {
        let schedule = self
            .store
            .schedule(tenant, id)?
            .ok_or_else(|| ScheduleError::NotFound(id.to_string()))?;
        let now = now_unix_ms();
        let next = Timetable::parse(&schedule.cron, &schedule.timezone)?
            .after(now)
            .unwrap_or(u64::MAX);
        let changed = self
            .store
            .pause_schedule(tenant, id, paused, next, now)?
            .ok_or_else(|| ScheduleError::NotFound(id.to_string()))?;
        let change = if paused {
            Change::Paused
        } else {
            Change::Resumed
        };
        self.record_schedule(&changed, change)?;
        Ok(changed)
    }

    /// Deletes the schedule; its queued runs stay queued.
    pub fn delete_schedule(&self, tenant: &TenantId, id: &str) -> Result<(), ScheduleError> {
        let schedule = self
            .store
            .schedule(tenant, id)?
            .ok_or_else(|| ScheduleError::NotFound(id.to_string()))?;
        if !self.store.delete_schedule(tenant, id)? {
            return Err(ScheduleError::NotFound(id.to_string()));
        }
        Ok(self.record_schedule(&schedule, Change::Deleted)?)
    }

    pub(super) fn record_schedule(
        &self,
        schedule: &ScheduleRecord,
        change: Change,
    ) -> Result<(), InstallError> {
        self.trail
            .append_blocking(AuditEvent::ScheduleChanged {
                tenant: schedule.tenant.clone(),
                installation: schedule.installation.clone(),
                schedule: schedule.id.clone(),
                action: schedule.action.clone(),
                cron: format!("{} {}", schedule.cron, schedule.timezone),
                change,
            })
            .map_err(InstallError::from)?;
        Ok(())
    }
}

fn listed(actions: &[&str]) -> String {
    if actions.is_empty() {
        "none".into()
    } else {
        actions.join(", ")
    }
}

/// 24 random hex digits.
fn hex_id() -> String {
    let mut bytes = [0u8; 12];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
