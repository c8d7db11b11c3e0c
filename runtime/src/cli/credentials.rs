//! `airlock credentials set|list|delete`: an installation's credentials in the encrypted store.
//!
//! Values are read from stdin, never argv, and never printed back: `list` shows names, types,
//! the origins each is sent to, and when it was created and last rotated.

use std::io::Read;
use std::path::PathBuf;

use airlock_host_api::audit::{AuditEvent, Change};

use airlock_host_api::credentials::{MAX_SECRET_LEN, Secret};
use anyhow::Context;
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use super::{EXIT_INVALID, State, fail};
use crate::clock::rfc3339;
use crate::ids::{InstallationId, TenantId};
use crate::loader::credential_spec;
use crate::manifest::LoadedManifest;
use crate::store::Store;
use crate::store::credentials::SetOutcome;

#[derive(Debug, Args)]
pub(crate) struct CredentialsArgs {
    #[command(subcommand)]
    command: CredentialsCommand,
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
        /// The integration the installation runs (directory or airlock.toml): its manifest
        /// declares the credential's type and where it is sent
        #[arg(long, value_name = "PATH")]
        integration: PathBuf,
        /// The credential name, as declared in `[credentials.<name>]`
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

pub(crate) fn credentials(args: CredentialsArgs, state: &State) -> anyhow::Result<u8> {
    match args.command {
        CredentialsCommand::Set {
            scope,
            integration,
            name,
        } => {
            let manifest = LoadedManifest::load(&integration).map_err(|e| fail(EXIT_INVALID, e))?;
            let manifest = &manifest.manifest;
            let decl = manifest
                .credentials
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, d)| d.get_ref())
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        manifest.credentials.keys().map(|k| k.as_str()).collect();
                    fail(
                        EXIT_INVALID,
                        anyhow::anyhow!(
                            "{} declares no credential `{name}`; it declares: {}",
                            manifest.integration.id,
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    )
                })?;
            let kind = credential_spec(decl).credential_type();
            let secret = Secret::from_line(kind, read_stdin()?)
                .with_context(|| {
                    format!("credential `{name}` is not a valid {} value", kind.as_str())
                })
                .map_err(|e| fail(EXIT_INVALID, e))?;
            let (store, trail) = state.open()?;
            let outcome = store.set_credential(
                &scope.tenant,
                &scope.installation,
                &name,
                manifest.credential_origins(&name),
                &secret,
                kind,
            )?;
            trail.append_blocking(changed(&scope, &name, Change::Set))?;
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
            Ok(0)
        }
        CredentialsCommand::List { scope, json } => {
            let store = Store::open(&state.data, state.master_key.as_deref())?;
            let list = store.list_credentials(&scope.tenant, &scope.installation)?;
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
            Ok(0)
        }
        CredentialsCommand::Delete { scope, name } => {
            let (store, trail) = state.open()?;
            if store.delete_credential(&scope.tenant, &scope.installation, &name)? {
                trail.append_blocking(changed(&scope, &name, Change::Deleted))?;
                eprintln!("deleted credential `{name}`");
                Ok(0)
            } else {
                Err(fail(
                    EXIT_INVALID,
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

/// The security event for a change to `name` in `scope` (its name, never its value).
fn changed(scope: &Scope, name: &str, change: Change) -> AuditEvent {
    AuditEvent::CredentialChanged {
        tenant: scope.tenant.to_string(),
        installation: scope.installation.to_string(),
        credential: name.to_string(),
        change,
    }
}

/// Reads the value from stdin, refusing more than a value could be before reading it all.
fn read_stdin() -> anyhow::Result<String> {
    let mut bytes = Zeroizing::new(Vec::new());
    std::io::stdin()
        .take(MAX_SECRET_LEN as u64 + 3)
        .read_to_end(&mut bytes)
        .context("cannot read the value from stdin")?;
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        fail(
            EXIT_INVALID,
            anyhow::anyhow!("the value on stdin is not UTF-8 text"),
        )
    })
}
