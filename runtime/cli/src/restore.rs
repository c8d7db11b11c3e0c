//! `airlock restore --from FILE`: a backup into an empty (or absent) data dir, checked before
//! anything is put in place: the seal, the master key against every tenant's data key, and
//! the audit trail, verified as `airlock audit verify` does (docs/deploy.md, "Backup and
//! restore"). A failed check leaves the target as it was.

use std::path::PathBuf;

use airlock_audit::Node;
use airlock_platform::backup::{self, RestoreError, RestoreFrom};
use airlock_store::backup::{BackupError, FrameError};
use clap::Args;

use super::audit::{checkpoint_key, verify_trail};
use super::exit::{Exit, fail};
use super::state::StateArgs;

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The backup file `airlock backup` wrote; --data names the data dir to restore into,
    /// which must be empty or absent
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The checkpoint public key line (or @FILE) the backup's seal and trail must verify
    /// against [default: the audit dir's audit.pub]
    #[arg(long, value_name = "KEY|@FILE")]
    key: Option<String>,
    #[command(flatten)]
    state: StateArgs,
}

pub(crate) fn restore(args: RestoreArgs) -> anyhow::Result<Exit> {
    let state = args.state.unmade()?;
    let key = checkpoint_key(args.key)?;
    let restoring = backup::restore(RestoreFrom {
        backup: &args.from,
        target: &state.data,
        master_key: state.master_key.as_deref(),
        audit_dir: &state.audit_path()?,
        key: key.clone(),
        node: Node::host(),
    })
    .map_err(refused)?;
    let manifest = restoring.manifest();
    eprintln!(
        "backup of {} (sha256 {}) checked: sealed by the audit key; the master key opens its {} \
         tenant data key(s)",
        manifest.created, manifest.digest, restoring.keys
    );
    match &restoring.continues {
        Some(chain) => eprintln!(
            "its {} audit record(s) of chain {chain} verify against the checkpoints signed \
             before it, and go on as chain {}",
            restoring.records,
            restoring.trail().chain()
        ),
        None => eprintln!("it holds no audit trail"),
    }
    if restoring.later.checkpoints > 0 {
        eprintln!(
            "note: {} checkpoint(s) of the original were signed after this backup, the newest \
             over {} records: the {} written after the backup are not in it",
            restoring.later.checkpoints,
            restoring.later.newest,
            restoring.later.newest.saturating_sub(restoring.records)
        );
    }
    match verify_trail(restoring.trail(), key)? {
        Exit::Success => {
            let target = restoring.commit().map_err(|e| match e {
                BackupError::Occupied { .. } => fail(Exit::Usage, e),
                other => other.into(),
            })?;
            eprintln!("restored into {}", target.display());
            Ok(Exit::Success)
        }
        failed => {
            eprintln!("nothing was restored: the restored audit trail does not verify");
            Ok(failed)
        }
    }
}

/// A refusal's exit: the target or the key given is the operator's to fix (2), a seal or trail
/// that does not verify is the audit's (7), a damaged file or a failing disk the host's (1).
fn refused(e: RestoreError) -> anyhow::Error {
    let exit = match &e {
        RestoreError::Backup(BackupError::Occupied { .. })
        | RestoreError::Backup(BackupError::Frames {
            problem: FrameError::NotABackup,
            ..
        })
        | RestoreError::MasterKey { .. } => Exit::Usage,
        RestoreError::Unsealed { .. } | RestoreError::Trail { .. } => Exit::Audit,
        _ => Exit::Host,
    };
    fail(exit, e)
}
