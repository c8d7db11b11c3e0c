//! Schedules on the cluster's store: one row per schedule (sled's record as JSON, the input
//! sealed the same way). A tick fires in one transaction that locks the schedule's row, checks
//! it still waits for that tick, queues the run and advances it: of nodes firing the same tick
//! at once, one does, the others find it advanced.

use airlock_host_api::credentials::vault::Sealed;

use super::runs::insert_run;
use super::{PgStore, bigint, is_unique_violation};
use crate::StoreError;
use crate::runs::{queued, sealed_bytes, sealed_from};
use crate::schedules::{
    Fired, Handled, NewSchedule, ScheduleRecord, Tick, advance, created, decode, encode, pause,
    reseal_for, waits_for,
};
use crate::traits::Schedules;
use airlock_runtime::ids::{InstallationId, TenantId};

fn records(rows: &[tokio_postgres::Row]) -> Result<Vec<ScheduleRecord>, StoreError> {
    rows.iter().map(|row| decode(row.get(0))).collect()
}

/// Whether run `id` is stored.
async fn run_exists(tx: &tokio_postgres::Transaction<'_>, id: &str) -> Result<bool, StoreError> {
    Ok(tx
        .query_one("SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)", &[&id])
        .await?
        .get(0))
}

impl PgStore {
    /// Schedule `id` and its sealed input.
    fn schedule_with_input(
        &self,
        id: &str,
    ) -> Result<Option<(ScheduleRecord, Sealed)>, StoreError> {
        let id = id.to_string();
        let row: Option<(Vec<u8>, Vec<u8>)> = self.run(move |client| async move {
            Ok(client
                .query_opt("SELECT record, input FROM schedules WHERE id = $1", &[&id])
                .await?
                .map(|row| (row.get(0), row.get(1))))
        })?;
        row.map(|(record, input)| {
            let schedule = decode(&record)?;
            let sealed = sealed_from(&input, &schedule.id)?;
            Ok((schedule, sealed))
        })
        .transpose()
    }
}

impl Schedules for PgStore {
    fn create_schedule(
        &self,
        new: &NewSchedule<'_>,
        input: &[u8],
    ) -> Result<ScheduleRecord, StoreError> {
        let (schedule, sealed) = created(self, new, input)?;
        let (row, sealed) = (schedule.clone(), sealed_bytes(&sealed, &schedule.id)?);
        self.run(move |client| async move {
            let written = client
                .execute(
                    "INSERT INTO schedules (id, tenant, installation, next_tick, record, input) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &row.id,
                        &row.tenant,
                        &row.installation,
                        &row.next_tick.map(bigint),
                        &encode(&row)?,
                        &sealed,
                    ],
                )
                .await;
            match written {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Exists {
                    what: format!("schedule {}", row.id),
                }),
                Err(e) => Err(e.into()),
            }
        })?;
        Ok(schedule)
    }

    fn schedule(&self, tenant: &TenantId, id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let row: Option<Vec<u8>> = self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "SELECT record FROM schedules WHERE id = $1 AND tenant = $2",
                    &[&id, &tenant],
                )
                .await?
                .map(|row| row.get(0)))
        })?;
        row.map(|bytes| decode(&bytes)).transpose()
    }

    fn schedules(
        &self,
        tenant: &TenantId,
        installation: Option<&InstallationId>,
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let (tenant, installation) = (tenant.to_string(), installation.map(|i| i.to_string()));
        self.run(move |client| async move {
            let rows = client
                .query(
                    "SELECT record FROM schedules WHERE tenant = $1 \
                     AND ($2::text IS NULL OR installation = $2) ORDER BY id",
                    &[&tenant, &installation],
                )
                .await?;
            records(&rows)
        })
    }

    fn pause_schedule(
        &self,
        tenant: &TenantId,
        id: &str,
        paused: bool,
        next_tick: u64,
        now: u64,
    ) -> Result<Option<ScheduleRecord>, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT record FROM schedules WHERE id = $1 AND tenant = $2 FOR UPDATE",
                    &[&id, &tenant],
                )
                .await?
            else {
                return Ok(None);
            };
            let mut schedule = decode(row.get(0))?;
            pause(&mut schedule, paused, next_tick, now);
            tx.execute(
                "UPDATE schedules SET next_tick = $2, record = $3 WHERE id = $1",
                &[&id, &schedule.next_tick.map(bigint), &encode(&schedule)?],
            )
            .await?;
            tx.commit().await?;
            Ok(Some(schedule))
        })
    }

    fn delete_schedule(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.run(move |client| async move {
            Ok(client
                .execute(
                    "DELETE FROM schedules WHERE id = $1 AND tenant = $2",
                    &[&id, &tenant],
                )
                .await?
                > 0)
        })
    }

    fn delete_schedules(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<u64, StoreError> {
        self.delete_installation_rows("schedules", tenant, installation)
    }

    fn due_schedules(&self, now: u64, limit: usize) -> Result<Vec<ScheduleRecord>, StoreError> {
        let limit = bigint(u64::try_from(limit).unwrap_or(u64::MAX));
        self.run(move |client| async move {
            let rows = client
                .query(
                    "SELECT record FROM schedules WHERE next_tick <= $1 \
                     ORDER BY next_tick, id LIMIT $2",
                    &[&bigint(now), &limit],
                )
                .await?;
            records(&rows)
        })
    }

    fn fire_schedule(&self, tick: &Tick<'_>) -> Result<Fired, StoreError> {
        // The run's input is the schedule's, sealed anew for the run before the transaction
        // (a schedule's input never changes).
        let run = match &tick.run {
            Some(new) => {
                let Some((schedule, sealed)) = self.schedule_with_input(tick.schedule)? else {
                    return Ok(Fired::Taken);
                };
                let run = queued(new);
                let resealed = reseal_for(self, &schedule, &sealed, &run)?;
                Some((run, resealed, new.pending_limit))
            }
            None => None,
        };
        let (id, due, handled) = (
            tick.schedule.to_string(),
            tick.due,
            (tick.next, tick.missed, tick.latest, tick.now),
        );
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT record FROM schedules WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await?
            else {
                return Ok(Fired::Taken);
            };
            let mut schedule = decode(row.get(0))?;
            let (next, missed, latest, now) = handled;
            let tick = Tick {
                schedule: &id,
                due,
                latest,
                next,
                missed,
                run: None,
                now,
            };
            if !waits_for(&schedule, &tick) {
                return Ok(Fired::Taken);
            }
            let handled = match &run {
                // Asked first: a failed insert would end the transaction.
                Some((run, _, _)) if run_exists(&tx, &run.id).await? => Handled::Passed,
                Some((run, sealed, limit)) => match insert_run(&tx, run, sealed, *limit).await {
                    Ok(()) => Handled::Queued(run.id.clone()),
                    Err(StoreError::QueueFull { .. }) => Handled::Skipped,
                    Err(e) => return Err(e),
                },
                None => Handled::Skipped,
            };
            let fired = advance(&mut schedule, &tick, handled);
            tx.execute(
                "UPDATE schedules SET next_tick = $2, record = $3 WHERE id = $1",
                &[&id, &schedule.next_tick.map(bigint), &encode(&schedule)?],
            )
            .await?;
            tx.commit().await?;
            Ok(fired)
        })
    }

    fn next_schedule_tick(&self) -> Result<Option<u64>, StoreError> {
        self.run(move |client| async move {
            let row = client
                .query_one("SELECT min(next_tick) FROM schedules", &[])
                .await?;
            Ok(row.get::<_, Option<i64>>(0).map(super::unsigned))
        })
    }
}
