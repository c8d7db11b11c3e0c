//! The console's pages. maud escapes every value it writes, so a tenant's, a manifest's or an
//! upstream's text renders as text whatever it holds; no page carries a script or an inline
//! style (the policy forbids both).

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::auth::Principal;
use crate::error::ApiError;
use airlock_runtime::clock::rfc3339_ms;
use airlock_runtime::ids::TenantId;
use airlock_store::InstallationRecord;
use airlock_store::runs::{RunRecord, RunStatus};

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
                            a href="/console/installations" { "Installations" }
                            a href="/console/runs" { "Runs" }
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
                li { a href="/console/installations" { "Installations" } ": what each may do and its pending upgrade." }
                li { a href="/console/runs" { "Runs" } ": queued, failed and dead runs, retried from here." }
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
                                    td { (record.installation) }
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
