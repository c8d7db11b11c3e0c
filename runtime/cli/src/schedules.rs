//! `airlock schedules list|pause|resume|delete`: a tenant's cron schedules (docs/api.md,
//! "Schedules"). Listing reads the store, or the server holding it; the others change the
//! store and are audited as the same calls through the API are. Schedules are made through
//! the API, which checks their input against the action's schema.

use airlock_runtime::clock::rfc3339_ms;
use airlock_runtime::engine::EngineSettings;
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_store::schedules::ScheduleRecord;
use clap::{Args, Subcommand};

use super::exit::{Exit, failed};
use super::state::StateArgs;

#[derive(Debug, Args)]
pub(crate) struct SchedulesArgs {
    #[command(subcommand)]
    command: SchedulesCommand,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, Subcommand)]
enum SchedulesCommand {
    /// List a tenant's schedules: expression, zone, next tick, ticks fired and skipped
    List {
        #[arg(long)]
        tenant: TenantId,
        /// Only this installation's
        #[arg(long)]
        installation: Option<InstallationId>,
        #[arg(long)]
        json: bool,
    },
    /// Stop a schedule firing
    Pause {
        #[arg(long)]
        tenant: TenantId,
        schedule: String,
    },
    /// Fire a paused schedule again, from its next tick after now
    Resume {
        #[arg(long)]
        tenant: TenantId,
        schedule: String,
    },
    /// Delete a schedule (runs it queued stay queued)
    Delete {
        #[arg(long)]
        tenant: TenantId,
        schedule: String,
    },
}

pub(crate) fn schedules(args: SchedulesArgs) -> anyhow::Result<Exit> {
    let state = args.state.state()?;
    let (tenant, schedule, paused) = match args.command {
        SchedulesCommand::List {
            tenant,
            installation,
            json,
        } => {
            let schedules = state.reader()?.schedules(&tenant, installation.as_ref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&schedules)?);
            } else if schedules.is_empty() {
                eprintln!("no schedules");
            } else {
                schedules.iter().for_each(|s| println!("{}", line(s)));
            }
            return Ok(Exit::Success);
        }
        SchedulesCommand::Pause { tenant, schedule } => (tenant, schedule, Some(true)),
        SchedulesCommand::Resume { tenant, schedule } => (tenant, schedule, Some(false)),
        SchedulesCommand::Delete { tenant, schedule } => (tenant, schedule, None),
    };
    let opened = state.open_installations(EngineSettings::default())?;
    let installer = opened.installer();
    match paused {
        Some(paused) => {
            let changed = installer
                .pause_schedule(&tenant, &schedule, paused)
                .map_err(failed)?;
            eprintln!("{}", line(&changed));
        }
        None => {
            installer
                .delete_schedule(&tenant, &schedule)
                .map_err(failed)?;
            eprintln!("deleted schedule {schedule}");
        }
    }
    opened.trail.checkpoint()?;
    Ok(Exit::Success)
}

/// One schedule on one line: id, what, when, how it went.
fn line(schedule: &ScheduleRecord) -> String {
    let next = match (schedule.paused, schedule.next_tick) {
        (true, _) => "paused".to_string(),
        (false, Some(at)) => format!("next {}", rfc3339_ms(at)),
        (false, None) => "no more ticks".to_string(),
    };
    format!(
        "{:<28} {}/{} {:?} {}  {}  {} fired, {} skipped",
        schedule.id,
        schedule.installation,
        schedule.action,
        schedule.cron,
        schedule.timezone,
        next,
        schedule.fired,
        schedule.skipped
    )
}
