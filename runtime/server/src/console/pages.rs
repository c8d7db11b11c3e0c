//! The console's pages. maud escapes every value it writes, so a tenant's, a manifest's or an
//! upstream's text renders as text whatever it holds; no page carries a script or an inline
//! style (the policy forbids both).

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::app::Sample;
use crate::auth::Principal;
use crate::error::ApiError;
use airlock_audit::checkpoint::Checkpoint;
use airlock_audit::verify::Report;
use airlock_runtime::clock::rfc3339_ms;
use airlock_runtime::ids::TenantId;
use airlock_runtime::manifest::Manifest;
use airlock_runtime::trust::TrustedKey;
use airlock_store::runs::{RunRecord, RunStatus};
use airlock_store::schedules::ScheduleRecord;
use airlock_store::{ConnectionInfo, CredentialInfo, EndpointInfo, InstallationRecord, TenantInfo};

/// A whole page: `title`, the navigation when signed in, and `body`.
fn page(title: &str, signed: Option<(&Principal, &str)>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Airlock console" }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                header {
                    span.brand { "Airlock" }
                    @if let Some((principal, csrf)) = signed {
                        nav aria-label="Console" {
                            a href="/console/" { "Overview" }
                            @if principal.is_admin() {
                                a href="/console/tenants" { "Tenants" }
                            }
                            a href="/console/installations" { "Installations" }
                            @if !principal.is_admin() {
                                a href="/console/runs" { "Runs" }
                            }
                            @if let Some(tenant) = principal.own_tenant() {
                                a href=(format!("/console/hooks?tenant={tenant}")) { "Webhooks & schedules" }
                            }
                            a href="/console/events" { "Security events" }
                            @if principal.is_admin() {
                                a href="/console/trust" { "Publishers" }
                                a href="/console/audit" { "Audit trail" }
                                a href="/console/metrics" { "Metrics" }
                            }
                        }
                        span.muted { (who(principal)) }
                        form.inline method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(csrf);
                            button.quiet type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn who(principal: &Principal) -> String {
    match principal.own_tenant() {
        Some(tenant) => format!("tenant {tenant} · key {}", principal.key_id()),
        None => format!("operator · key {}", principal.key_id()),
    }
}

/// The sign-in form, with why the last attempt was refused.
pub(super) fn sign_in(refusal: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(refusal) = refusal {
                p.refusal role="alert" { (refusal) }
            }
            form method="post" action="/console/sign-in" {
                label for="key" { "API key (the admin key, or a tenant's)" }
                input #key type="password" name="key" autocomplete="off" required;
                p.muted {
                    "The key is checked once; the browser keeps only a session cookie, which \
                     ends when you sign out, after 8 hours, or when the key is revoked."
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub(super) fn overview(principal: &Principal, csrf: &str) -> Markup {
    page(
        "Overview",
        Some((principal, csrf)),
        html! {
            h1 { "Overview" }
            p { "Signed in as " (who(principal)) "." }
            ul {
                @if principal.is_admin() {
                    li { a href="/console/tenants" { "Tenants" } ": each tenant's installations and runs." }
                }
                li { a href="/console/installations" { "Installations" } ": what each may do and its pending upgrade, approved from here." }
                @if let Some(tenant) = principal.own_tenant() {
                    li { a href=(format!("/console/runs?tenant={tenant}")) { "Runs" } ": queued, failed and dead runs, retried from here." }
                }
                li { a href="/console/events" { "Security events" } ": denied egress, limit kills, trust and access refusals, over the last day." }
                @if principal.is_admin() {
                    li { a href="/console/trust" { "Publishers" } ": the keys whose bundles may run." }
                }
            }
        },
    )
}

pub(super) fn installations(
    principal: &Principal,
    csrf: &str,
    records: &[InstallationRecord],
) -> Markup {
    page(
        "Installations",
        Some((principal, csrf)),
        html! {
            h1 { "Installations" }
            @if records.is_empty() {
                p.muted { "No installations." }
            } @else {
                div.scroll {
                    table {
                        thead { tr {
                            th scope="col" { "Tenant" } th scope="col" { "Installation" }
                            th scope="col" { "Integration" } th scope="col" { "Version" }
                            th scope="col" { "Egress granted" } th scope="col" { "Pending upgrade" }
                        } }
                        tbody {
                            @for record in records {
                                tr {
                                    td { (record.tenant) }
                                    td {
                                        a href=(format!("/console/installations/{}?tenant={}", record.installation, record.tenant)) { (record.installation) }
                                    }
                                    td { (record.integration) }
                                    td { (record.version) }
                                    td {
                                        @for rule in &record.grant.egress {
                                            div { (rule.methods.join(", ")) " " (rule.url) }
                                        }
                                    }
                                    td {
                                        @match &record.pending {
                                            Some(pending) => { (pending.version) " waits for approval" }
                                            None => span.muted { "none" },
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

pub(super) fn runs(
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

pub(super) fn tenants(principal: &Principal, csrf: &str, tenants: &[TenantInfo]) -> Markup {
    page(
        "Tenants",
        Some((principal, csrf)),
        html! {
            h1 { "Tenants" }
            @if tenants.is_empty() {
                p.muted { "No tenants." }
            } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "Tenant" } th scope="col" { "Created" } th scope="col" { "See" } } }
                    tbody {
                        @for tenant in tenants {
                            tr {
                                td { (tenant.id) }
                                td { (rfc3339_ms(tenant.created.saturating_mul(1000))) }
                                td {
                                    a href=(format!("/console/installations?tenant={}", tenant.id)) { "installations" }
                                    " · "
                                    a href=(format!("/console/runs?tenant={}", tenant.id)) { "runs" }
                                    " · "
                                    a href=(format!("/console/hooks?tenant={}", tenant.id)) { "webhooks & schedules" }
                                    " · "
                                    a href=(format!("/console/events?tenant={}", tenant.id)) { "events" }
                                }
                            }
                        }
                    }
                } }
            }
        },
    )
}

/// What the installation page shows.
pub(super) struct Installed<'a> {
    pub record: &'a InstallationRecord,
    /// The installed version's manifest.
    pub manifest: &'a Manifest,
    pub credentials: &'a [CredentialInfo],
    pub connections: &'a [ConnectionInfo],
}

pub(super) fn installation(principal: &Principal, csrf: &str, installed: &Installed<'_>) -> Markup {
    let &Installed {
        record,
        manifest,
        credentials,
        connections,
    } = installed;
    page(
        &format!("Installation {}", record.installation),
        Some((principal, csrf)),
        html! {
            h1 { "Installation " (record.installation) }
            dl {
                dt { "Tenant" } dd { (record.tenant) }
                dt { "Integration" } dd { (record.integration) " " (record.version) }
                dt { "Description" } dd { (manifest.integration.description) }
                dt { "Publisher" } dd { (manifest.publisher.name) }
                dt { "Config schema" } dd {
                    @match &manifest.config { Some(config) => code { (config.schema.as_str()) }, None => "none: it takes no config" }
                }
                dt { "Actions" } dd { (manifest.actions.keys().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")) }
                dt { "Bundle" } dd { code { (record.bundle) } }
                dt { "Signed by key" } dd { code { (record.key) } }
                dt { "Config" } dd { @if record.config.is_some() { "set (validated against its schema)" } @else { "none" } }
            }
            h2 { "Egress granted" }
            @if record.grant.egress.is_empty() {
                p.muted { "None: it reaches no network." }
            } @else {
                ul { @for rule in &record.grant.egress { li { (rule.methods.join(", ")) " " code { (rule.url) } } } }
            }
            h2 { "Credentials" }
            @if credentials.is_empty() {
                p.muted { "No stored credentials." }
            } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Sent to" } th scope="col" { "Rotated" } } }
                    tbody { @for c in credentials { tr {
                        td { (c.name) }
                        td { (format!("{:?}", c.credential_type).to_lowercase()) }
                        td { (c.origins.join(" ")) }
                        td { (c.rotated.map_or_else(|| "never".to_string(), |at| rfc3339_ms(at.saturating_mul(1000)))) }
                    } } }
                } }
            }
            @if !connections.is_empty() {
                h2 { "OAuth connections" }
                div.scroll { table {
                    thead { tr { th scope="col" { "Credential" } th scope="col" { "User" } th scope="col" { "Status" } th scope="col" { "Scopes" } } }
                    tbody { @for c in connections { tr {
                        td { (c.credential) }
                        td { (c.user_ref.as_deref().unwrap_or("the installation")) }
                        td { (format!("{:?}", c.status).to_lowercase()) }
                        td { (c.scopes.join(" ")) }
                    } } }
                } }
            }
            h2 { "Pending upgrade" }
            @match &record.pending {
                None => p.muted { "None." },
                Some(pending) => {
                    p { (record.version) " → " strong { (pending.version) } ", signed by key " code { (pending.key) } ". It declares beyond the installed version:" }
                    ul.additions {
                        @for addition in &pending.additions {
                            li {
                                (addition)
                                @if pending.admin_only.contains(addition) { " " strong { "(the operator's admin key only)" } }
                            }
                        }
                    }
                    p {
                        "Approving lets " (pending.version) " run with what it declares, under the egress granted now ("
                        @if record.grant.egress.is_empty() { "none" } @else { (record.grant.egress.len()) " rules, above" }
                        "); more egress is granted with the installation's grant."
                    }
                    form method="post" action=(format!("/console/installations/{}/approve", record.installation)) {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="tenant" value=(record.tenant);
                        button type="submit" { "Approve " (pending.version) }
                    }
                }
            }
        },
    )
}

/// One security event as the events page shows it.
pub(super) struct Event {
    time: String,
    at_ms: Option<u64>,
    kind: &'static str,
    tenant: String,
    detail: String,
}

impl Event {
    pub(super) fn of(envelope: &airlock_audit::record::Envelope) -> Self {
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

pub(super) fn events(
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

pub(super) fn trust(principal: &Principal, csrf: &str, keys: &[TrustedKey]) -> Markup {
    page(
        "Publishers",
        Some((principal, csrf)),
        html! {
            h1 { "Trusted publishers" }
            @if keys.is_empty() {
                p.muted { "No keys: no bundle may run." }
            } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "Publisher" } th scope="col" { "Key" } th scope="col" { "Added" } th scope="col" { "Status" } } }
                    tbody { @for key in keys { tr {
                        td { (key.publisher) }
                        td { code { (key.key_id) } }
                        td { (rfc3339_ms(key.added.saturating_mul(1000))) }
                        td { @match key.revoked { Some(at) => span.status-dead { "revoked " (rfc3339_ms(at.saturating_mul(1000))) }, None => "trusted" } }
                    } } }
                } }
            }
        },
    )
}

pub(super) fn hooks(
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

pub(super) fn audit(
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

/// A bar chart of `values` (oldest first) in the last of `slots` places (the newest at the
/// right), `label` saying what it shows.
fn bars(label: &str, values: &[u64], fill: &str, slots: usize) -> Markup {
    let peak = values.iter().copied().max().unwrap_or(0).max(1);
    let width = 960 / slots.max(1);
    let first = slots.saturating_sub(values.len());
    html! {
        figure {
            svg.chart viewBox="0 0 960 120" role="img" aria-label=(format!("{label}; at most {peak}")) {
                @for (n, value) in values.iter().enumerate() {
                    @let height = value * 100 / peak;
                    rect x=((first + n) * width) y=(110 - height) width=(width.saturating_sub(1).max(1)) height=(height) fill=(fill) {
                        title { (value) }
                    }
                }
                line x1="0" y1="110" x2="960" y2="110" stroke="#57606a" {}
            }
            figcaption.muted { (label) " (at most " (peak) ")." }
        }
    }
}

pub(super) fn metrics(principal: &Principal, csrf: &str, samples: &[Sample]) -> Markup {
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

/// A page saying why nothing was done, with `status`.
pub(super) fn refused(status: StatusCode, why: &str) -> Response {
    let body = page(
        "Refused",
        None,
        html! {
            h1 { "Refused" }
            p.refusal role="alert" { (why) }
            p { a href="/console/" { "Back to the console" } }
        },
    );
    (
        status,
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        body.into_string(),
    )
        .into_response()
}

/// An API refusal as a page: its status and message.
pub(super) fn refusal(error: &ApiError) -> Response {
    refused(error.status(), &error.message())
}
