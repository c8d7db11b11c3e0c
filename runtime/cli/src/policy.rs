//! `airlock policy check`: would the broker let this request out? The answer comes from the
//! same policy and address classifier the runtime enforces, and needs only the manifest.

use std::net::SocketAddr;
use std::path::PathBuf;

use airlock_host_api::egress::ip::IpClassifier;
use clap::{Args, Subcommand};
use serde_json::json;

use super::engine_args::AddressArgs;
use super::exit::{Exit, fail};
use airlock_runtime::manifest::LoadedManifest;

#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Answer allow or deny for one request, with the matched rule or the reason
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Integration directory, or the path of its airlock.toml
    path: PathBuf,
    /// HTTP method, e.g. GET
    method: String,
    /// The full request URL, as the guest would send it
    url: String,
    /// Print the answer as JSON
    #[arg(long)]
    json: bool,
    // The addresses `--resolve` pins are checked as the broker would dial them, with the
    // ranges `--allow-private` exempts.
    #[command(flatten)]
    addresses: AddressArgs,
}

pub(crate) fn policy(args: PolicyArgs) -> anyhow::Result<Exit> {
    let PolicyCommand::Check(args) = args.command;
    let egress = args.addresses.options();
    let manifest = LoadedManifest::load(&args.path).map_err(|e| fail(Exit::Usage, e))?;
    let policy = manifest.manifest.egress_policy();
    let allowed = match policy.check(&args.method, &args.url) {
        Ok(allowed) => allowed,
        Err(denial) => {
            return answer(
                args.json,
                "deny",
                json!({ "reason": denial.code(), "detail": denial.detail() }),
                &format!("deny: {denial}"),
            );
        }
    };
    let target = &allowed.target;
    let rule = allowed.rule;
    let credential = rule
        .credential()
        .map_or(String::new(), |c| format!(", credential `{c}` injected"));
    let rule_text = format!(
        "rule #{} {}{}",
        allowed.rule_index + 1,
        rule.url(),
        credential
    );

    let pinned: Vec<SocketAddr> = egress
        .resolve
        .iter()
        .filter(|pin| pin.matches(target.host()))
        .map(|pin| pin.socket_addr(target.port()))
        .collect();
    if pinned.is_empty() {
        let human = format!(
            "allow: {} {target} by {rule_text}\n  every address {} resolves to is checked when the request is made",
            allowed.method,
            target.host()
        );
        return answer(
            args.json,
            "allow",
            json!({ "rule": rule, "rule-index": allowed.rule_index, "target": target.to_string() }),
            &human,
        );
    }
    match IpClassifier::new(egress.allow_private).filter(&pinned) {
        Ok(dial) => {
            let addrs: Vec<String> = dial.iter().map(ToString::to_string).collect();
            let human = format!(
                "allow: {} {target} by {rule_text}, dialing {}",
                allowed.method,
                addrs.join(", ")
            );
            answer(
                args.json,
                "allow",
                json!({ "rule": rule, "rule-index": allowed.rule_index, "target": target.to_string(), "dial": addrs }),
                &human,
            )
        }
        Err(reason) => {
            let human = format!(
                "deny: destination address not allowed: {reason} (the host matched {rule_text})"
            );
            answer(
                args.json,
                "deny",
                json!({ "reason": "destination-ip-prohibited", "address": reason.code(), "detail": reason.to_string() }),
                &human,
            )
        }
    }
}

fn answer(
    json: bool,
    decision: &str,
    mut fields: serde_json::Value,
    human: &str,
) -> anyhow::Result<Exit> {
    if json {
        fields["decision"] = decision.into();
        println!("{fields}");
    } else {
        println!("{human}");
    }
    Ok(if decision == "allow" {
        Exit::Success
    } else {
        Exit::DENIED
    })
}
