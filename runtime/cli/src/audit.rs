//! `airlock audit list|verify|export|privileges` and `airlock metrics`: read the trail of a
//! data dir.

use std::path::Path;

use airlock_host_api::audit::AuditEvent;
use airlock_platform::trust;
use clap::{Args, Subcommand, ValueEnum};

use super::exit::{Exit, fail};
use super::state::{State, StateArgs};
use airlock_audit::metrics::{Metrics, exposition};
use airlock_audit::record::Envelope;
use airlock_audit::{AuditTrail, Entry, Query};
use airlock_devkit::privileges::{Report, Usage};
use airlock_runtime::bundle::PublicKey;
use airlock_runtime::clock;
use airlock_runtime::ids::{InstallationId, TenantId};

/// The error for a refusal: exit 6 when it has a trust `reason` — recorded first as a
/// `trust-refused` security event for `artifact` (its file name only), with a checkpoint over
/// it — else exit 2.
pub(crate) fn refusal(
    trail: &AuditTrail,
    artifact: &Path,
    reason: Option<&str>,
    error: impl Into<anyhow::Error>,
) -> anyhow::Error {
    let Some(reason) = reason else {
        return fail(Exit::Usage, error);
    };
    let error = error.into();
    let artifact = artifact
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let recorded = trust::record_refusal(trail, &artifact, reason)
        .map_err(anyhow::Error::from)
        .and_then(|_| trail.checkpoint().map(drop).map_err(anyhow::Error::from));
    match recorded {
        Ok(()) => fail(Exit::Trust, error),
        Err(audit) => fail(
            Exit::Trust,
            anyhow::anyhow!("{error:#}; and it could not be recorded: {audit:#}"),
        ),
    }
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Show records, oldest first
    List {
        /// Only records about this tenant
        #[arg(long)]
        tenant: Option<String>,
        /// Only records at or after TIME: RFC 3339 (2026-11-29T10:00:00Z) or an age (90s, 15m,
        /// 1h30m, 7d)
        #[arg(long, value_name = "TIME", value_parser = since)]
        since: Option<u64>,
        /// Only security events (denials, refusals, limit kills, rejections, key changes)
        #[arg(long)]
        security: bool,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain and the signed checkpoints; exit 7 at the first broken record
    Verify {
        /// The checkpoint public key line (or @FILE) to verify against [default: the audit
        /// dir's audit.pub]; pin it outside this machine
        #[arg(long, value_name = "KEY|@FILE")]
        key: Option<String>,
    },
    /// Replace the checkpoint signing key with a new one, introduced by the old (signed, in
    /// the audit dir's audit.keys); audit.pub keeps the first key, and `verify` follows the
    /// introductions from it. On the embedded store, stop `airlock serve` first
    RotateKey,
    /// Write every record, exactly as stored and hashed
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Least privilege from production history: which egress rules, methods and credentials
    /// the installed version declares but the installation's recorded invocations never used
    Privileges {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        installation: InstallationId,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// One record per line, as hashed: see docs/audit.md to verify with standard tools
    Jsonl,
}

pub(crate) fn audit(args: AuditArgs) -> anyhow::Result<Exit> {
    let state = &args.state.state()?;
    let trail = || state.open().map(|(_store, trail)| trail);
    match args.command {
        AuditCommand::List {
            tenant,
            since,
            security,
            json,
        } => {
            let query = Query {
                tenant,
                security,
                since_ms: since,
                after: None,
            };
            each_record(&trail()?, query, |entry| match entry {
                Entry::Damaged { seq } => println!("#{seq} DAMAGED (run `airlock audit verify`)"),
                Entry::Record { line, .. } if json => {
                    println!("{}", String::from_utf8_lossy(&line))
                }
                Entry::Record { record, .. } => print_record(&record.envelope),
            })?;
            Ok(Exit::Success)
        }
        AuditCommand::Verify { key } => verify_trail(&trail()?, checkpoint_key(key)?),
        AuditCommand::RotateKey => {
            let trail = trail()?;
            let (old, new) = trail.dir().rotate_key()?;
            trail.append_blocking(AuditEvent::AuditKeyRotated {
                old: old.clone(),
                new: new.key_id().to_string(),
            })?;
            trail.checkpoint()?;
            println!("{}", new.to_line());
            eprintln!(
                "rotated the audit checkpoint key: {old} introduced {} (in {}); checkpoints are \
                 signed with it from now on, and `airlock audit verify` follows the \
                 introduction from audit.pub",
                new.key_id(),
                trail
                    .dir()
                    .path()
                    .join(airlock_audit::keychain::KEYS_FILE)
                    .display()
            );
            Ok(Exit::Success)
        }
        AuditCommand::Privileges {
            tenant,
            installation,
            json,
        } => privileges(state, &tenant, &installation, json),
        AuditCommand::Export {
            format: ExportFormat::Jsonl,
        } => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for line in trail()?.lines() {
                let (_, line) = line?;
                out.write_all(&line)?;
                out.write_all(b"\n")?;
            }
            Ok(Exit::Success)
        }
    }
}

/// `--key KEY|@FILE`: the checkpoint public key to verify against, if given.
pub(crate) fn checkpoint_key(key: Option<String>) -> anyhow::Result<Option<PublicKey>> {
    let Some(key) = key else {
        return Ok(None);
    };
    let line = match key.strip_prefix('@') {
        Some(file) => {
            std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read {file}: {e}"))?
        }
        None => key,
    };
    let key = PublicKey::parse_line(line.trim()).map_err(|e| fail(Exit::Usage, e))?;
    Ok(Some(key))
}

/// `airlock audit verify` of `trail`, against `key` [default: the audit dir's]: prints the
/// report and ends with exit 7 if it does not verify. `airlock restore` runs it too.
pub(crate) fn verify_trail(trail: &AuditTrail, key: Option<PublicKey>) -> anyhow::Result<Exit> {
    let (report, newest) = trail.verify_whole(key)?;
    let unindexed = trail.unindexed()?;
    println!(
        "chain {}: {} record(s) link from the first; {} signed checkpoint(s) by key {}, the \
         newest covering {} record(s)",
        trail.chain(),
        report.verified,
        report.checkpoints,
        newest,
        report.covered
    );
    for problem in &report.anchor_problems {
        println!("checkpoint problem: {problem}");
    }
    if let Some(broken) = &report.broken {
        println!("BROKEN at {broken}");
    }
    if let Some(first) = unindexed.first() {
        println!(
            "INDEX: {} record(s) are missing from the index, hidden from filtered views (first: \
             record {first})",
            unindexed.len()
        );
    }
    if report.is_ok() && unindexed.is_empty() {
        let uncovered = report.verified - report.covered;
        if uncovered > 0 {
            println!("{uncovered} record(s) after the newest checkpoint are not yet signed");
        }
        println!("audit trail verified");
        Ok(Exit::Success)
    } else {
        Ok(Exit::Audit)
    }
}

/// The least-privilege report of one installation: its installed manifest against the egress
/// of every invocation the trail holds for it (of any version: requests are matched again
/// against the installed version's rules).
fn privileges(
    state: &State,
    tenant: &TenantId,
    installation: &InstallationId,
    json: bool,
) -> anyhow::Result<Exit> {
    let opened = state.open_installations(airlock_runtime::engine::EngineSettings::default())?;
    let installer = opened.installer();
    let record = installer
        .get(tenant, installation)
        .map_err(|e| fail(Exit::Usage, e))?;
    let manifest = installer
        .installed_manifest(&record)
        .map_err(|e| fail(Exit::Usage, e))?;
    let mut usage = Usage::default();
    let query = Query {
        tenant: Some(tenant.as_str().to_string()),
        ..Query::default()
    };
    each_record(&opened.trail, query, |entry| {
        // This installation's runs of this integration: a name reused for another integration
        // after a delete does not count.
        if let Entry::Record { record: entry, .. } = entry
            && let AuditEvent::Invocation(r) = &entry.envelope.event
            && r.subject.installation == installation.as_str()
            && r.integration.id == record.integration
        {
            usage.record(&manifest.manifest, &r.egress);
        }
    })?;
    let report = Report::new(&manifest.manifest, &usage);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(Exit::Success);
    }
    println!(
        "{tenant}/{installation} runs {}@{}",
        record.integration, record.version
    );
    print!("{}", report.render());
    match report.tightened() {
        Some(fragment) => println!("\n{fragment}"),
        None => println!("everything declared was used"),
    }
    Ok(Exit::Success)
}

#[derive(Debug, Args)]
pub(crate) struct MetricsArgs {
    #[command(flatten)]
    state: StateArgs,
}

/// Prints the data dir's metrics in the OpenMetrics text format, from the registry the
/// server's `/metrics` serves too.
pub(crate) fn metrics(args: MetricsArgs) -> anyhow::Result<Exit> {
    let (_store, trail) = args.state.state()?.open()?;
    let mut metrics = Metrics::default();
    metrics.count(&trail, 0)?;
    print!("{}", exposition(&metrics.registry())?);
    Ok(Exit::Success)
}

/// Calls `each` on every record `query` matches, a page at a time.
fn each_record(
    trail: &AuditTrail,
    mut query: Query,
    mut each: impl FnMut(Entry),
) -> anyhow::Result<()> {
    const PAGE: usize = 1_000;
    loop {
        let page = trail.page(&query, PAGE)?;
        page.entries.into_iter().for_each(&mut each);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(()),
        }
    }
}

/// `--since`: an RFC 3339 time or an age, in milliseconds since the epoch (clap names the flag
/// in the error).
fn since(text: &str) -> Result<u64, String> {
    clock::since_ms(text).ok_or_else(|| {
        "expected an RFC 3339 UTC time (2026-11-29T10:00:00Z) or an age such as 90s, 15m, \
         1h30m or 7d"
            .to_string()
    })
}

/// A recorded target: the rule it matched and its hash (`https://api.github.com/repos
/// #5f0c…`); a URL the policy refused unparsed has neither (nor has a record written before
/// targets were hashed: its target is not shown).
fn shown_target(via: Option<&str>, hash: Option<&str>) -> String {
    match (via.filter(|v| !v.is_empty()), hash) {
        (Some(via), Some(hash)) => format!("{} #{hash}", via.escape_debug()),
        (Some(via), None) => via.escape_debug().to_string(),
        (None, _) => "(no target kept)".to_string(),
    }
}

/// One human line per record (plus one per egress attempt). Every value is metadata, and
/// anything a guest or operator influenced is printed escaped.
fn print_record(e: &Envelope) {
    let flag = if e.security { "!" } else { " " };
    let head = format!("#{:<5} {} {flag}", e.seq, e.time);
    match &e.event {
        AuditEvent::Invocation(r) => {
            println!(
                "{head} invocation {} {}/{} {}@{} {} {} {:.1} ms{}",
                r.invocation,
                r.subject.tenant,
                r.subject.installation,
                r.integration.id,
                r.integration.version,
                r.action.as_deref().unwrap_or("(unknown action)"),
                r.outcome,
                r.duration_us as f64 / 1000.0,
                r.validation.as_ref().map_or(String::new(), |v| format!(
                    " ({} {} at schema {:?})",
                    v.direction, v.keyword, v.location
                )),
            );
            for event in &r.egress {
                println!(
                    "         egress {:?} {} {} {}{}",
                    event.decision,
                    event.method.escape_debug(),
                    shown_target(event.via.as_deref(), event.target_hash.as_deref()),
                    event.status.map_or(String::new(), |s| s.to_string()),
                    event.reason.as_deref().unwrap_or(""),
                );
            }
            for s in &r.egress_suppressed {
                println!(
                    "         egress {:?} × {} more ({})",
                    s.decision,
                    s.count,
                    s.reason.as_deref().unwrap_or("no reason")
                );
            }
        }
        AuditEvent::EgressIntent(i) => println!(
            "{head} egress-intent {} {}/{} {} {} rule #{}{}",
            i.invocation,
            i.subject.tenant,
            i.subject.installation,
            i.method.escape_debug(),
            shown_target(Some(&i.via), i.target_hash.as_deref()),
            i.rule + 1,
            i.credential
                .as_deref()
                .map_or(String::new(), |c| format!(" credential {c}")),
        ),
        AuditEvent::TrustRefused { artifact, reason } => println!(
            "{head} trust-refused {} ({reason})",
            artifact.escape_debug()
        ),
        AuditEvent::CredentialChanged {
            tenant,
            installation,
            credential,
            change,
        } => println!("{head} credential-changed {tenant}/{installation} {credential} {change:?}"),
        AuditEvent::TrustChanged {
            key,
            publisher,
            change,
        } => println!(
            "{head} trust-changed key {key} publisher {} {change:?}",
            publisher.escape_debug()
        ),
        AuditEvent::ApiKeyChanged {
            key,
            tenant,
            change,
        } => println!(
            "{head} api-key-changed {key} {} {change:?}",
            tenant.as_deref().unwrap_or("(admin)")
        ),
        AuditEvent::TenantChanged { tenant, change } => {
            println!("{head} tenant-changed {tenant} {change:?}")
        }
        AuditEvent::InstallationChanged {
            tenant,
            installation,
            integration,
            version,
            change,
        } => println!(
            "{head} installation-changed {tenant}/{installation} {integration}@{version} {change:?}"
        ),
        AuditEvent::InstallationDataDeleted {
            tenant,
            installation,
            data,
            count,
        } => println!("{head} installation-data-deleted {tenant}/{installation} {data:?} {count}"),
        AuditEvent::ClockRegression { previous } => {
            println!("{head} clock-regression (previous record at {previous})")
        }
        AuditEvent::AccessRefused {
            key,
            tenant,
            reason,
            route,
            peer,
        } => println!(
            "{head} access-refused {reason} {} from {peer} key {} tenant {}",
            route.escape_debug(),
            key.as_deref().unwrap_or("-"),
            tenant.as_deref().unwrap_or("-")
        ),
        AuditEvent::ConnectionChanged {
            tenant,
            installation,
            credential,
            user,
            change,
            scopes,
            widened,
        } => println!(
            "{head} connection-changed {tenant}/{installation} {credential} user {} {change:?} scopes [{}]{}",
            user.as_deref().unwrap_or("-").escape_debug(),
            scopes.join(" ").escape_debug(),
            if widened.is_empty() {
                String::new()
            } else {
                format!(" WIDENED [{}]", widened.join(" ").escape_debug())
            }
        ),
        AuditEvent::ConnectionRefused {
            tenant,
            reason,
            peer,
        } => println!(
            "{head} connection-refused {reason} from {peer} tenant {}",
            tenant.as_deref().unwrap_or("-")
        ),
        AuditEvent::WebhookChanged {
            tenant,
            installation,
            endpoint,
            action,
            change,
        } => println!(
            "{head} webhook-changed {tenant}/{installation} {endpoint} action {action} {change:?}"
        ),
        AuditEvent::ScheduleChanged {
            tenant,
            installation,
            schedule,
            action,
            cron,
            change,
        } => println!(
            "{head} schedule-changed {tenant}/{installation} {schedule} action {action} {:?} {change:?}",
            cron.escape_debug().to_string()
        ),
        AuditEvent::WebhookRefused {
            tenant,
            endpoint,
            reason,
            peer,
        } => println!("{head} webhook-refused {tenant} {endpoint} {reason} from {peer}"),
        AuditEvent::AlertRaised {
            rule,
            tenant,
            installation,
            key,
            count,
            window_s,
            quarantine,
        } => {
            let what = match (tenant, installation, key) {
                (_, _, Some(key)) => format!("key {key}"),
                (Some(t), Some(i), None) => format!("{t}/{i}"),
                (Some(t), None, None) => t.clone(),
                _ => "(admin)".to_string(),
            };
            let acted = if *quarantine { ", quarantined" } else { "" };
            println!("{head} alert-raised {rule} {what}: {count} in {window_s}s{acted}")
        }
        AuditEvent::AuditKeyRotated { old, new } => {
            println!("{head} audit-key-rotated {old} -> {new}")
        }
        AuditEvent::MasterKeyRotated { rewrapped } => {
            println!("{head} master-key-rotated ({rewrapped} data keys re-wrapped)")
        }
    }
}
