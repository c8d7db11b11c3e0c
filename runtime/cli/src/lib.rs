//! The `airlock` command line: clap verbs, thin adapters over the services
//! (`airlock-platform`), the runtime (`airlock-runtime`) and the server (`airlock-server`), one
//! file per verb. `cargo install --path runtime/cli` installs it.
//!
//! Nouns take subcommands (`airlock install list`, `airlock tenant create`); actions are verbs
//! (`run`, `test`, `build`, `sign`, `serve`, …). Options sit on the verbs they mean something
//! to: state (`--data`, …) on the verbs that keep it ([`state`]), ceilings, fuel and the egress
//! dev switches on the verbs that run code ([`engine_args`]). Exit codes: [`exit`]. The
//! reference is docs/cli.md. [`hardening`]: no core dumps of a process that holds secrets.
//!
//! # Must never depend on
//! Nothing is below the CLI; but no verb writes a store record or an audit record itself: every
//! change goes through a service, the same one the server calls.

mod apikey;
mod audit;
mod backup;
mod build;
mod check;
mod config;
mod credentials;
mod db;
mod demo;
mod engine_args;
mod exit;
pub mod hardening;
mod hints;
mod input;
mod inspect;
mod install;
mod logging;
mod master_key;
mod new;
mod policy;
mod reader;
mod report;
mod restore;
mod run;
mod runs;
mod schedules;
mod secrets;
mod serve;
mod sign;
mod state;
mod tenant;
mod test;
mod trust;
mod uninstall;
mod watch;
mod webhook;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use exit::Exit;

/// What `--version` says: the crate version, the commit built and the wasmtime linked
/// (`build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("AIRLOCK_COMMIT"),
    ", wasmtime ",
    env!("AIRLOCK_WASMTIME"),
    ")"
);

/// Run untrusted integration components under declared limits, with validated I/O.
#[derive(Debug, Parser)]
#[command(name = "airlock", version = VERSION)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines on stderr are written; AIRLOCK_LOG filters them (e.g. `info`,
    /// `airlock_server=debug`)
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_LOG_FORMAT",
        value_enum,
        default_value_t = logging::LogFormat::Human
    )]
    log_format: logging::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one action of an integration and print its output
    Run(run::RunArgs),
    /// Check an integration: manifest, schemas, limits and component imports
    Check(check::CheckArgs),
    /// Build an integration's component with its `[integration.build] command`
    Build(build::BuildArgs),
    /// Run an integration's fixture cases (tests/*.toml) offline, through the real egress path
    Test(test::TestArgs),
    /// Rebuild and rerun the fixture cases whenever a source, schema, manifest or case changes
    Watch(watch::WatchArgs),
    /// Make a new integration crate that builds and passes its own tests as it is
    New(new::NewArgs),
    /// Build the example integrations and show them end to end
    Demo(demo::DemoArgs),
    /// Ask the egress policy of an integration
    Policy(policy::PolicyArgs),
    /// Manage tenants
    Tenant(tenant::TenantArgs),
    /// Manage API keys for Airlock's own API (one tenant each, or the admin key)
    ApiKey(apikey::ApiKeyArgs),
    /// Install a signed bundle for a tenant, granting it a subset of what it declares; list
    /// installations and approve upgrades
    Install(install::InstallArgs),
    /// Remove an installation and everything it owns: credentials, connections, kv, webhook
    /// endpoints, schedules, runs (each removal audited)
    Uninstall(uninstall::UninstallArgs),
    /// List, show and retry queued runs (`?async=true`) of a tenant's installations
    Runs(runs::RunsArgs),
    /// List, pause, resume and delete a tenant's cron schedules
    Schedules(schedules::SchedulesArgs),
    /// Manage an installation's credentials (stored encrypted; values read from stdin)
    Credentials(credentials::CredentialsArgs),
    /// Make a publisher key pair (Ed25519)
    Keygen(trust::KeygenArgs),
    /// Pack an integration into one signed bundle
    Sign(sign::SignArgs),
    /// Show what a bundle would be allowed to do, and who signed it, before trusting it
    Inspect(inspect::InspectArgs),
    /// Manage the publisher keys this host trusts
    Trust(trust::TrustArgs),
    /// Read and verify the audit trail
    Audit(audit::AuditArgs),
    /// Print metrics (OpenMetrics text format) derived from the audit trail
    Metrics(audit::MetricsArgs),
    /// Rotate the master key that wraps the tenants' data keys
    MasterKey(master_key::MasterKeyArgs),
    /// Write one consistent, sealed backup file of the data dir's store (never the master key)
    Backup(backup::BackupArgs),
    /// Restore a backup into an empty data dir, verifying its seal, keys and audit trail first
    Restore(restore::RestoreArgs),
    /// Serve the operator's HTTP API (docs/api.md)
    Serve(serve::ServeArgs),
    /// Migrate or show the schema of a PostgreSQL store (--store postgres://…)
    Db(db::DbArgs),
    /// Manage webhook endpoints: signed deliveries that run an installation's action
    Webhook(webhook::WebhookArgs),
    /// Print a shell completion script: `airlock completions bash > /etc/bash_completion.d/airlock`
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell to complete in
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Parses arguments, runs the command and maps the result to an exit code.
pub fn main() -> ExitCode {
    if let Err(e) = crate::hardening::disable_core_dumps() {
        eprintln!("error: cannot disable core dumps (a crash could write secrets to disk): {e}");
        return Exit::Host.into();
    }
    crate::hardening::install_panic_hook();
    let args: Vec<String> = std::env::args().collect();
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(Refused::Usage(e)) => hints::with_hint(e, &command_line(), &args).exit(),
        Err(Refused::Config(e)) => {
            eprintln!("error: {e}");
            return Exit::Usage.into();
        }
    };
    let traces = match &cli.command {
        Command::Serve(args) => match args.traces() {
            Ok(traces) => traces,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Usage.into();
            }
        },
        _ => None,
    };
    logging::init(cli.log_format, traces);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(dispatch(cli.command)));
    match result {
        Ok(exit) => exit.into(),
        Err(error) => {
            let exit = exit::of_error(&error);
            logging::error(&exit::explain(&error), exit.code());
            exit.into()
        }
    }
}

/// Why the command line was not taken.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error(transparent)]
    Usage(#[from] clap::Error),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

/// The command line, with the settings of `serve --config FILE` in place of the flags it
/// does not give (nor the environment).
fn parse(args: &[String]) -> Result<Cli, Refused> {
    let matches = command_line().try_get_matches_from(args)?;
    let Some(("serve", given)) = matches.subcommand() else {
        return Ok(Cli::from_arg_matches(&matches)?);
    };
    let Some(path) = given.get_one::<PathBuf>("config") else {
        return Ok(Cli::from_arg_matches(&matches)?);
    };
    let file = config::ConfigFile::read(path)?;
    let mut root = command_line();
    root.build();
    let serve = root
        .find_subcommand("serve")
        .expect("serve is a verb of the command line");
    let from_file = file.arguments(serve, given, |one| {
        let line = ["airlock", "serve"].map(OsString::from);
        command_line()
            .try_get_matches_from(line.into_iter().chain(one.iter().cloned()))
            .map(drop)
    })?;
    let all = args.iter().map(OsString::from).chain(from_file);
    Ok(Cli::from_arg_matches(
        &command_line().try_get_matches_from(all)?,
    )?)
}

/// `serve`'s flags that loosen a secure default: never taken from the environment, which a
/// service inherits unseen, only from the command line or the config file.
const DEV_SWITCHES: [&str; 5] = [
    "dev-insecure",
    "insecure-plain-http",
    "resolve",
    "allow-private",
    "extra-root-ca",
];

/// The command line: the derived one, with every flag of `serve` that has no environment
/// variable of its own given `AIRLOCK_<FLAG>` (`--max-concurrent`: `AIRLOCK_MAX_CONCURRENT`), so
/// each setting comes from a flag, the environment or the config file; the dev switches and
/// the flags that say how to read the file excepted. Built once: clap keeps the variables'
/// names for good, so each is made (and leaked) once per process.
fn command_line() -> clap::Command {
    static COMMAND: std::sync::LazyLock<clap::Command> = std::sync::LazyLock::new(|| {
        Cli::command().mut_subcommand("serve", |serve| {
            serve.mut_args(|arg| {
                let Some(long) = arg.get_long() else {
                    return arg;
                };
                let skip = config::NOT_IN_FILE.contains(&long) || DEV_SWITCHES.contains(&long);
                if arg.get_env().is_some() || skip {
                    return arg;
                }
                let name = format!("AIRLOCK_{}", long.to_uppercase().replace('-', "_"));
                arg.env(&*Box::leak(name.into_boxed_str()))
            })
        })
    });
    COMMAND.clone()
}

async fn dispatch(command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Keygen(args) => trust::keygen(args),
        Command::Sign(args) => sign::sign(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Trust(args) => trust::trust(args),
        Command::Credentials(args) => credentials::credentials(args),
        Command::Uninstall(args) => uninstall::uninstall(args),
        Command::Runs(args) => runs::runs(args),
        Command::Schedules(args) => schedules::schedules(args),
        Command::Check(args) => check::check(args).await,
        Command::Build(args) => build::build(args),
        Command::Test(args) => test::test(args).await,
        Command::Watch(args) => watch::watch(args).await,
        Command::New(args) => new::new(args),
        Command::Demo(args) => demo::demo(args).await,
        Command::Policy(args) => policy::policy(args),
        Command::Audit(args) => audit::audit(args),
        Command::Tenant(args) => tenant::tenant(args),
        Command::ApiKey(args) => apikey::api_key(args),
        Command::Install(args) => install::install(args),
        Command::Metrics(args) => audit::metrics(args),
        Command::MasterKey(args) => master_key::master_key(args),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => restore::restore(args),
        Command::Serve(args) => serve::serve(args).await,
        Command::Db(args) => db::db(args),
        Command::Webhook(args) => webhook::webhook(args),
        Command::Completions(args) => {
            // Into memory first: the generator panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut command_line(), "airlock", &mut script);
            std::io::stdout().write_all(&script)?;
            Ok(Exit::Success)
        }
    }
}
