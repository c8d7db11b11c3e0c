//! The console's pages. maud escapes every value it writes, so a tenant's, a manifest's or an
//! upstream's text renders as text whatever it holds; no page carries a script or an inline
//! style (the policy forbids both).

mod activity;
mod installations;

pub(in crate::console) use activity::{Event, audit, events, hooks, metrics, runs};
pub(in crate::console) use installations::{
    Installed, installation, installations, tenants, trust,
};

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::auth::Principal;
use crate::error::ApiError;

/// A whole page: `title`, the navigation when signed in, and `body`.
pub(super) fn page(title: &str, signed: Option<(&Principal, &str)>, body: Markup) -> Markup {
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

pub(super) fn who(principal: &Principal) -> String {
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

/// A bar chart of `values` (oldest first) in the last of `slots` places (the newest at the
/// right), `label` saying what it shows.
pub(super) fn bars(label: &str, values: &[u64], fill: &str, slots: usize) -> Markup {
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
