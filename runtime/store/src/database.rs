//! The sled database under a [`Store`](crate::Store), reopened after a write to disk failed.
//!
//! Once one of sled's writes to disk fails (a full or read-only disk), that sled instance
//! refuses every later write with the same error, for good. Every acknowledged write was
//! flushed before it was acknowledged, so it is on disk; the store closes the instance and
//! opens the database again, at most once a second, until the disk takes writes: sled then
//! recovers its log up to the last complete write, and the store serves again without a
//! restart (docs/deploy.md, "Full and read-only disks").
//!
//! Noticing costs nothing on the hot path: every sled I/O error in the process bumps
//! [`IO_FAILURES`], and an opening whose count is behind is checked with a flush before it
//! is handed out again.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::StoreError;
use crate::audit::AuditTrees;

/// How many sled operations failed on I/O in this process, in any database.
static IO_FAILURES: AtomicU64 = AtomicU64::new(0);

/// How long after a failed attempt to reopen the database the next one is made.
const RETRY: Duration = Duration::from_secs(1);

/// Counts `error` if it says the disk failed a read or write.
pub(crate) fn note(error: &sled::Error) {
    if matches!(
        error,
        sled::Error::Io(_) | sled::Error::Corruption { .. } | sled::Error::ReportableBug(_)
    ) {
        IO_FAILURES.fetch_add(1, Ordering::AcqRel);
    }
}

/// What `error` says went wrong, in words: sled hands out copies of its first I/O failure
/// worded as their `Debug`, so an I/O error is named by its kind ("no storage space",
/// "read-only filesystem or storage medium").
pub(crate) fn why(error: &sled::Error) -> String {
    match error {
        sled::Error::Io(e) => e.kind().to_string(),
        other => other.to_string(),
    }
}

/// One database directory, open or waiting to be reopened.
pub(crate) struct Database {
    path: PathBuf,
    current: RwLock<Option<Arc<Opening>>>,
    /// While `current` is empty: why the last opening was closed, and when reopening was last
    /// tried.
    closed: Mutex<Closed>,
}

#[derive(Default)]
struct Closed {
    why: String,
    tried: Option<Instant>,
}

/// One opening of the database, with the trees opened once per opening.
pub(crate) struct Opening {
    db: sled::Db,
    /// The audit trail's trees, once opened ([`crate::audit`]).
    pub(crate) audit: OnceLock<AuditTrees>,
    /// The failure count at which this opening last flushed without error.
    checked: AtomicU64,
}

impl Deref for Opening {
    type Target = sled::Db;

    fn deref(&self) -> &sled::Db {
        &self.db
    }
}

impl Database {
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let failures = IO_FAILURES.load(Ordering::Acquire);
        Ok(Self {
            current: RwLock::new(Some(Arc::new(Opening::new(open_db(path)?, failures)))),
            path: path.to_path_buf(),
            closed: Mutex::default(),
        })
    }

    /// The database as it is open now; when an I/O error happened since it was last checked,
    /// it is checked first, and reopened if it failed.
    pub(crate) fn get(&self) -> Result<Arc<Opening>, StoreError> {
        let failures = IO_FAILURES.load(Ordering::Acquire);
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(opening) = current.as_ref()
            && opening.checked.load(Ordering::Acquire) == failures
        {
            return Ok(Arc::clone(opening));
        }
        drop(current);
        self.check(failures)
    }

    fn check(&self, failures: u64) -> Result<Arc<Opening>, StoreError> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(opening) = current.take() {
            match opening.db.flush() {
                Ok(_) => {
                    opening.checked.store(failures, Ordering::Release);
                    *current = Some(Arc::clone(&opening));
                    return Ok(opening);
                }
                Err(e) => {
                    tracing::error!(
                        path = %self.path.display(), error = %e,
                        "the database failed a write; closing it, to reopen it when the disk takes writes"
                    );
                    *closed = Closed {
                        why: why(&e),
                        tried: None,
                    };
                }
            }
        }
        if closed.tried.is_some_and(|at| at.elapsed() < RETRY) {
            return Err(StoreError::Unavailable {
                why: closed.why.clone(),
            });
        }
        closed.tried = Some(Instant::now());
        // Requests still holding the closed opening keep its lock on the files until they end.
        let opening = open_db(&self.path).map_err(|e| StoreError::Unavailable {
            why: format!("{}; reopening it failed: {e}", closed.why),
        })?;
        tracing::info!(path = %self.path.display(), "the database was reopened");
        let opening = Arc::new(Opening::new(opening, failures));
        *current = Some(Arc::clone(&opening));
        Ok(opening)
    }
}

impl Opening {
    fn new(db: sled::Db, checked: u64) -> Self {
        Self {
            db,
            audit: OnceLock::new(),
            checked: AtomicU64::new(checked),
        }
    }
}

/// Opens the sled database at `path`, first removing any snapshot sled left half-written.
///
/// sled writes a snapshot as `snap.<lsn>.generating` and renames it when complete, but it
/// also takes a leftover `.generating` file (a write that failed on a full disk, a process
/// killed mid-write) for its newest snapshot, and then refuses to open the database at all.
/// Such a file is never needed: without it sled starts from the previous snapshot, or from
/// none, and replays its log.
pub(crate) fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    let open_error = |source: std::io::Error| StoreError::Open {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(open_error)? {
            let name = entry.map_err(open_error)?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("snap.") && name.ends_with(".generating") {
                std::fs::remove_file(path.join(&*name)).map_err(open_error)?;
                tracing::warn!(path = %path.display(), file = %name, "removed a half-written sled snapshot");
            }
        }
    }
    sled::Config::new()
        .path(path)
        .open()
        .map_err(|source| match source {
            sled::Error::Corruption { .. } => StoreError::Damaged {
                why: format!("{}: {source}", path.display()),
            },
            source => StoreError::Open {
                path: path.to_path_buf(),
                source: Box::new(source),
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_written_snapshot_does_not_keep_the_database_shut() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("db");
        {
            let db = open_db(&path).expect("open");
            db.insert("kept", "yes").expect("insert");
            db.flush().expect("flush");
        }
        // What a snapshot write cut off by a full disk leaves: sled alone refuses this.
        let stray = path.join("snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&stray, b"").expect("stray snapshot");
        assert!(sled::Config::new().path(&path).open().is_err());

        let db = open_db(&path).expect("opens");
        assert_eq!(db.get("kept").expect("get").as_deref(), Some(&b"yes"[..]));
        assert!(!stray.exists());
    }
}
