//! `airlock install`: install a signed bundle for a tenant with what the operator grants; list
//! installations and the upgrades that wait for approval; approve one.

use std::path::PathBuf;

use clap::Args;

use super::audit::refusal;
use super::input::read_arg;
use super::{EXIT_INVALID, Opened, fail};
use crate::bundle::read_bundle;
use crate::clock::rfc3339;
use crate::ids::{InstallationId, TenantId};
use crate::install::{Approver, Grant, InstallRequest, Installer, Outcome};
use crate::store::installations::InstallationRecord;
use airlock_store::Installations;

/// Largest config accepted on the command line or from a file.
const MAX_CONFIG: u64 = 1 << 20;

#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// The signed bundle (`.airlock`) to install
    #[arg(required_unless_present_any = ["pending", "approve", "list"])]
    bundle: Option<PathBuf>,
    /// The tenant to install for
    #[arg(long, required_unless_present_any = ["pending", "list"])]
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
    /// List the upgrades waiting for approval
    #[arg(long, conflicts_with_all = ["bundle", "approve", "list"])]
    pending: bool,
    /// Approve the upgrade waiting on --installation; its additions are granted only if
    /// --grant names them
    #[arg(long, requires = "installation", conflicts_with_all = ["bundle", "list"])]
    approve: bool,
    /// List installations
    #[arg(long, conflicts_with = "bundle")]
    list: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub(crate) fn install(args: InstallArgs, opened: &Opened) -> anyhow::Result<u8> {
    let (store, trail) = (&opened.store, &opened.trail);
    let installer = opened.installer();
    if args.pending || args.list {
        let records: Vec<InstallationRecord> = store
            .installations(args.tenant.as_ref())?
            .into_iter()
            .filter(|r| !args.pending || r.pending.is_some())
            .collect();
        print_list(&records, args.json)?;
        return Ok(0);
    }
    let grant = args.grant.as_deref().map(read_grant).transpose()?;
    let tenant = args.tenant.clone().expect("clap requires --tenant here");
    let outcome = if args.approve {
        let installation = args
            .installation
            .clone()
            .expect("clap requires --installation");
        installer.approve(&tenant, &installation, grant, Approver::Admin)
    } else {
        let path = args.bundle.clone().expect("clap requires a bundle here");
        let config = args
            .config
            .as_deref()
            .map(|c| read_arg("config", c, MAX_CONFIG))
            .transpose()?;
        if path.is_dir() {
            return Err(refusal(
                trail,
                &path,
                Some("unsigned"),
                anyhow::anyhow!(
                    "{} is a directory, not a signed bundle (unsigned): only signed bundles are \
                     installed; make one with `airlock sign`",
                    path.display()
                ),
            ));
        }
        let request = InstallRequest {
            tenant,
            installation: args.installation.clone(),
            bundle: read_bundle(&path).map_err(|e| fail(EXIT_INVALID, e))?,
            origin: path,
            grant,
            config,
            allow_downgrade: args.allow_downgrade,
            approver: Approver::Admin,
        };
        installer.install(request)
    };
    let artifact = args.bundle.clone().unwrap_or_default();
    let outcome = outcome.map_err(|e| refusal(trail, &artifact, e.trust_reason(), e))?;
    report(&installer, &outcome)?;
    trail.checkpoint()?;
    Ok(0)
}

fn read_grant(path: &std::path::Path) -> anyhow::Result<Grant> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(
            EXIT_INVALID,
            anyhow::anyhow!("cannot read grant {}: {e}", path.display()),
        )
    })?;
    Grant::parse(&text).map_err(|e| fail(EXIT_INVALID, anyhow::anyhow!("{}: {e}", path.display())))
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
                 running {} until an operator approves (airlock install --approve --tenant {} \
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

fn print_list(records: &[InstallationRecord], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(records)?);
        return Ok(());
    }
    if records.is_empty() {
        eprintln!("none");
    }
    for r in records {
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
        println!(
            "{}/{}  {} {}  granted {} rule(s){pending}",
            r.tenant,
            r.installation,
            r.integration,
            r.version,
            r.grant.egress.len()
        );
    }
    Ok(())
}
