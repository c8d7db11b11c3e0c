//! `airlock api-key create|list|revoke`: keys for Airlock's own API, one tenant each (or the
//! operator's admin key). A key is printed once, when made; only a hash is kept.

use clap::{Args, Subcommand};

use super::exit::{Exit, fail};
use super::state::StateArgs;
use airlock_platform::api_keys::{self, Scope};
use airlock_runtime::clock::{self, rfc3339};
use airlock_runtime::ids::TenantId;
use airlock_runtime::units::HumanDuration;

#[derive(Debug, Args)]
pub(crate) struct ApiKeyArgs {
    #[command(subcommand)]
    command: ApiKeyCommand,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Make a key and print it once (stdout); only its hash is stored
    Create {
        /// The tenant the key acts for
        #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
        tenant: Option<TenantId>,
        /// The operator's admin key (every tenant, every operation)
        #[arg(long)]
        admin: bool,
        /// What the key may do, comma-separated: invoke, credentials:write,
        /// installations:read, installations:write, audit:read
        #[arg(
            long,
            value_delimiter = ',',
            required_unless_present = "admin",
            conflicts_with = "admin"
        )]
        scope: Vec<Scope>,
        /// Expire after this long: 90d, 12h, 1h30m, …
        #[arg(long, value_name = "DURATION")]
        expires: Option<HumanDuration>,
    },
    /// List keys (ids, scopes, dates; never the keys)
    List {
        #[arg(long)]
        tenant: Option<TenantId>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id: it stops working at once
    Revoke { id: String },
}

pub(crate) fn api_key(args: ApiKeyArgs) -> anyhow::Result<Exit> {
    let (store, trail) = args.state.state()?.open()?;
    let now = clock::now_unix();
    match args.command {
        ApiKeyCommand::Create {
            tenant,
            admin: _,
            scope,
            expires,
        } => {
            let expires = expires.map(|d| now.saturating_add(d.0.as_secs()));
            let new =
                api_keys::issue(&*store, &trail, tenant.as_ref(), scope, expires).map_err(|e| {
                    match e {
                        api_keys::IssueError::NoTenant(_) => fail(Exit::Usage, e),
                        other => other.into(),
                    }
                })?;
            eprintln!(
                "made key {} for {}; it is shown once, below: keep it secret (Authorization: \
                 Bearer …)",
                new.record.id,
                new.record
                    .tenant
                    .as_deref()
                    .unwrap_or("the operator (admin)")
            );
            println!("{}", new.key.as_str());
        }
        ApiKeyCommand::List { tenant, json } => {
            let keys = store.api_keys(tenant.as_ref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
                return Ok(Exit::Success);
            }
            for k in keys {
                let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                let state = match (k.revoked, k.expires) {
                    (Some(at), _) => format!("revoked {}", rfc3339(at)),
                    (None, Some(at)) if at <= now => format!("expired {}", rfc3339(at)),
                    (None, Some(at)) => format!("expires {}", rfc3339(at)),
                    (None, None) => "no expiry".to_string(),
                };
                println!(
                    "{}  {:<20} {:<40} created {}  last used {}  {state}",
                    k.id,
                    k.tenant.as_deref().unwrap_or("(admin)"),
                    if scopes.is_empty() {
                        "all".to_string()
                    } else {
                        scopes.join(",")
                    },
                    rfc3339(k.created),
                    k.last_used.map_or("never".to_string(), rfc3339),
                );
            }
        }
        ApiKeyCommand::Revoke { id } => {
            if api_keys::revoke(&*store, &trail, &id)?.is_none() {
                return Err(fail(Exit::Usage, anyhow::anyhow!("no API key {id}")));
            }
            eprintln!("revoked key {id}");
        }
    }
    trail.checkpoint()?;
    Ok(Exit::Success)
}
