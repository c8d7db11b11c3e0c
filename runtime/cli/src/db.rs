//! `airlock db migrate|status`: the schema of a PostgreSQL store (docs/deploy.md). Every verb
//! that opens the store applies missing migrations itself, under a lock; `migrate` does it
//! alone (before a rolling start, say) and `status` only reads.

use std::path::PathBuf;

use airlock_store::keys::MASTER_KEY_FILE;
use airlock_store::postgres::{PgStore, Schema, StoreUrl};
use clap::{Args, Subcommand};

use super::exit::{Exit, fail};
use super::state::StateArgs;

#[derive(Debug, Args)]
pub(crate) struct DbArgs {
    #[command(subcommand)]
    command: DbCommand,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Apply the migrations this build knows and the database lacks (under a lock: nodes
    /// starting meanwhile wait), and say which
    Migrate,
    /// List the migrations, applied and pending, without changing anything; exits 1 unless
    /// the schema is the one this build writes
    Status,
}

pub(crate) fn db(args: DbArgs) -> anyhow::Result<Exit> {
    let state = args.state.unmade()?;
    let Some(url) = state.store.as_ref() else {
        return Err(fail(
            Exit::Usage,
            anyhow::anyhow!(
                "airlock db works on a PostgreSQL store: pass --store postgres://… or set \
                 AIRLOCK_STORE (the embedded store migrates its data dir itself when opened)"
            ),
        ));
    };
    // Neither verb seals anything: the master key is named only because a store needs one.
    let master = state
        .master_key
        .clone()
        .unwrap_or_else(|| PathBuf::from(MASTER_KEY_FILE));
    match args.command {
        DbCommand::Migrate => {
            let store = connect(url, &master, Schema::AsItIs)?;
            let applied = store.migrate()?;
            if applied.is_empty() {
                println!("{}: the schema is current; nothing to apply", store.shown());
            }
            for version in applied {
                println!("{}: applied migration {version:04}", store.shown());
            }
            Ok(Exit::Success)
        }
        DbCommand::Status => {
            let store = connect(url, &master, Schema::AsItIs)?;
            let status = store.schema_status()?;
            println!("{}", store.shown());
            for migration in &status.migrations {
                let when = migration.applied.as_deref().unwrap_or("pending");
                let known = if migration.version > status.latest {
                    " (unknown to this airlock: written by a newer one)"
                } else {
                    ""
                };
                println!(
                    "  {:04} {:<24} {when}{known}",
                    migration.version, migration.name
                );
            }
            if status.current() {
                println!("schema: current (version {})", status.applied);
                Ok(Exit::Success)
            } else if status.applied > status.latest {
                println!(
                    "schema: version {}, newer than this airlock's {}: upgrade airlock",
                    status.applied, status.latest
                );
                Ok(Exit::Host)
            } else {
                println!(
                    "schema: version {} of {}: run `airlock db migrate`",
                    status.applied, status.latest
                );
                Ok(Exit::Host)
            }
        }
    }
}

fn connect(url: &StoreUrl, master: &std::path::Path, schema: Schema) -> anyhow::Result<PgStore> {
    PgStore::connect(url, master, schema).map_err(|e| fail(Exit::Host, e))
}
