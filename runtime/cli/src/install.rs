//! `airlock install BUNDLE --tenant T`: install a signed bundle for a tenant with what the
//! operator grants; `airlock install list|pending|approve`: list installations and the upgrades
//! that wait for approval, approve one.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::audit::refusal;
use super::engine_args::CeilingArgs;
use super::exit::{Exit, fail};
use super::input::read_arg;
use super::state::{State, StateArgs};
use airlock_platform::install::{Approver, Grant, InstallRequest, Installer, Outcome};
use airlock_runtime::bundle::read_bundle;
use airlock_runtime::clock::rfc3339;
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_store::InstallationRecord;

/// Largest config accepted on the command line or from a file.
const MAX_CONFIG: u64 = 1 << 20;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct InstallArgs {
    #[command(subcommand)]
    command: Option<InstallCommand>,
    #[command(flatten)]
    bundle: BundleArgs,
    #[command(flatten)]
    state: StateArgs,
}

/// `airlock install BUNDLE --tenant T …`: the action itself.
#[derive(Debug, Args)]
struct BundleArgs {
    /// The signed bundle (`.airlock`) to install
    #[arg(required = true)]
    bundle: Option<PathBuf>,
    /// The tenant to install for
    #[arg(long, required = true)]
    tenant: Option<TenantId>,
    /// The installation's id [default: the last part of the integration id]
    #[arg(long)]
    installation: Option<InstallationId>,
    /// What you approve (TOML: `[[egress]] url, methods`), a subset of what the manifest
    /// declares; without it the installation gets no egress at all
    #[arg(long, value_name = "FILE")]
    grant: Option<PathBuf>,
    /// Config JSON, or @FILE; validated against the integration's config schema
    #[arg(long, value_name = "JSON|@FILE")]
    config: Option<String>,
    /// Install a lower version than the installed one (a rollback)
    #[arg(long)]
    allow_downgrade: bool,
    #[command(flatten)]
    ceilings: CeilingArgs,
}

#[derive(Debug, Subcommand)]
enum InstallCommand {
    /// List installations
    List(ListArgs),
    /// List the upgrades waiting for approval
    Pending(ListArgs),
    /// Approve the upgrade waiting on an installation; its additions are granted only if
    /// --grant names them
    Approve(ApproveArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only this tenant's
    #[arg(long)]
    tenant: Option<TenantId>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ApproveArgs {
    /// The tenant
    #[arg(long)]
    tenant: TenantId,
    /// The installation whose upgrade waits
    #[arg(long)]
    installation: InstallationId,
    /// What you approve (TOML: `[[egress]] url, methods`): the grant the upgrade runs with
    #[arg(long, value_name = "FILE")]
    grant: Option<PathBuf>,
    #[command(flatten)]
    ceilings: CeilingArgs,
}

pub(crate) fn install(args: InstallArgs) -> anyhow::Result<Exit> {
    let state = args.state.state()?;
    match args.command {
        Some(InstallCommand::List(list)) => print_list(&state, &list, false),
        Some(InstallCommand::Pending(list)) => print_list(&state, &list, true),
        Some(InstallCommand::Approve(approve)) => {
            let opened = state.open_installations(approve.ceilings.settings())?;
            let installer = opened.installer();
            let grant = approve.grant.as_deref().map(read_grant).transpose()?;
            let outcome = installer.approve(
                &approve.tenant,
                &approve.installation,
                grant,
                Approver::Admin,
            );
            finish(&installer, outcome, Path::new(""))
        }
        None => {
            let args = args.bundle;
            let opened = state.open_installations(args.ceilings.settings())?;
            let installer = opened.installer();
            let path = args.bundle.expect("clap requires a bundle here");
            let tenant = args.tenant.expect("clap requires --tenant here");
            let grant = args.grant.as_deref().map(read_grant).transpose()?;
            let config = args
                .config
                .as_deref()
                .map(|c| read_arg("config", c, MAX_CONFIG))
                .transpose()?;
            if path.is_dir() {
                return Err(refusal(
                    &opened.trail,
                    &path,
                    Some("unsigned"),
                    anyhow::anyhow!(
                        "{} is a directory, not a signed bundle (unsigned): only signed bundles \
                         are installed; make one with `airlock sign`",
                        path.display()
                    ),
                ));
            }
            let request = InstallRequest {
                tenant,
                installation: args.installation,
                bundle: read_bundle(&path).map_err(|e| fail(Exit::Usage, e))?,
                origin: path.clone(),
                grant,
                config,
                allow_downgrade: args.allow_downgrade,
                approver: Approver::Admin,
            };
            finish(&installer, installer.install(request), &path)
        }
    }
}

/// Reports an install or approval, or records its refusal (of `artifact`) and fails.
fn finish(
    installer: &Installer<'_>,
    outcome: Result<Outcome, airlock_platform::install::InstallError>,
    artifact: &Path,
) -> anyhow::Result<Exit> {
    let outcome = outcome.map_err(|e| refusal(installer.trail, artifact, e.trust_reason(), e))?;
    report(installer, &outcome)?;
    installer.trail.checkpoint()?;
    Ok(Exit::Success)
}

fn read_grant(path: &std::path::Path) -> anyhow::Result<Grant> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(
            Exit::Usage,
            anyhow::anyhow!("cannot read grant {}: {e}", path.display()),
        )
    })?;
    Grant::parse(&text).map_err(|e| fail(Exit::Usage, anyhow::anyhow!("{}: {e}", path.display())))
}

/// Says what happened, and what the installation may and may not reach.
fn report(installer: &Installer<'_>, outcome: &Outcome) -> anyhow::Result<()> {
    let (verb, record) = match outcome {
        Outcome::Installed(r) => ("installed".to_string(), r),
        Outcome::Replaced { from, record } => (format!("replaced {from} with"), record),
        Outcome::Reconfigured(r) => ("updated the grant and config of".to_string(), r),
        Outcome::Unchanged(r) => ("already installed:".to_string(), r),
        Outcome::Pending(r) => {
            let pending = r
                .pending
                .as_ref()
                .expect("a pending outcome has a pending upgrade");
            eprintln!(
                "{} {} asks for more than the installed {}; installation {} of tenant {} keeps \
                 running {} until an operator approves (airlock install approve --tenant {} \
                 --installation {} --grant FILE). It asks for:",
                r.integration,
                pending.version,
                r.version,
                r.installation,
                r.tenant,
                r.version,
                r.tenant,
                r.installation
            );
            for item in &pending.additions {
                let admin = match pending.admin_only.contains(item) {
                    true => " (operator only: it changes where a secret is sent)",
                    false => "",
                };
                eprintln!("  + {item}{admin}");
            }
            return Ok(());
        }
    };
    eprintln!(
        "{verb} {} {} as installation {} of tenant {}",
        record.integration, record.version, record.installation, record.tenant
    );
    let integration = installer.load(record)?;
    let declared = integration.manifest().manifest.egress_policy();
    let granted = record.grant.apply(declared.rules())?;
    for rule in &granted {
        let methods: Vec<&str> = rule.methods().iter().map(|m| m.as_str()).collect();
        eprintln!("  granted  {} {}", methods.join(","), rule.url());
    }
    for rule in declared.rules() {
        let kept = granted.iter().find(|g| g.url() == rule.url());
        let missing: Vec<&str> = rule
            .methods()
            .iter()
            .filter(|m| kept.is_none_or(|g| !g.allows_method(**m)))
            .map(|m| m.as_str())
            .collect();
        if !missing.is_empty() {
            eprintln!(
                "  denied   {} {} (declared, not granted)",
                missing.join(","),
                rule.url()
            );
        }
    }
    Ok(())
}

/// `list`, or with `pending` only the installations with an upgrade waiting.
fn print_list(state: &State, args: &ListArgs, pending: bool) -> anyhow::Result<Exit> {
    let records: Vec<InstallationRecord> = state
        .reader()?
        .installations(args.tenant.as_ref())?
        .into_iter()
        .filter(|r| !pending || r.pending.is_some())
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(Exit::Success);
    }
    if records.is_empty() {
        eprintln!("none");
    }
    for r in &records {
        let pending = r.pending.as_ref().map_or(String::new(), |p| {
            let additions: Vec<String> = p
                .additions
                .iter()
                .map(|a| match p.admin_only.contains(a) {
                    true => format!("{a} (operator only)"),
                    false => a.clone(),
                })
                .collect();
            format!(
                "  upgrade to {} waiting since {}: {}",
                p.version,
                rfc3339(p.requested),
                additions.join("; ")
            )
        });
        let quarantined = r.quarantine.as_ref().map_or(String::new(), |q| {
            format!("  QUARANTINED by {} since {}", q.rule, rfc3339(q.since))
        });
        println!(
            "{}/{}  {} {}  granted {} rule(s){quarantined}{pending}",
            r.tenant,
            r.installation,
            r.integration,
            r.version,
            r.grant.egress.len()
        );
    }
    Ok(Exit::Success)
}
