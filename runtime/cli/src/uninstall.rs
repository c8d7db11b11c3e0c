//! `airlock uninstall --tenant T --installation I`: removes an installation and everything it
//! owns, each removal audited (docs/api.md, `DELETE /v1/installations/{installation}`).

use clap::Args;

use super::credentials::Scope;
use super::exit::{Exit, failed};
use super::state::StateArgs;
use airlock_platform::install::Approver;
use airlock_runtime::engine::EngineSettings;

#[derive(Debug, Args)]
pub(crate) struct UninstallArgs {
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    state: StateArgs,
}

pub(crate) fn uninstall(args: UninstallArgs) -> anyhow::Result<Exit> {
    let state = args.state.state()?;
    let opened = state.open_installations(EngineSettings::default())?;
    let Scope {
        tenant,
        installation,
    } = &args.scope;
    let removed = opened
        .installer()
        .uninstall(tenant, installation, Approver::Admin)
        .map_err(failed)?;
    opened.trail.checkpoint()?;
    eprintln!(
        "uninstalled {installation} of tenant {tenant}: {} credentials, {} connections, {} kv \
         entries, {} webhook endpoints, {} schedules, {} runs removed",
        removed.credentials,
        removed.connections,
        removed.kv_entries,
        removed.webhooks,
        removed.schedules,
        removed.runs
    );
    Ok(Exit::Success)
}
