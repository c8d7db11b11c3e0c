//! `airlock webhook create|list|rotate|delete`: endpoints that run an installation's action
//! when a signed delivery arrives at `/v1/hooks/{id}` of `airlock serve`.
//!
//! The signing secret is printed once, on stdout, when an endpoint is created or rotated, and
//! never again. A Slack endpoint takes the Slack app's signing secret instead, from stdin.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::credentials::read_stdin;
use super::exit::{Exit, failed};
use super::state::StateArgs;
use airlock_platform::install::CreatedWebhook;
use airlock_policy::webhook::Scheme;
use airlock_runtime::clock::{now_unix, rfc3339};
use airlock_runtime::engine::EngineSettings;
use airlock_runtime::ids::{EndpointId, InstallationId, TenantId};
use airlock_runtime::units::HumanDuration;

#[derive(Debug, Args)]
pub(crate) struct WebhookArgs {
    #[command(subcommand)]
    command: WebhookCommand,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Make an endpoint that runs ACTION of an installation; prints its path and secret once
    Create {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        installation: InstallationId,
        /// The action each delivery runs, with the delivery's body as input
        #[arg(long)]
        action: String,
        /// How deliveries are signed
        #[arg(long, default_value = "standard", value_parser = scheme_parser())]
        scheme: Scheme,
        /// Read the sender's signing secret from stdin (Slack, whose app generates it)
        #[arg(long)]
        secret_stdin: bool,
    },
    /// List a tenant's endpoints (never their secrets)
    List {
        #[arg(long)]
        tenant: TenantId,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Give an endpoint a new secret; the old one keeps verifying for the overlap
    Rotate {
        #[arg(long)]
        tenant: TenantId,
        endpoint: EndpointId,
        /// How long the previous secret keeps verifying (e.g. 24h, 1h30m, 0s; at most 7d)
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "24h",
            value_parser = HumanDuration::parse_allowing_zero
        )]
        overlap: Duration,
        /// Read the sender's new signing secret from stdin (Slack)
        #[arg(long)]
        secret_stdin: bool,
    },
    /// Delete an endpoint: its deliveries are refused from now on
    Delete {
        #[arg(long)]
        tenant: TenantId,
        endpoint: EndpointId,
    },
}

pub(crate) fn webhook(args: WebhookArgs) -> anyhow::Result<Exit> {
    let state = args.state.state()?;
    let offered = |asked: bool| asked.then(read_stdin).transpose();
    match args.command {
        WebhookCommand::List { tenant, json } => {
            let list = state.store()?.webhooks_of(&tenant, now_unix())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                eprintln!("no webhook endpoints for tenant {tenant}");
            } else {
                println!(
                    "{:<35} {:<9} {:<20} {:<20} {:<22} SECRETS",
                    "ENDPOINT", "SCHEME", "INSTALLATION", "ACTION", "CREATED"
                );
                for e in list {
                    let secrets: Vec<String> = e
                        .secrets
                        .iter()
                        .map(|s| {
                            s.expires
                                .map_or("current".into(), |t| format!("until {}", rfc3339(t)))
                        })
                        .collect();
                    println!(
                        "{:<35} {:<9} {:<20} {:<20} {:<22} {}",
                        e.id,
                        e.scheme.as_str(),
                        e.installation,
                        e.action,
                        rfc3339(e.created),
                        secrets.join(", ")
                    );
                }
            }
            Ok(Exit::Success)
        }
        WebhookCommand::Create {
            tenant,
            installation,
            action,
            scheme,
            secret_stdin,
        } => {
            let offered = offered(secret_stdin)?;
            let opened = state.open_installations(EngineSettings::default())?;
            let created = opened
                .installer()
                .create_webhook(&tenant, &installation, &action, scheme, offered)
                .map_err(failed)?;
            opened.trail.checkpoint()?;
            show(&created, "created");
            Ok(Exit::Success)
        }
        WebhookCommand::Rotate {
            tenant,
            endpoint,
            overlap,
            secret_stdin,
        } => {
            let offered = offered(secret_stdin)?;
            let opened = state.open_installations(EngineSettings::default())?;
            let rotated = opened
                .installer()
                .rotate_webhook(&tenant, &endpoint, overlap, offered)
                .map_err(failed)?;
            opened.trail.checkpoint()?;
            show(&rotated, "rotated");
            Ok(Exit::Success)
        }
        WebhookCommand::Delete { tenant, endpoint } => {
            let opened = state.open_installations(EngineSettings::default())?;
            opened
                .installer()
                .delete_webhook(&tenant, &endpoint)
                .map_err(failed)?;
            opened.trail.checkpoint()?;
            eprintln!("deleted webhook endpoint {endpoint} of tenant {tenant}");
            Ok(Exit::Success)
        }
    }
}

/// The endpoint on stderr; its secret alone on stdout (for a pipe), unless the sender made it.
fn show(created: &CreatedWebhook, verb: &str) {
    let e = &created.endpoint;
    eprintln!(
        "{verb} webhook endpoint {} ({} scheme): POST {} runs {}/{} action {}",
        e.id,
        e.scheme.as_str(),
        e.path,
        e.tenant,
        e.installation,
        e.action
    );
    if e.scheme.imports_secret() {
        eprintln!("the signing secret is the one given on stdin");
    } else {
        eprintln!("signing secret (shown once; configure the sender with it):");
        println!("{}", created.secret.expose());
    }
}
/// Parses `--scheme`, listing the schemes in help and completions.
fn scheme_parser() -> impl clap::builder::TypedValueParser<Value = Scheme> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Scheme::ALL.map(Scheme::as_str))
        .try_map(|name| name.parse::<Scheme>())
}
