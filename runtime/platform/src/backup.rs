//! Backups of the embedded store and restores of them (docs/deploy.md, "Backup and restore").
//! The store writes and reads the file (`airlock_store::backup`); here a backup is sealed with
//! the audit key, and a restore is checked before anything is put in place: the seal, every
//! tenant's data key against the master key, and the trail against the checkpoints of the
//! chain it was written under, after which it goes on as a new chain. The CLI takes a backup
//! itself, or through the running server's operator socket, which calls the same [`take`].

use std::path::{Path, PathBuf};

use airlock_audit::verify::{Later, Report, verify_restored};
use airlock_audit::{AuditDir, AuditError, AuditTrail, Node, seal, trail};
use airlock_runtime::bundle::PublicKey;
use airlock_store::backup::{self as store_backup, BackupError, Manifest, Staged};
use airlock_store::keys::MASTER_KEY_FILE;
use airlock_store::{AuditLog as _, Store, StoreError};

/// Writes a backup of `store` to the new file `to`, sealed with the checkpoint key of `audit`
/// (so a restore can tell it from a file someone cut records from), and returns its manifest.
pub fn take(store: &Store, audit: &AuditDir, to: &Path) -> Result<Manifest, TakeError> {
    let signer = audit.signer()?;
    Ok(store.backup(to, |digest, created| seal::seal(&signer, digest, created))?)
}

/// Why a backup was not taken.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The audit key, to seal the backup with.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Why a backup was not restored. Nothing was put in place.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(
        "the backup is not sealed by audit key {key}: it was made with another audit dir, or \
         changed after it was made"
    )]
    Unsealed { key: String },
    #[error(
        "the master key does not open the backup's tenant data keys ({cause}); give the one \
         the data dir used, with --master-key FILE or AIRLOCK_MASTER_KEY (a backup never holds it)"
    )]
    MasterKey { cause: StoreError },
    #[error(
        "the backup's audit trail does not verify against the checkpoints of chain {chain}: {}",
        problems(report)
    )]
    Trail { chain: String, report: Box<Report> },
}

/// The break and the checkpoint problems of a report that is not ok, in one line.
fn problems(report: &Report) -> String {
    let broken = report.broken.as_ref().map(|b| format!("BROKEN at {b}"));
    broken
        .into_iter()
        .chain(report.anchor_problems.iter().cloned())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A restore checked and ready to put in place, its trail open for one more look (`airlock
/// restore` runs `audit verify` on it). Dropped, it leaves nothing behind but the new chain's
/// files in the audit dir (its first checkpoint and target key), which no data dir names.
pub struct Restoring {
    staged: Staged,
    /// Holds the restored store open.
    trail: AuditTrail,
    /// The tenants' data keys, each opened with the master key.
    pub keys: usize,
    /// The chain the records were written under, if the backup held a trail.
    pub continues: Option<String>,
    /// The records restored.
    pub records: u64,
    /// The original's checkpoints signed after the backup was taken.
    pub later: Later,
}

impl Restoring {
    pub fn manifest(&self) -> &Manifest {
        self.staged.manifest()
    }

    /// The restored trail, already a new chain.
    pub fn trail(&self) -> &AuditTrail {
        &self.trail
    }

    /// Closes the store and puts the restored data dir in place.
    pub fn commit(self) -> Result<PathBuf, BackupError> {
        let Self { staged, trail, .. } = self;
        drop(trail);
        staged.commit()
    }
}

/// Where a restore reads from, writes to and checks against.
pub struct RestoreFrom<'a> {
    pub backup: &'a Path,
    /// The data dir to restore into: absent or empty.
    pub target: &'a Path,
    /// The master key file [default: `TARGET/master.key`]; `AIRLOCK_MASTER_KEY` comes first.
    pub master_key: Option<&'a Path>,
    /// The audit dir the backup was sealed with, and its trail's checkpoints kept.
    pub audit_dir: &'a Path,
    /// The checkpoint key to check against [default: the audit dir's].
    pub key: Option<PublicKey>,
    /// Named by the checkpoint the new chain starts with.
    pub node: Node,
}

/// Restores a backup beside its target and checks it (see the module doc); nothing is in
/// place until [`Restoring::commit`].
pub fn restore(from: RestoreFrom<'_>) -> Result<Restoring, RestoreError> {
    let staged = store_backup::stage(from.backup, from.target)?;
    let dir = AuditDir::open(from.audit_dir, staged.path())?;
    let key = match from.key {
        Some(key) => key,
        None => dir.public_key()?,
    };
    // The key and the keys it was rotated to (a backup may be sealed by any of them).
    let audit_keys = dir.key_chain(key.clone())?;
    let manifest = staged.manifest();
    let sealed = audit_keys
        .keys()
        .any(|key| seal::is_sealed_by(&manifest.seal, &manifest.digest, &manifest.created, key));
    if !sealed {
        return Err(RestoreError::Unsealed {
            key: key.key_id().to_string(),
        });
    }
    let master = from
        .master_key
        .map_or_else(|| from.target.join(MASTER_KEY_FILE), Path::to_path_buf);
    let store = Store::open(staged.path(), Some(&master))?;
    let keys = store.check_data_keys().map_err(|e| match e {
        StoreError::MasterKey(_) | StoreError::Decrypt { .. } => {
            RestoreError::MasterKey { cause: e }
        }
        other => RestoreError::Store(other),
    })?;
    let lines = store
        .audit_records(0)
        .map(|row| row.map(|(seq, line)| (seq, line.to_vec())))
        .collect::<Result<Vec<_>, _>>()?;
    let continues = staged.trail().chain.clone();
    let (trail, later) = match &continues {
        Some(chain) if trail::is_chain_id(chain) => {
            let checkpoints = dir.checkpoints(chain)?;
            let checkpointed = staged.trail().checkpointed;
            let (report, later) = verify_restored(&lines, &checkpoints, &audit_keys, checkpointed);
            if !report.is_ok() {
                return Err(RestoreError::Trail {
                    chain: chain.clone(),
                    report: Box::new(report),
                });
            }
            let (trail, _first) = AuditTrail::open_restored(&store, dir, from.node, chain)?;
            (trail, later)
        }
        None if lines.is_empty() => (
            AuditTrail::open_as(&store, dir, from.node)?,
            Later::default(),
        ),
        // A chain id that is not one, or records without one: the trail's metadata is damaged.
        _ => return Err(AuditError::Meta.into()),
    };
    Ok(Restoring {
        staged,
        trail,
        keys,
        continues,
        records: lines.len() as u64,
        later,
    })
}

#[cfg(test)]
mod tests;
