//! `airlock tenant create|list|delete`.

use airlock_platform::tenants::{self, TenantError};
use clap::{Args, Subcommand};

use super::exit::{Exit, fail};
use super::state::StateArgs;
use airlock_runtime::clock::rfc3339;
use airlock_runtime::ids::TenantId;

#[derive(Debug, Args)]
pub(crate) struct TenantArgs {
    #[command(subcommand)]
    command: TenantCommand,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant
    Create { tenant: TenantId },
    /// List tenants and how many installations each has
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a tenant: its data key first (its secrets become unreadable at once), then its
    /// installations and credentials
    Delete { tenant: TenantId },
}

pub(crate) fn tenant(args: TenantArgs) -> anyhow::Result<Exit> {
    let state = args.state.state()?;
    let refused = |e: TenantError| match e {
        TenantError::Exists(_) | TenantError::Unknown(_) => fail(Exit::Usage, e),
        other => other.into(),
    };
    match args.command {
        TenantCommand::Create { tenant } => {
            let (store, trail) = state.open()?;
            tenants::create(&*store, &trail, &tenant).map_err(refused)?;
            eprintln!("created tenant {tenant}");
        }
        TenantCommand::List { json } => {
            let reader = state.reader()?;
            let tenants = reader.tenants()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else if tenants.is_empty() {
                eprintln!("no tenants (create one with `airlock tenant create NAME`)");
            } else {
                for t in tenants {
                    let id: TenantId = t.id.parse()?;
                    let installations = reader.installations(Some(&id))?.len();
                    println!(
                        "{:<24} created {}  {installations} installation(s)",
                        t.id,
                        rfc3339(t.created)
                    );
                }
            }
        }
        TenantCommand::Delete { tenant } => {
            let (store, trail) = state.open()?;
            tenants::delete(&*store, &trail, &tenant).map_err(refused)?;
            eprintln!(
                "deleted tenant {tenant}: its data key is gone, so its stored secrets can never \
                 be decrypted again; its installations and credentials are removed"
            );
        }
    }
    Ok(Exit::Success)
}
