//! The pages of what is installed: tenants, installations, one installation with its pending
//! upgrade, and the trusted publishers.

use maud::{Markup, html};

use super::page;
use crate::auth::Principal;
use airlock_runtime::clock::rfc3339_ms;
use airlock_runtime::manifest::Manifest;
use airlock_runtime::trust::TrustedKey;
use airlock_store::{ConnectionInfo, CredentialInfo, InstallationRecord, TenantInfo};

pub(in crate::console) fn installations(
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

pub(in crate::console) fn tenants(
    principal: &Principal,
    csrf: &str,
    tenants: &[TenantInfo],
) -> Markup {
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
pub(in crate::console) struct Installed<'a> {
    pub record: &'a InstallationRecord,
    /// The installed version's manifest.
    pub manifest: &'a Manifest,
    pub credentials: &'a [CredentialInfo],
    pub connections: &'a [ConnectionInfo],
}

pub(in crate::console) fn installation(
    principal: &Principal,
    csrf: &str,
    installed: &Installed<'_>,
) -> Markup {
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

pub(in crate::console) fn trust(principal: &Principal, csrf: &str, keys: &[TrustedKey]) -> Markup {
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
