//! Runs on the cluster's store: one row per run (sled's record as JSON, the input sealed the
//! same way). Nodes claim with `FOR UPDATE SKIP LOCKED` on the wake index, so concurrent
//! claims never wait on each other or take one run twice.

use std::sync::Arc;
use std::time::Duration;

use airlock_host_api::credentials::vault::Sealed;

use super::{PgStore, bigint, is_unique_violation};
use crate::StoreError;
use crate::runs::{
    Claim, ClaimedRun, NewRun, Requeued, RunEnd, RunQuery, RunRecord, claim, decode, encode,
    expire_input, finish, holds, matches, open_run_input, queued, requeue, seal_run_input,
    sealed_bytes, sealed_from,
};
use crate::traits::Runs;
use airlock_runtime::ids::{InstallationId, TenantId};

/// The channel queued runs are announced on (`LISTEN`/`NOTIFY`).
const QUEUED: &str = "airlock_runs_queued";

/// How long the watcher waits before it listens again after its connection ended.
const RELISTEN: Duration = Duration::from_secs(1);

fn wakes(run: &RunRecord) -> Option<i64> {
    run.wakes().map(bigint)
}

/// Refuses, within `tx`, a run that would take `tenant` past `limit` runs queued or running.
/// The tenant's transaction lock orders concurrent enqueues, so two nodes cannot both take
/// the last place.
async fn within_pending_limit(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: &str,
    limit: u64,
) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('airlock-runs-pending:' || $1, 0))",
        &[&tenant],
    )
    .await?;
    let pending: i64 = tx
        .query_one(
            "SELECT count(*) FROM runs WHERE tenant = $1 AND wakes IS NOT NULL",
            &[&tenant],
        )
        .await?
        .get(0);
    if super::unsigned(pending) >= limit {
        return Err(StoreError::QueueFull {
            tenant: tenant.to_string(),
            limit,
        });
    }
    Ok(())
}

/// Inserts `run` (queued) with its `sealed` input within `tx`, within the tenant's pending
/// `limit`, and announces it to every node's idle workers once `tx` commits.
pub(super) async fn insert_run(
    tx: &tokio_postgres::Transaction<'_>,
    run: &RunRecord,
    sealed: &Sealed,
    limit: u64,
) -> Result<(), StoreError> {
    within_pending_limit(tx, &run.tenant, limit).await?;
    let written = tx
        .execute(
            "INSERT INTO runs (id, tenant, installation, status, created, updated, \
             wakes, record, input) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)",
            &[
                &run.id,
                &run.tenant,
                &run.installation,
                &run.status.as_str(),
                &bigint(run.created),
                &wakes(run),
                &encode(run)?,
                &sealed_bytes(sealed, &run.id)?,
            ],
        )
        .await;
    match written {
        Ok(_) => {
            tx.execute("SELECT pg_notify($1, '')", &[&QUEUED]).await?;
            Ok(())
        }
        Err(e) if is_unique_violation(&e) => Err(StoreError::Exists {
            what: format!("run {}", run.id),
        }),
        Err(e) => Err(e.into()),
    }
}

impl PgStore {
    /// Reads run `id` for update in `change`, writes what it returns (record, and the input
    /// destroyed unless still kept), all in one transaction.
    /// With `pending_limit`, a change that makes the run pending again is refused past it.
    fn change_run<T: Send + 'static>(
        &self,
        id: &str,
        tenant: Option<&TenantId>,
        pending_limit: Option<u64>,
        change: impl FnOnce(&mut RunRecord) -> Result<T, T> + Send + 'static,
    ) -> Result<Option<(T, RunRecord)>, StoreError> {
        let (id, tenant) = (id.to_string(), tenant.map(TenantId::to_string));
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            if let (Some(limit), Some(tenant)) = (pending_limit, &tenant) {
                within_pending_limit(&tx, tenant, limit).await?;
            }
            let Some(row) = tx
                .query_opt(
                    "SELECT record FROM runs WHERE id = $1 \
                     AND ($2::text IS NULL OR tenant = $2) FOR UPDATE",
                    &[&id, &tenant],
                )
                .await?
            else {
                return Ok(None);
            };
            let mut run = decode(row.get(0))?;
            let made = match change(&mut run) {
                Ok(made) => made,
                Err(refused) => return Ok(Some((refused, run))),
            };
            tx.execute(
                "UPDATE runs SET status = $2, updated = $3, wakes = $4, record = $5, \
                 input = CASE WHEN $6 THEN input END WHERE id = $1",
                &[
                    &id,
                    &run.status.as_str(),
                    &bigint(run.updated),
                    &wakes(&run),
                    &encode(&run)?,
                    &run.input_kept,
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(Some((made, run)))
        })
    }
}

impl Runs for PgStore {
    fn enqueue_run(&self, new: &NewRun<'_>, input: &[u8]) -> Result<RunRecord, StoreError> {
        let run = queued(new);
        let sealed = seal_run_input(self, &run, input)?;
        let row = run.clone();
        let limit = new.pending_limit;
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            insert_run(&tx, &row, &sealed, limit).await?;
            tx.commit().await?;
            Ok(())
        })?;
        Ok(run)
    }

    fn claim_run(&self, now: u64, lease: Duration) -> Result<Option<ClaimedRun>, StoreError> {
        let claimed: Option<(RunRecord, u32, Vec<u8>)> =
            self.run(move |mut client| async move {
                loop {
                    let tx = client.transaction().await?;
                    let Some(row) = tx
                        .query_opt(
                            "SELECT record, input FROM runs WHERE wakes <= $1 \
                             AND input IS NOT NULL ORDER BY wakes, id LIMIT 1 \
                             FOR UPDATE SKIP LOCKED",
                            &[&bigint(now)],
                        )
                        .await?
                    else {
                        return Ok(None);
                    };
                    let mut run = decode(row.get(0))?;
                    let input: Vec<u8> = row.get(1);
                    let claimed = claim(&mut run, now, lease);
                    tx.execute(
                        "UPDATE runs SET status = $2, updated = $3, wakes = $4, record = $5 \
                         WHERE id = $1",
                        &[
                            &run.id,
                            &run.status.as_str(),
                            &bigint(run.updated),
                            &wakes(&run),
                            &encode(&run)?,
                        ],
                    )
                    .await?;
                    tx.commit().await?;
                    if let Claim::Attempt(token) = claimed {
                        return Ok(Some((run, token, input)));
                    }
                }
            })?;
        let Some((run, claim, input)) = claimed else {
            return Ok(None);
        };
        let sealed = sealed_from(&input, &run.id)?;
        let input = open_run_input(self, &run, &sealed)?;
        Ok(Some(ClaimedRun { run, claim, input }))
    }

    fn finish_run(&self, id: &str, claim: u32, end: &RunEnd, now: u64) -> Result<bool, StoreError> {
        let end = end.clone();
        let changed = self.change_run(id, None, None, move |run| {
            if !holds(run, claim) {
                return Err(false);
            }
            finish(run, &end, now);
            Ok(true)
        })?;
        Ok(changed.is_some_and(|(done, _)| done))
    }

    fn run(&self, tenant: &TenantId, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let stored: Option<Vec<u8>> = self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "SELECT record FROM runs WHERE id = $1 AND tenant = $2",
                    &[&id, &tenant],
                )
                .await?
                .map(|row| row.get(0)))
        })?;
        stored.map(|bytes| decode(&bytes)).transpose()
    }

    fn runs(&self, tenant: &TenantId, query: &RunQuery) -> Result<Vec<RunRecord>, StoreError> {
        let after = match &query.after {
            Some(after) => match Runs::run(self, tenant, after)? {
                Some(run) => Some((bigint(run.created), run.id)),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let (tenant, filter) = (tenant.to_string(), query.clone());
        let limit = bigint(u64::try_from(query.limit).unwrap_or(u64::MAX));
        let rows: Vec<Vec<u8>> = self.run(move |client| async move {
            let (after_at, after_id) = after.unzip();
            Ok(client
                .query(
                    "SELECT record FROM runs WHERE tenant = $1 \
                     AND ($2::text IS NULL OR installation = $2) \
                     AND ($3::text IS NULL OR status = $3) \
                     AND created >= $4 \
                     AND ($5::bigint IS NULL OR (created, id) > ($5, $6::text)) \
                     ORDER BY created, id LIMIT $7",
                    &[
                        &tenant,
                        &filter.installation,
                        &filter.status.map(|s| s.as_str()),
                        &bigint(filter.since.unwrap_or(0)),
                        &after_at,
                        &after_id,
                        &limit,
                    ],
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect())
        })?;
        let runs = rows
            .iter()
            .map(|bytes| decode(bytes))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(runs.into_iter().filter(|r| matches(r, query)).collect())
    }

    fn retry_run(
        &self,
        tenant: &TenantId,
        id: &str,
        now: u64,
        pending_limit: u64,
    ) -> Result<Requeued, StoreError> {
        let changed = self.change_run(id, Some(tenant), Some(pending_limit), move |run| {
            requeue(run, now).map(|()| None).map_err(Some)
        })?;
        Ok(match changed {
            None => Requeued::NoSuchRun,
            Some((Some(refused), _)) => refused,
            Some((None, run)) => {
                self.run(|client| async move {
                    client
                        .execute("SELECT pg_notify($1, '')", &[&QUEUED])
                        .await?;
                    Ok(())
                })?;
                Requeued::Queued(Box::new(run))
            }
        })
    }

    fn purge_run_inputs(&self, before: u64) -> Result<usize, StoreError> {
        let ids: Vec<String> = self.run(move |client| async move {
            Ok(client
                .query(
                    "SELECT id FROM runs WHERE status = 'dead' AND input IS NOT NULL \
                     AND updated < $1",
                    &[&bigint(before)],
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect())
        })?;
        let mut purged = 0;
        for id in ids {
            let changed = self.change_run(&id, None, None, move |run| {
                if expire_input(run, before) {
                    Ok(true)
                } else {
                    Err(false)
                }
            })?;
            purged += usize::from(changed.is_some_and(|(done, _)| done));
        }
        Ok(purged)
    }

    fn delete_runs(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<u64, StoreError> {
        self.delete_installation_rows("runs", tenant, installation)
    }

    fn watch_runs(&self, woken: Arc<dyn Fn() + Send + Sync>) {
        let url = self.inner.url.clone();
        self.spawn(async move {
            loop {
                // An error ends this connection only: listen again, and look once, since a
                // run queued meanwhile was announced to no one.
                let _ended = url.listen(QUEUED, &*woken).await;
                woken();
                tokio::time::sleep(RELISTEN).await;
            }
        });
    }

    fn next_run_wake(&self) -> Result<Option<u64>, StoreError> {
        self.run(move |client| async move {
            let row = client.query_one("SELECT min(wakes) FROM runs", &[]).await?;
            Ok(row.get::<_, Option<i64>>(0).map(super::unsigned))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    use super::*;
    use crate::postgres::testing::TestDatabase;
    use crate::runs::RunTrigger;
    use crate::traits::Tenants;

    #[test]
    fn a_run_queued_through_one_store_wakes_the_watchers_of_another() {
        let Some(database) = TestDatabase::create("runs_wake_other_nodes") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("master.key");
        let (queuing, watching) = (database.store(&key), database.store(&key));
        let (woke, wakes) = mpsc::channel();
        let seen = Arc::new(AtomicUsize::new(0));
        let counted = seen.clone();
        watching.watch_runs(Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = woke.send(());
        }));
        let (acme, crm) = (
            "acme".parse::<TenantId>().expect("tenant"),
            "crm".parse::<InstallationId>().expect("installation"),
        );
        queuing.create_tenant(&acme).expect("tenant");
        // The watcher listens once its connection is up: queue until it hears one.
        for n in 0.. {
            let id = format!("run-{n}");
            let new = NewRun {
                id: &id,
                tenant: &acme,
                installation: &crm,
                action: "sync",
                trigger: RunTrigger::Api,
                max_attempts: 1,
                now: 100,
                pending_limit: 1_000,
                tick: None,
            };
            queuing.enqueue_run(&new, b"{}").expect("enqueue");
            if wakes.recv_timeout(Duration::from_millis(500)).is_ok() {
                break;
            }
            assert!(n < 40, "no notification reached the other store");
        }
        assert!(seen.load(Ordering::SeqCst) >= 1);
    }
}
