//! `airlock check`: load an integration without running it and show what it declares.

use std::path::PathBuf;

use clap::Args;

use super::engine_args::CeilingArgs;
use super::exit::{Exit, fail};
use super::state::DataArgs;
use airlock_host_api::policy::{Ceilings, Limits};

use airlock_runtime::invoke::{Invocation, InvokeError};
use airlock_runtime::loader::Integration;
use airlock_runtime::manifest::{ApiKey, CredentialDecl, Grant, Manifest};
use airlock_runtime::runtime::Runtime;
use airlock_runtime::units::{ByteSize, HumanDuration};

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Integration directory, or the path of its airlock.toml
    path: PathBuf,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    ceilings: CeilingArgs,
    #[command(flatten)]
    data: DataArgs,
}

pub(crate) async fn check(args: CheckArgs) -> anyhow::Result<Exit> {
    let runtime = Runtime::new(&args.data.dir()?, args.ceilings.settings())?;
    let integration = runtime.load(&args.path).map_err(|e| fail(Exit::Usage, e))?;
    let summary = integration.describe();
    let loaded = integration.manifest();
    let component = loaded.resolve(&loaded.manifest.integration.component);
    let stale = airlock_devkit::freshness::newer_source(&loaded.dir, &component)?;
    if let Some(source) = &stale {
        eprintln!(
            "warning: {} is older than {}: what was checked is the old build; run `airlock build`",
            component.display(),
            source.display()
        );
    }
    let missing = unexported(&runtime, &integration).await;
    for action in &missing {
        eprintln!(
            "warning: {} declares action {action:?}, which the component does not export (it \
             answers unknown-action): handle it in the component's `invoke`, or remove it from \
             the manifest",
            loaded.path.display()
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(Exit::Success);
    }
    let manifest = &integration.manifest().manifest;
    println!("{} — {}", summary.id, manifest.integration.description);
    println!("  manifest   {}", summary.manifest.display());
    println!("  component  {}", summary.digest);
    print_capabilities(manifest, &summary.limits, &runtime.settings().ceilings);
    for import in summary.imports {
        println!("  import     {import}");
    }
    match (stale, missing.is_empty()) {
        (None, true) => println!("ok: {} is ready to run", summary.id),
        (Some(_), _) => println!("ok: {} loads, from a stale build", summary.id),
        (None, false) => println!(
            "ok: {} loads, and lacks {} declared action(s)",
            summary.id,
            missing.len()
        ),
    }
    Ok(Exit::Success)
}

/// The declared actions the component answers `unknown-action` for. Only when it answers so
/// for a name nobody declares: a component that does not follow that convention cannot be
/// told apart, and none are named. Each probe runs with no egress, credentials or kv, on input
/// that is not JSON ([`Runtime::probe`]).
async fn unexported(runtime: &Runtime, integration: &Integration) -> Vec<String> {
    let unknown = |invocation: Invocation| matches!(invocation.result, Err(InvokeError::Guest { code, .. }) if code == "unknown-action");
    if !unknown(
        runtime
            .probe(integration, "airlock-check: no such action")
            .await,
    ) {
        return Vec::new();
    }
    let mut missing = Vec::new();
    for action in integration.action_names() {
        if unknown(runtime.probe(integration, action).await) {
            missing.push(action.to_string());
        }
    }
    missing
}

/// What an operator must approve: publisher identity, limits, config, actions, egress rules and
/// credentials. Shared by `check` and `inspect`.
pub(super) fn print_capabilities(manifest: &Manifest, limits: &Limits, ceilings: &Ceilings) {
    let publisher = &manifest.publisher;
    println!(
        "  publisher  {} (support {}, privacy {})",
        publisher.name, publisher.support, publisher.privacy_policy
    );
    println!(
        "  limits     memory {}, timeout {}, output {}, input {}, host memory {}",
        ByteSize(limits.memory),
        HumanDuration(limits.timeout),
        ByteSize(limits.output),
        ByteSize(limits.input),
        ByteSize(limits.host_memory)
    );
    println!(
        "  config     {}",
        if manifest.config.is_some() {
            "validated by its schema"
        } else {
            "none declared"
        }
    );
    match manifest
        .kv
        .map(|kv| airlock_host_api::kv::KvQuota::resolve(kv.requested(), ceilings))
    {
        Some(Ok(q)) => println!(
            "  kv         store of at most {}, {} keys, {} per value",
            ByteSize(q.max_bytes),
            q.max_keys,
            ByteSize(q.max_value_bytes)
        ),
        Some(Err(e)) => println!("  kv         {e}"),
        None => println!("  kv         none declared"),
    }
    for (name, action) in &manifest.actions {
        println!("  action     {name}: {}", action.description);
    }
    if manifest.egress.is_empty() {
        println!("  egress     none: the integration has no network access");
    }
    for entry in &manifest.egress {
        let rule = entry.rule();
        let methods: Vec<&str> = rule.methods().iter().map(|m| m.as_str()).collect();
        let credential = rule
            .credential()
            .map_or(String::new(), |c| format!(" with credential `{c}`"));
        println!(
            "  egress     {} {}{credential}",
            methods.join(","),
            rule.url()
        );
    }
    for (name, decl) in &manifest.credentials {
        println!(
            "  credential {name}: {}",
            describe_credential(decl.get_ref())
        );
    }
}

/// One line on how a declared credential is used, for the operator who must approve it.
fn describe_credential(decl: &CredentialDecl) -> String {
    match decl {
        CredentialDecl::Bearer {} => "bearer token (Authorization: Bearer)".into(),
        CredentialDecl::Basic {} => "basic auth (Authorization: Basic)".into(),
        CredentialDecl::ApiKey(ApiKey::Header(h)) => format!("api key in header `{h}`"),
        CredentialDecl::ApiKey(ApiKey::Query(q)) => format!("api key in query parameter `{q}`"),
        CredentialDecl::Oauth2(o) => format!(
            "OAuth 2.0 {} grant at {}, scopes [{}]",
            match o.grant {
                Grant::ClientCredentials => "client-credentials",
                Grant::AuthorizationCode => "authorization-code",
            },
            o.token_url,
            o.scopes.join(", ")
        ),
    }
}
