//! `airlock backup --to FILE`: one consistent file of the data dir's store, sealed with the
//! audit key, never holding the master key (docs/deploy.md, "Backup and restore"). Taken from
//! the store, or, while `airlock serve` holds it, by the server through its operator socket.

use std::path::PathBuf;
use std::time::Duration;

use airlock_platform::backup::{self, TakeError};
use airlock_store::Backend;
use airlock_store::backup::{BackupError, Manifest};
use clap::Args;

use super::exit::{Exit, fail};
use super::reader::{Reader, exchange};
use super::state::StateArgs;

/// How long a running server may take to write a backup.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// The backup file to write (mode 0600); refused if it exists
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    #[command(flatten)]
    state: StateArgs,
}

pub(crate) fn backup(args: BackupArgs) -> anyhow::Result<Exit> {
    let state = args.state.state()?;
    // The server may run elsewhere in the file system's view: it gets the whole path.
    let to = std::path::absolute(&args.to)?;
    let manifest = match state.reader()? {
        Reader::Store(Backend::Postgres(_)) => {
            return Err(fail(
                Exit::Usage,
                anyhow::anyhow!(
                    "the store is PostgreSQL: back it up with pg_dump (docs/deploy.md, \
                     \"Backup and restore\"); airlock backup is for the embedded store"
                ),
            ));
        }
        Reader::Store(Backend::Sled(store)) => {
            backup::take(&store, &state.audit()?, &to).map_err(|e| match e {
                TakeError::Backup(BackupError::Exists { .. }) => fail(Exit::Usage, e),
                other => other.into(),
            })?
        }
        Reader::Server(socket) => {
            let request = serde_json::to_vec(&serde_json::json!({ "to": to }))?;
            let (status, body) = exchange(
                &socket,
                "POST",
                "/v1/backup",
                Some(&request),
                SERVER_TIMEOUT,
            )?;
            let said = || String::from_utf8_lossy(&body).trim().to_string();
            match status {
                201 => serde_json::from_slice::<Manifest>(&body)?,
                409 => return Err(fail(Exit::Usage, anyhow::anyhow!("{}", said()))),
                _ => anyhow::bail!("the running server took no backup: {status} {}", said()),
            }
        }
    };
    eprintln!(
        "wrote {} ({} bytes, sha256 {}): {} records in {} trees and {} file(s), as of {}, \
         sealed by audit key {}",
        to.display(),
        manifest.bytes,
        manifest.digest,
        manifest.records,
        manifest.trees,
        manifest.files,
        manifest.created,
        manifest.seal.split(' ').next().unwrap_or_default(),
    );
    eprintln!(
        "the master key is not in it, on purpose: back it up apart, as the audit dir (restoring \
         needs both)"
    );
    Ok(Exit::Success)
}
