//! `airlock credentials set|list|delete`: an installation's credentials in the encrypted store,
//! under the names its installed version declares.
//!
//! Values are read from stdin, never argv, and never printed back: `list` shows names, types,
//! the origins each is sent to, and when it was created and last rotated.

use std::io::Read;

use airlock_host_api::credentials::MAX_SECRET_LEN;
use anyhow::Context;
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use super::exit::{Exit, fail, failed};
use super::state::StateArgs;
use airlock_runtime::clock::rfc3339;
use airlock_runtime::engine::EngineSettings;
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_store::SetOutcome;

#[derive(Debug, Args)]
pub(crate) struct CredentialsArgs {
    #[command(subcommand)]
    command: CredentialsCommand,
    #[command(flatten)]
    state: StateArgs,
}

/// Whose credentials.
#[derive(Debug, Args)]
pub(crate) struct Scope {
    /// The tenant
    #[arg(long)]
    pub tenant: TenantId,
    /// The installation (of an integration, for that tenant)
    #[arg(long)]
    pub installation: InstallationId,
}

#[derive(Debug, Subcommand)]
enum CredentialsCommand {
    /// Store a credential's value, read from stdin (one line), encrypted at rest
    Set {
        #[command(flatten)]
        scope: Scope,
        /// The credential name, as the installed version declares it in `[credentials.<name>]`
        name: String,
    },
    /// List an installation's credentials (never their values)
    List {
        #[command(flatten)]
        scope: Scope,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete a stored credential
    Delete {
        #[command(flatten)]
        scope: Scope,
        name: String,
    },
}

pub(crate) fn credentials(args: CredentialsArgs) -> anyhow::Result<Exit> {
    let state = args.state.state()?;
    match args.command {
        CredentialsCommand::Set { scope, name } => {
            let value = read_stdin()?;
            let opened = state.open_installations(EngineSettings::default())?;
            let (outcome, kind) = opened
                .installer()
                .set_credential(&scope.tenant, &scope.installation, &name, value)
                .map_err(failed)?;
            let verb = match outcome {
                SetOutcome::Created => "stored",
                SetOutcome::Rotated => "rotated",
            };
            eprintln!(
                "{verb} credential `{name}` ({}) for tenant {} installation {}",
                kind.as_str(),
                scope.tenant,
                scope.installation
            );
            opened.trail.checkpoint()?;
            Ok(Exit::Success)
        }
        CredentialsCommand::List { scope, json } => {
            let list = state
                .store()?
                .list_credentials(&scope.tenant, &scope.installation)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                eprintln!(
                    "no credentials for tenant {} installation {}",
                    scope.tenant, scope.installation
                );
            } else {
                println!(
                    "{:<20} {:<8} {:<22} {:<22} ORIGINS",
                    "NAME", "TYPE", "CREATED", "ROTATED"
                );
                for c in list {
                    println!(
                        "{:<20} {:<8} {:<22} {:<22} {}",
                        c.name,
                        c.credential_type.as_str(),
                        rfc3339(c.created),
                        c.rotated.map_or("-".to_string(), rfc3339),
                        c.origins.join(" ")
                    );
                }
            }
            Ok(Exit::Success)
        }
        CredentialsCommand::Delete { scope, name } => {
            let opened = state.open_installations(EngineSettings::default())?;
            let installer = opened.installer();
            if installer.delete_credential(&scope.tenant, &scope.installation, &name)? {
                eprintln!("deleted credential `{name}`");
                opened.trail.checkpoint()?;
                Ok(Exit::Success)
            } else {
                Err(fail(
                    Exit::Usage,
                    anyhow::anyhow!(
                        "tenant {} installation {} has no credential `{name}`",
                        scope.tenant,
                        scope.installation
                    ),
                ))
            }
        }
    }
}

/// Reads the value from stdin, refusing more than a value could be before reading it all.
pub(super) fn read_stdin() -> anyhow::Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(Vec::new());
    std::io::stdin()
        .take(MAX_SECRET_LEN as u64 + 3)
        .read_to_end(&mut bytes)
        .context("cannot read the value from stdin")?;
    String::from_utf8(bytes.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| {
            fail(
                Exit::Usage,
                anyhow::anyhow!("the value on stdin is not UTF-8 text"),
            )
        })
}
