//! The pages of what happens: runs, webhooks and schedules, security events, the audit trail
//! and metrics.

use maud::{Markup, html};

use super::{bars, page};
use crate::app::Sample;
use crate::auth::Principal;
use airlock_audit::checkpoint::Checkpoint;
use airlock_audit::verify::Report;
use airlock_runtime::clock::rfc3339_ms;
use airlock_runtime::ids::TenantId;
use airlock_store::EndpointInfo;
use airlock_store::runs::{RunRecord, RunStatus};
use airlock_store::schedules::ScheduleRecord;

pub(in crate::console) fn runs(
    principal: &Principal,
    csrf: &str,
    tenant: &TenantId,
    installation: &str,
    status: &str,
    runs: &[RunRecord],
) -> Markup {
    page(
        "Runs",
        Some((principal, csrf)),
        html! {
            h1 { "Runs of " (tenant) }
            form.filters method="get" action="/console/runs" {
                input type="hidden" name="tenant" value=(tenant);
                div {
                    label for="installation" { "Installation" }
                    input #installation name="installation" value=(installation);
                }
                div {
                    label for="status" { "Status" }
                    select #status name="status" {
                        option value="" selected[status.is_empty()] { "any" }
                        @for s in ["queued", "running", "succeeded", "failed", "dead"] {
                            option value=(s) selected[status == s] { (s) }
                        }
                    }
                }
                button type="submit" { "Filter" }
            }
            @if runs.is_empty() {
                p.muted { "No runs." }
            } @else {
                div.scroll {
                    table {
                        thead { tr {
                            th scope="col" { "Run" } th scope="col" { "Installation / action" }
                            th scope="col" { "Trigger" } th scope="col" { "Status" }
                            th scope="col" { "Attempts" } th scope="col" { "Queued" }
                            th scope="col" { span.muted { "Action" } }
                        } }
                        tbody {
                            @for run in runs {
                                tr {
                                    td { code { (run.id) } }
                                    td { (run.installation) " / " (run.action) }
                                    td { (run.trigger.as_str()) }
                                    td class=(format!("status-{}", run.status.as_str())) { (run.status.as_str()) }
                                    td {
                                        @for attempt in &run.attempts {
                                            div { (attempt.outcome.as_deref().unwrap_or("running")) }
                                        }
                                    }
                                    td { (rfc3339_ms(run.created)) }
                                    td {
                                        @if matches!(run.status, RunStatus::Dead | RunStatus::Failed) && run.input_kept {
                                            form.inline method="post" action=(format!("/console/runs/{}/retry", run.id)) {
                                                input type="hidden" name="csrf" value=(csrf);
                                                input type="hidden" name="tenant" value=(tenant);
                                                button type="submit" aria-label=(format!("Retry run {}", run.id)) { "Retry" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// One security event as the events page shows it.
pub(in crate::console) struct Event {
    time: String,
    at_ms: Option<u64>,
    kind: &'static str,
    tenant: String,
    detail: String,
}

impl Event {
    pub(in crate::console) fn of(envelope: &airlock_audit::record::Envelope) -> Self {
        let fields = serde_json::to_value(&envelope.event).unwrap_or_default();
        let field = |name: &str| {
            fields
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        Self {
            time: envelope.time.clone(),
            at_ms: airlock_runtime::clock::since_ms(&envelope.time),
            kind: envelope.event.kind(),
            tenant: envelope.event.tenant().unwrap_or("-").to_string(),
            detail: field("outcome")
                .or_else(|| field("reason"))
                .or_else(|| field("change"))
                .unwrap_or_default(),
        }
    }
}

/// Hours the events chart shows.
const HOURS: u64 = 24;

pub(in crate::console) fn events(
    principal: &Principal,
    csrf: &str,
    events: &[Event],
    since: u64,
    now: u64,
) -> Markup {
    let mut by_kind: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    let mut by_hour = [0u64; HOURS as usize];
    let span = now.saturating_sub(since).max(1);
    for event in events {
        *by_kind.entry(event.kind).or_default() += 1;
        if let Some(at) = event.at_ms.filter(|&at| at >= since) {
            let hour = ((at - since).saturating_mul(HOURS) / span).min(HOURS - 1);
            by_hour[usize::try_from(hour).unwrap_or(0)] += 1;
        }
    }
    page(
        "Security events",
        Some((principal, csrf)),
        html! {
            h1 { "Security events, the last 24 hours" }
            @if events.is_empty() {
                p.muted { "None." }
            } @else {
                (bars(
                    &format!("{} security events per hour over the last 24 hours, oldest on the left", events.len()),
                    &by_hour,
                    "#b42318",
                    HOURS as usize,
                ))
                ul {
                    @for (kind, count) in &by_kind { li { (kind) ": " (count) } }
                }
                div.scroll { table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Tenant" } th scope="col" { "Detail" } } }
                    tbody { @for event in events.iter().rev() { tr {
                        td { (event.time) } td { (event.kind) } td { (event.tenant) } td { (event.detail) }
                    } } }
                } }
            }
        },
    )
}

pub(in crate::console) fn hooks(
    principal: &Principal,
    csrf: &str,
    tenant: &TenantId,
    webhooks: &[EndpointInfo],
    schedules: &[ScheduleRecord],
) -> Markup {
    page(
        "Webhooks and schedules",
        Some((principal, csrf)),
        html! {
            h1 { "Webhooks of " (tenant) }
            @if webhooks.is_empty() {
                p.muted { "No webhook endpoints." }
            } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "Endpoint" } th scope="col" { "Installation / action" } th scope="col" { "Scheme" } th scope="col" { "Live secrets" } } }
                    tbody { @for hook in webhooks { tr {
                        td { code { (hook.path) } }
                        td { (hook.installation) " / " (hook.action) }
                        td { (format!("{:?}", hook.scheme).to_lowercase()) }
                        td { (hook.secrets.len()) }
                    } } }
                } }
            }
            h2 { "Schedules" }
            @if schedules.is_empty() {
                p.muted { "No schedules." }
            } @else {
                div.scroll { table {
                    thead { tr {
                        th scope="col" { "Schedule" } th scope="col" { "Installation / action" }
                        th scope="col" { "When" } th scope="col" { "Next tick" }
                        th scope="col" { "Fired / skipped" } th scope="col" { span.muted { "Action" } }
                    } }
                    tbody { @for schedule in schedules { tr {
                        td { code { (schedule.id) } }
                        td { (schedule.installation) " / " (schedule.action) }
                        td { code { (schedule.cron) } " " (schedule.timezone) }
                        td { @match (schedule.paused, schedule.next_tick) {
                            (true, _) => "paused",
                            (false, Some(at)) => (rfc3339_ms(at)),
                            (false, None) => "none",
                        } }
                        td { (schedule.fired) " / " (schedule.skipped) }
                        td {
                            @let verb = if schedule.paused { "resume" } else { "pause" };
                            form.inline method="post" action=(format!("/console/schedules/{}/{verb}", schedule.id)) {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="tenant" value=(tenant);
                                button type="submit" aria-label=(format!("{verb} schedule {}", schedule.id)) {
                                    @if schedule.paused { "Resume" } @else { "Pause" }
                                }
                            }
                        }
                    } } }
                } }
            }
        },
    )
}

pub(in crate::console) fn audit(
    principal: &Principal,
    csrf: &str,
    chain: &str,
    newest: Option<&Checkpoint>,
    report: Option<&Report>,
) -> Markup {
    page(
        "Audit trail",
        Some((principal, csrf)),
        html! {
            h1 { "Audit trail" }
            dl {
                dt { "Chain" } dd { code { (chain) } }
                dt { "Newest signed checkpoint" }
                dd {
                    @match newest {
                        Some(c) => { (c.count) " records, signed " (c.time) " by key " code { (c.key) } }
                        None => "none yet",
                    }
                }
            }
            @match report {
                None => p.muted { "Verifying reads every record: run it when you need to prove the trail intact." },
                Some(report) => {
                    @if report.is_ok() {
                        p { strong { "Verified." } " " (report.verified) " records link from the first; "
                            (report.checkpoints) " signed checkpoints, the newest covering " (report.covered) "." }
                    } @else {
                        p.refusal role="alert" {
                            "Does not verify: "
                            @if let Some(broken) = &report.broken { "broken at " (broken.to_string()) ". " }
                            @for problem in &report.anchor_problems { (problem) ". " }
                        }
                    }
                }
            }
            form method="post" action="/console/audit/verify" {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { "Verify the whole trail now" }
            }
        },
    )
}

/// Samples the metrics page charts: the last hour's, one per housekeeping round.
const CHARTED: usize = 240;

pub(in crate::console) fn metrics(principal: &Principal, csrf: &str, samples: &[Sample]) -> Markup {
    let recent = &samples[samples.len().saturating_sub(CHARTED + 1)..];
    let delta = |f: fn(&Sample) -> u64| -> Vec<u64> {
        recent
            .windows(2)
            .map(|w| f(&w[1]).saturating_sub(f(&w[0])))
            .collect()
    };
    let ok = delta(|s| s.ok);
    let failed = delta(|s| s.failed);
    let security = delta(|s| s.security);
    let running: Vec<u64> = recent.iter().map(|s| s.running).collect();
    page(
        "Metrics",
        Some((principal, csrf)),
        html! {
            h1 { "Metrics, the last hour" }
            @match (recent.first(), recent.last()) {
                (Some(first), Some(last)) if recent.len() > 1 => {
                    p.muted { "Every 15 seconds from " (rfc3339_ms(first.at)) " to " (rfc3339_ms(last.at)) ", as this node counts the trail; " code { "/metrics" } " has every counter." }
                    h2 { "Invocations that succeeded" }
                    (bars("Invocations that succeeded, per 15 s", &ok, "#0a5bc4", CHARTED))
                    h2 { "Invocations that failed" }
                    (bars("Invocations that failed, per 15 s", &failed, "#b42318", CHARTED))
                    h2 { "Security events" }
                    (bars("Security events, per 15 s", &security, "#9a6700", CHARTED))
                    h2 { "Running on this node" }
                    (bars("Invocations running on this node", &running, "#57606a", CHARTED + 1))
                }
                _ => p.muted { "Not enough samples yet: one is taken every 15 seconds." },
            }
        },
    )
}
