//! Rotating the master key (docs/deploy.md, "Rotating the master key"): a new key is staged
//! beside the key file (`FILE.next`, 0600), every tenant's data key is re-wrapped under it, the
//! old key file is kept as `FILE.retired-<unix time>` for the backups it still opens, and the new
//! key takes the key file's place. Recorded as `master-key-rotated`.
//!
//! Every step can be run again: a staged key is reused, a data key the new key already opens
//! is left as it is, and a key file whose staged successor already opens the store is swapped
//! without re-wrapping. So a rotation cut short by a crash finishes when run again, and on
//! PostgreSQL running it on each node (after the first re-wrapped the shared keys) puts the new
//! key in place there too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_audit::AuditTrail;
use airlock_host_api::audit::{AuditEvent, AuditUnavailable};
use airlock_host_api::credentials::vault::{MasterKey, VaultError};
use airlock_runtime::clock::now_unix;
use airlock_runtime::fsutil;
use airlock_store::keys::staged_key_path;
use airlock_store::{Storage, StoreError};

/// Why a rotation stopped; nothing it did so far is undone, and running it again goes on.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(
        "the master key comes from AIRLOCK_MASTER_KEY: a rotation replaces a key file. Put the \
         key in a file (mode 0600), pass it with --master-key, and rotate that"
    )]
    FromEnvironment,
    #[error("no master key at {} to rotate", path.display())]
    NoKey { path: PathBuf },
    #[error(transparent)]
    Key(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditUnavailable),
    #[error("cannot put the new master key in place of {}: {source}", path.display())]
    Swap {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotated {
    /// Data keys re-wrapped under the new key by this run.
    pub rewrapped: u64,
    /// Where the old key file now is.
    pub retired: PathBuf,
}

/// Makes the new master key beside `key_file` (`FILE.next`), or returns the one a rotation
/// already staged there. Before rotating the keys of a cluster, the operator copies it beside
/// every node's key file: a node whose key no longer opens the store reads it from there.
pub fn stage(key_file: &Path) -> Result<(PathBuf, MasterKey), RotateError> {
    refuse_environment()?;
    let staged = staged_key_path(key_file);
    let key = match MasterKey::load(&staged) {
        Ok(key) => key,
        Err(VaultError::KeyFile { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            MasterKey::generate(&staged)?
        }
        Err(e) => return Err(e.into()),
    };
    Ok((staged, key))
}

/// Rotates the master key in `key_file`, which `store` was opened with: stages the new key
/// (or takes the staged one), re-wraps every data key under it, records the rotation, and
/// swaps the files.
pub fn rotate(
    store: &dyn Storage,
    trail: &AuditTrail,
    key_file: &Path,
) -> Result<Rotated, RotateError> {
    if !key_file.exists() {
        return Err(RotateError::NoKey {
            path: key_file.to_path_buf(),
        });
    }
    let (staged, key) = stage(key_file)?;
    let key = Arc::new(key);
    let rewrapped = store.rewrap_data_keys(&key)?;
    trail.append_blocking(AuditEvent::MasterKeyRotated { rewrapped })?;
    let retired = retire(key_file, &staged)?;
    Ok(Rotated { rewrapped, retired })
}

/// Keeps the old key file as `FILE.retired-<unix time>[-N]` (a hard link, so `FILE` never
/// goes missing) and renames the staged key over `FILE`.
fn retire(key_file: &Path, staged: &Path) -> Result<PathBuf, RotateError> {
    let swap = |source| RotateError::Swap {
        path: key_file.to_path_buf(),
        source,
    };
    // The new key belongs to whoever owned the old one (a rotation run as root must not leave
    // the service a key it cannot read).
    fsutil::same_owner(staged, key_file).map_err(swap)?;
    let now = now_unix();
    let mut retired;
    let mut n = 0u32;
    loop {
        let mut name = key_file.as_os_str().to_owned();
        name.push(format!(".retired-{now}"));
        if n > 0 {
            name.push(format!("-{n}"));
        }
        retired = PathBuf::from(name);
        match std::fs::hard_link(key_file, &retired) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(swap(e)),
        }
    }
    std::fs::rename(staged, key_file).map_err(swap)?;
    fsutil::sync_dir(fsutil::parent_of(key_file)).map_err(swap)?;
    Ok(retired)
}

/// A key from the environment has no file to replace.
fn refuse_environment() -> Result<(), RotateError> {
    if MasterKey::in_environment() {
        return Err(RotateError::FromEnvironment);
    }
    Ok(())
}
