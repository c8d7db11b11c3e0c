//! The schema: migrations embedded in the binary, applied in order under an advisory lock so
//! that nodes starting together apply each exactly once, and recorded in
//! `airlock_migrations`. A database that a newer build migrated is refused, not written.

use super::PgStore;
use crate::StoreError;

/// One step of the schema.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration this build knows, in order. Never edit one that has shipped: add the next.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("schema/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "members",
        sql: include_str!("schema/0002_members.sql"),
    },
    Migration {
        version: 3,
        name: "runs",
        sql: include_str!("schema/0003_runs.sql"),
    },
    Migration {
        version: 4,
        name: "runs_pending",
        sql: include_str!("schema/0004_runs_pending.sql"),
    },
    Migration {
        version: 5,
        name: "schedules",
        sql: include_str!("schema/0005_schedules.sql"),
    },
];

/// The advisory lock the migrations run under (any fixed number; "airlock\0" in ASCII).
const MIGRATION_LOCK: i64 = 0x6169_726c_6f63_6b00;

/// The migration this build writes up to.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// One migration as `airlock db status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub version: i32,
    pub name: String,
    /// When it was applied (RFC 3339), or `None` if it is pending.
    pub applied: Option<String>,
}

/// The database's schema against this build's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Every migration this build knows, and those the database has that it does not.
    pub migrations: Vec<MigrationStatus>,
    /// The highest applied, 0 for an empty database.
    pub applied: i32,
    /// The highest this build knows.
    pub latest: i32,
}

impl SchemaStatus {
    /// Whether the database holds exactly the schema this build writes.
    pub fn current(&self) -> bool {
        self.applied == self.latest
    }
}

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS airlock_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

impl PgStore {
    /// Applies the migrations the database lacks, each with its record in one transaction;
    /// returns the versions applied.
    pub fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(CREATE_LEDGER).await?;
            let applied: i32 = tx
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM airlock_migrations",
                    &[],
                )
                .await?
                .get(0);
            if applied > latest() {
                return Err(StoreError::Schema {
                    found: applied,
                    known: latest(),
                });
            }
            let mut done = Vec::new();
            for migration in MIGRATIONS.iter().filter(|m| m.version > applied) {
                tx.batch_execute(migration.sql)
                    .await
                    .map_err(|e| StoreError::MigrateSchema {
                        reason: format!(
                            "migration {} ({}) failed: {e}",
                            migration.version, migration.name
                        ),
                    })?;
                tx.execute(
                    "INSERT INTO airlock_migrations (version, name) VALUES ($1, $2)",
                    &[&migration.version, &migration.name],
                )
                .await?;
                done.push(migration.version);
            }
            tx.commit().await?;
            if !done.is_empty() {
                tracing::info!(versions = ?done, "applied database migrations");
            }
            Ok(done)
        })
    }

    /// The schema's status, read without changing anything.
    pub fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let rows = self.run(move |client| async move {
            let exists: bool = client
                .query_one("SELECT to_regclass('airlock_migrations') IS NOT NULL", &[])
                .await?
                .get(0);
            if !exists {
                return Ok(Vec::new());
            }
            let rows = client
                .query(
                    "SELECT version, name, to_char(applied_at AT TIME ZONE 'UTC', \
                     'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM airlock_migrations ORDER BY version",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| (row.get::<_, i32>(0), row.get::<_, String>(1), row.get(2)))
                .collect::<Vec<(i32, String, String)>>())
        })?;
        let applied = rows.iter().map(|r| r.0).max().unwrap_or(0);
        let mut migrations: Vec<MigrationStatus> = MIGRATIONS
            .iter()
            .map(|m| MigrationStatus {
                version: m.version,
                name: m.name.to_string(),
                applied: rows.iter().find(|r| r.0 == m.version).map(|r| r.2.clone()),
            })
            .collect();
        migrations.extend(rows.into_iter().filter(|r| r.0 > latest()).map(
            |(version, name, at)| MigrationStatus {
                version,
                name,
                applied: Some(at),
            },
        ));
        Ok(SchemaStatus {
            migrations,
            applied,
            latest: latest(),
        })
    }
}
