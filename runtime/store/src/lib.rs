//! The embedded store: one sled database under the data dir, one tree per concern.
//!
//! Secrets are sealed with per-tenant data keys wrapped by a master key that never enters the
//! database (architecture §6); the wrapped data keys are files of their own beside it, so
//! deleting one destroys it (sled keeps removed values in its log). The master key is read
//! only when a secret is, so commands that touch no secret neither need nor create it.
//! Acknowledged writes are flushed.
//!
//! # Layout
//! - [`keys`]: the master key's location and the per-tenant data keys (`DATA/keys/`).
//! - [`format`]: the data dir's format version, and the migration from format 1.
//! - [`api_keys`]: API key records (hashes only).
//! - [`credentials`]: sealed credential records and the source the egress broker reads them from.
//! - [`connections`]: OAuth connections (tokens from consent) and consents under way.
//! - [`tenants`]: tenants, and their deletion by crypto-shredding.
//! - [`installations`]: installed bundles with their grants, config and pending upgrades.
//! - [`kv`]: guests' key-value namespaces, sealed, with usage kept for quotas.
//! - [`webhooks`]: webhook endpoints with sealed signing secrets, and delivery ids seen.
//! - [`trust`]: the trusted publisher keys, in `DATA/trust.json` beside the database.
//! - [`backup`]: one consistent file of all of it (never the master key), and restoring one
//!   into an empty data dir; `pause`: how changes and a backup take turns.
//! - `audit`: the audit trail's records, index and chain metadata ([`AuditLog`]); the chain,
//!   the index's keys and the checkpoints are `airlock-audit`'s.
//! - [`backend`]: the store `--store` chose, sled or PostgreSQL, behind the traits.
//! - [`records`]: the plain records the traits take and return.
//! - [`traits`]: the storage traits, one per concern, with the guarantees callers rely on.
//! - [`postgres`]: the same traits on a PostgreSQL database many nodes share.
//! - `conformance`: the suite every implementation of the traits passes (tests, or the
//!   `conformance` feature).
//!
//! # Must never depend on
//! axum or clap: the server and the CLI change state through `airlock-platform`'s services,
//! which call this crate.

pub mod api_keys;
mod audit;
pub mod backend;
pub mod backup;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod connections;
pub mod credentials;
mod database;
mod format;
pub mod installations;
pub mod keys;
pub mod kv;
mod members;
mod pause;
pub mod postgres;
pub mod records;
pub mod runs;
pub mod schedules;
pub mod tenants;
pub mod traits;
pub mod trust;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use airlock_host_api::credentials::vault::VaultError;

pub use backend::Backend;
pub use records::{
    ConnectionInfo, ConnectionKey, ConnectionStatus, CredentialInfo, EndpointInfo,
    InstallationRecord, KvUsage, NewEndpoint, PendingConsent, PendingUpgrade, SecretInfo,
    SetOutcome, Stored, TakenState, TenantInfo,
};
pub use traits::{
    ApiKeys, AuditAppend, AuditLog, Connections, Consents, Credentials, IndexEntry, Installations,
    KvNamespaces, Members, Rows, Runs, Schedules, Storage, Tenants, Trust, Webhooks,
};

/// Name of the database directory inside the data dir.
const DB_DIR: &str = "db";

/// Why the store failed. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the database at {path}: {source} (is another airlock process using this data dir?)"
    )]
    Open {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend failed (its own error, boxed: the traits name no backend's types).
    #[error("database error: {0}")]
    Db(Box<dyn std::error::Error + Send + Sync>),
    /// The database stopped taking writes (a full or read-only disk): nothing was written, and
    /// it is reopened once the disk takes writes again ([`database`]).
    #[error(
        "the database cannot write to disk ({why}); it serves again once the disk takes writes"
    )]
    Unavailable { why: String },
    /// sled found a page that fails its checksum, or a log that ends inside a record it needs.
    #[error(
        "the database is damaged ({why}); do not serve it: restore the data dir from a backup (docs/deploy.md, \"A damaged store\")"
    )]
    Damaged { why: String },
    #[error("master key: {0}")]
    MasterKey(#[from] VaultError),
    #[error("stored {what} is unreadable (the database may be damaged)")]
    Corrupt { what: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} already exists")]
    Exists { what: String },
    /// A tenant's queue holds as many runs as it may: the caller retries later.
    #[error("tenant {tenant} has {limit} runs queued or running, as many as it may")]
    QueueFull { tenant: String, limit: u64 },
    #[error(
        "the {what} cannot be decrypted: the master key is not the one it was sealed with, or the record was tampered with"
    )]
    Decrypt { what: String },
    #[error(
        "the data dir is of format {found}, written by a newer airlock; this one reads format {}",
        format::FORMAT
    )]
    Format { found: u32 },
    #[error(
        "cannot migrate the data dir to format {}: {reason} (its database was left as it was)",
        format::FORMAT
    )]
    Migrate { reason: String },
    #[error(
        "the database's schema is at version {found}, written by a newer airlock; this one knows up to {known}"
    )]
    Schema { found: i32, known: i32 },
    #[error("cannot migrate the database's schema: {reason} (rolled back: nothing was changed)")]
    MigrateSchema { reason: String },
    #[error(
        "this node's master key is not the one {store} is sealed with: every node of a cluster needs the same master key (AIRLOCK_MASTER_KEY or --master-key)"
    )]
    MasterKeyMismatch { store: String },
}

impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> Self {
        database::note(&error);
        match error {
            sled::Error::Io(_) => Self::Unavailable {
                why: database::why(&error),
            },
            sled::Error::Corruption { .. } => Self::Damaged {
                why: error.to_string(),
            },
            other => Self::Db(Box::new(other)),
        }
    }
}

/// The embedded implementation of the [storage traits](traits): one sled database under the
/// data dir. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    database: Arc<database::Database>,
    data_dir: PathBuf,
    master: Arc<keys::MasterSlot>,
    /// Taken by each change of the trust file ([`trust`]).
    trust_writer: Arc<Mutex<()>>,
    /// Changes and backups take turns through it ([`pause`]).
    gate: Arc<pause::Gate>,
    /// The serving processes ([`members`]): in memory, as only one process opens the data dir.
    members: Arc<members::Live>,
    /// Taken by each change of a run ([`runs`]).
    run_lock: Arc<runs::RunLock>,
}

impl Store {
    /// Opens (or creates) the store under `data_dir`, migrating a data dir of an earlier format.
    /// The master key is taken from `AIRLOCK_MASTER_KEY`, else the file at `master_key`
    /// (default `<data_dir>/master.key`), created with mode 0600 the first time a secret is
    /// stored.
    pub fn open(data_dir: &Path, master_key: Option<&Path>) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let _lock = format::OpenLock::acquire(data_dir)?;
        format::recover(data_dir)?;
        let path = data_dir.join(DB_DIR);
        let fresh = !path.exists();
        let store = Self {
            database: Arc::new(database::Database::open(&path)?),
            data_dir: data_dir.to_path_buf(),
            master: Arc::new(keys::MasterSlot::new(
                master_key.map_or_else(|| data_dir.join(keys::MASTER_KEY_FILE), Path::to_path_buf),
            )),
            trust_writer: Arc::default(),
            gate: Arc::default(),
            members: Arc::default(),
            run_lock: Arc::default(),
        };
        store.sweep_key_dir()?;
        let store = store.upgrade(fresh)?;
        store.index_runs()?;
        Ok(store)
    }

    /// The database as it is open now (reopened after a failed write: [`database`]).
    fn db(&self) -> Result<Arc<database::Opening>, StoreError> {
        self.database.get()
    }

    fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db()?.open_tree(name)?)
    }

    /// Reads every record of every tree back; returns how many there are. sled checks each
    /// page it reads from disk against its checksum, so a damaged database is found here, when
    /// `airlock serve` starts, rather than in the middle of a request.
    pub fn read_all(&self) -> Result<u64, StoreError> {
        let db = self.db()?;
        let mut records = 0;
        for name in db.tree_names() {
            for entry in db.open_tree(&name)?.iter() {
                entry?;
                records += 1;
            }
        }
        Ok(records)
    }

    /// Held by every change while it writes, so a backup sees it whole or not at all.
    fn writing(&self) -> pause::Pass<'_> {
        self.gate.pass()
    }
}

/// Helpers for tests that look for plaintext in the files of a data dir.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    /// Every byte of every file under `dir`.
    pub fn raw_bytes(dir: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                out.extend(raw_bytes(&path));
            } else {
                out.extend(std::fs::read(&path).expect("read"));
            }
        }
        out
    }

    /// Whether `needle` occurs in `haystack`.
    pub fn holds(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }
}

/// The storage conformance suite on the sled store, each case in a fresh data dir.
#[cfg(test)]
mod conformance_on_sled {
    use std::sync::Arc;

    use crate::conformance::Subject;

    fn fresh() -> Subject {
        let dir = tempfile::tempdir().expect("tempdir");
        let master = dir.path().join("master.key");
        let store = crate::Store::open(&dir.path().join("data"), Some(&master)).expect("store");
        Subject::new(Arc::new(store), dir)
    }

    crate::conformance_suite!(fresh());
}

/// The storage conformance suite on the PostgreSQL store, each case in a fresh database
/// (skipped, saying why, when no PostgreSQL server is given: see [`postgres::testing`]).
#[cfg(test)]
mod conformance_on_postgres {
    use std::sync::Arc;

    use crate::conformance::Subject;
    use crate::postgres::testing::TestDatabase;

    fn fresh(case: &str) -> Option<Subject> {
        let database = TestDatabase::create(case)?;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = database.store(&dir.path().join("master.key"));
        Some(Subject::new(Arc::new(store), (dir, database)))
    }

    crate::conformance_suite!(optional: fresh(module_path!()));
}
