//! The cluster's store: the [storage traits](crate::traits) on one PostgreSQL database that any
//! number of `airlock serve` nodes share (docs/deploy.md).
//!
//! What the database holds is what sled holds, sealed the same way before it leaves the
//! process: the tenants' data keys wrapped by the master key (which never enters the
//! database), every secret, token, kv name and value and config sealed with them. The
//! guarantees the traits name come from the database: unique keys for first-writer-wins,
//! conditional updates for compare-and-set, one transaction for a write and its quota.
//!
//! The traits are synchronous (the services run on blocking threads); this store runs its
//! queries on a small runtime of its own and waits for them, so it can be called from any
//! thread, inside another runtime or not.
//!
//! # Layout
//! - [`connect`]: the connection string (`sslmode`, `sslrootcert`) and TLS.
//! - [`migrate`]: the schema, embedded, applied under a lock; its status.
//! - `keys`: the master key check and the tenants' wrapped data keys.
//! - one module per concern, as for sled.

mod api_keys;
mod audit;
pub mod connect;
mod connections;
mod credentials;
mod installations;
mod keys;
mod kv;
mod members;
pub mod migrate;
mod runs;
mod schedules;
mod tenants;
#[cfg(any(test, feature = "conformance"))]
pub mod testing;
mod trust;
mod webhooks;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deadpool_postgres::{Object, Pool};
use tokio_postgres::error::SqlState;

use crate::StoreError;
use crate::keys::MasterSlot;
use airlock_runtime::ids::{InstallationId, TenantId};
pub use connect::StoreUrl;
pub use migrate::{MigrationStatus, SchemaStatus};

/// Connections each process keeps open at most: enough for a node's blocking threads to
/// query at once without queueing behind one another on a 2-core machine.
const POOL_SIZE: usize = 16;

/// The PostgreSQL implementation of the [storage traits](crate::traits). Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Runs the queries; `Option` only so `Drop` can shut it down from any thread.
    runtime: Option<tokio::runtime::Runtime>,
    /// Where the database is, without its password, to name it in messages.
    shown: String,
    /// Where it is, to open the connection that listens for notifications.
    url: StoreUrl,
    master: MasterSlot,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A runtime dropped inside another would panic; this one needs no orderly end.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What opening does to the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Applies the migrations this build knows and the database lacks (under a lock, so
    /// nodes starting together apply each once); refuses a database a newer build migrated.
    Migrate,
    /// Leaves the schema as it is (`airlock db status`).
    AsItIs,
}

impl PgStore {
    /// Connects to the database `url` names and, with [`Schema::Migrate`], brings its schema up
    /// to date. The master key is resolved as for sled (`AIRLOCK_MASTER_KEY`, else the file
    /// at `master_key`) and checked against the database's the first time a secret is
    /// sealed or opened.
    pub fn connect(url: &StoreUrl, master_key: &Path, schema: Schema) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("airlock-postgres")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                path: PathBuf::from("(the database's runtime)"),
                source,
            })?;
        let pool = {
            let _entered = runtime.enter();
            url.pool(POOL_SIZE)?
        };
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                runtime: Some(runtime),
                shown: url.to_string(),
                url: url.clone(),
                master: MasterSlot::new(master_key.to_path_buf()),
            }),
        };
        // Fail here, naming the database, rather than on the first query.
        store.run(|client| async move {
            client.simple_query("SELECT 1").await?;
            Ok(())
        })?;
        if schema == Schema::Migrate {
            store.migrate()?;
        }
        Ok(store)
    }

    /// The database as messages name it (no password).
    pub fn shown(&self) -> &str {
        &self.inner.shown
    }

    /// Runs `task` on the store's runtime for as long as the store lives.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.inner.runtime {
            runtime.spawn(task);
        }
    }

    /// Runs `work` with a pooled connection on the store's runtime and waits for it.
    pub(crate) fn run<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
    {
        let pool = self.inner.pool.clone();
        let shown = self.inner.shown.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let runtime = self
            .inner
            .runtime
            .as_ref()
            .ok_or_else(|| StoreError::Db("the database's runtime has stopped".into()))?;
        runtime.spawn(async move {
            let result = match pool.get().await {
                Ok(client) => work(client).await,
                Err(e) => Err(StoreError::Open {
                    path: PathBuf::from(shown),
                    source: Box::new(e),
                }),
            };
            let _ = tx.send(result);
        });
        rx.recv()
            .map_err(|_| StoreError::Db("a database query was cancelled".into()))?
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Db(Box::new(error))
    }
}

/// Whether `error` is the database refusing a second row with one key (first writer wins).
impl PgStore {
    /// Deletes the installation's rows of `table` (one keyed by tenant and installation); how
    /// many.
    pub(crate) fn delete_installation_rows(
        &self,
        table: &'static str,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<u64, StoreError> {
        let (tenant, installation) = (tenant.to_string(), installation.to_string());
        self.run(move |client| async move {
            Ok(client
                .execute(
                    &format!("DELETE FROM {table} WHERE tenant = $1 AND installation = $2"),
                    &[&tenant, &installation],
                )
                .await?)
        })
    }
}

pub(crate) fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Converts a count or time kept as `u64` to PostgreSQL's `bigint` (they fit: times are
/// seconds, counts are bounded by quotas), saturating rather than wrapping.
pub(crate) fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The reverse of [`bigint`]: a negative value (never written) reads as 0.
pub(crate) fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
