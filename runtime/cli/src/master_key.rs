//! `airlock master-key stage|rotate`: a new master key for the tenants' data keys
//! (docs/deploy.md, "Rotating the master key").

use airlock_platform::master_key::{self, RotateError};
use airlock_store::keys::MASTER_KEY_FILE;
use clap::{Args, Subcommand};

use super::exit::{Exit, fail};
use super::state::StateArgs;

#[derive(Debug, Args)]
pub(crate) struct MasterKeyArgs {
    #[command(subcommand)]
    command: MasterKeyCommand,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, Subcommand)]
enum MasterKeyCommand {
    /// Make the next master key beside the key file (FILE.next, 0600) without using it: on a
    /// cluster, copy it beside every node's key file before `rotate`
    Stage,
    /// Re-wrap every tenant's data key under the staged key (made if none is), keep the old key
    /// file as FILE.retired-TIME for older backups, and put the new key in its place. On the
    /// embedded store, stop `airlock serve` first; on PostgreSQL, nodes keep serving
    Rotate,
}

pub(crate) fn master_key(args: MasterKeyArgs) -> anyhow::Result<Exit> {
    let state = args.state.state()?;
    let key_file = state
        .master_key
        .clone()
        .unwrap_or_else(|| state.data.join(MASTER_KEY_FILE));
    let refused = |e: RotateError| match e {
        RotateError::FromEnvironment | RotateError::NoKey { .. } => fail(Exit::Usage, e),
        other => other.into(),
    };
    match args.command {
        MasterKeyCommand::Stage => {
            let (staged, _) = master_key::stage(&key_file).map_err(refused)?;
            println!("{}", staged.display());
            eprintln!(
                "the next master key is staged at {}; on a cluster, copy it (mode 0600) beside \
                 every node's key file, then run `airlock master-key rotate`",
                staged.display()
            );
        }
        MasterKeyCommand::Rotate => {
            let (store, trail) = state.open()?;
            let rotated = master_key::rotate(&*store, &trail, &key_file).map_err(refused)?;
            eprintln!(
                "rotated the master key: {} data key(s) re-wrapped; {} holds the new key. The \
                 old one is at {}: a backup taken before now needs it to restore; shred it when \
                 no backup you keep does",
                rotated.rewrapped,
                key_file.display(),
                rotated.retired.display()
            );
        }
    }
    Ok(Exit::Success)
}
