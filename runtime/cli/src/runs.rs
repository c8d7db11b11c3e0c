//! `airlock runs list|show|retry`: the queued executions of a tenant's installations
//! (docs/api.md, "Runs"). Listing reads the store, or the server holding it; `retry` changes
//! the store.

use airlock_runtime::clock::{self, rfc3339_ms};
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_store::runs::{Requeued, RunQuery, RunRecord, RunStatus};
use clap::{Args, Subcommand};

use super::exit::{Exit, fail};
use super::state::StateArgs;

#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    #[command(subcommand)]
    command: RunsCommand,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// List a tenant's runs, oldest first
    List {
        #[arg(long)]
        tenant: TenantId,
        /// Only this installation's
        #[arg(long)]
        installation: Option<InstallationId>,
        /// Only runs in this status: queued, running, succeeded, failed, dead
        #[arg(long)]
        status: Option<RunStatus>,
        /// Start after this run (the last of the previous page)
        #[arg(long)]
        after: Option<String>,
        /// At most this many
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show one run: its status and every attempt
    Show {
        #[arg(long)]
        tenant: TenantId,
        run: String,
        #[arg(long)]
        json: bool,
    },
    /// Queue a dead or failed run again, while its input is kept
    Retry {
        #[arg(long)]
        tenant: TenantId,
        run: String,
    },
}

pub(crate) fn runs(args: RunsArgs) -> anyhow::Result<Exit> {
    let state = args.state.state()?;
    match args.command {
        RunsCommand::List {
            tenant,
            installation,
            status,
            after,
            limit,
            json,
        } => {
            let query = RunQuery {
                installation: installation.map(|i| i.to_string()),
                status,
                after,
                limit: limit.max(1),
                ..RunQuery::default()
            };
            let runs = state.reader()?.runs(&tenant, &query)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else if runs.is_empty() {
                eprintln!("no runs");
            } else {
                for run in &runs {
                    println!("{}", line(run));
                }
            }
        }
        RunsCommand::Show { tenant, run, json } => {
            let Some(found) = state.reader()?.run(&tenant, &run)? else {
                return Err(no_run(&tenant, &run));
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else {
                println!("{}", line(&found));
                for (n, attempt) in found.attempts.iter().enumerate() {
                    println!(
                        "  attempt {}: started {}  ended {}  {}",
                        n + 1,
                        rfc3339_ms(attempt.started),
                        attempt.ended.map_or_else(|| "-".into(), rfc3339_ms),
                        attempt.outcome.as_deref().unwrap_or("running")
                    );
                }
            }
        }
        RunsCommand::Retry { tenant, run } => {
            let store = state.store()?;
            // The operator is not held to a tenant's limit on pending runs.
            match store.retry_run(&tenant, &run, clock::now_unix_ms(), u64::MAX)? {
                Requeued::Queued(_) => eprintln!("queued run {run} again"),
                Requeued::NoSuchRun => return Err(no_run(&tenant, &run)),
                Requeued::NotEnded(status) => {
                    return Err(fail(
                        Exit::Usage,
                        anyhow::anyhow!(
                            "run {run} is {}: only a dead or failed run is retried",
                            status.as_str()
                        ),
                    ));
                }
                Requeued::InputGone => {
                    return Err(fail(
                        Exit::Usage,
                        anyhow::anyhow!(
                            "run {run} no longer has its input (its retention ended): nothing \
                             to retry"
                        ),
                    ));
                }
            }
        }
    }
    Ok(Exit::Success)
}

fn no_run(tenant: &TenantId, run: &str) -> anyhow::Error {
    fail(
        Exit::Usage,
        anyhow::anyhow!("tenant {tenant} has no run {run}"),
    )
}

/// One run on one line: id, status, what, attempts, when queued.
fn line(run: &RunRecord) -> String {
    format!(
        "{:<30} {:<9} {}/{} ({}) {} attempt(s), queued {}",
        run.id,
        run.status.as_str(),
        run.installation,
        run.action,
        run.trigger.as_str(),
        run.attempts.len(),
        rfc3339_ms(run.created)
    )
}
