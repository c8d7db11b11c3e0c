//! `airlock run`: one action of one integration, end to end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_host_api::audit::Trigger;
use airlock_host_api::kv::KvBackend;
use clap::Args;

use super::audit::refusal;
use super::engine_args::EngineArgs;
use super::exit::{Exit, fail};
use super::input::read_arg;
use super::report::{print_egress, print_error, print_guest_log, print_json, print_summary};
use super::secrets::SecretArgs;
use super::state::StateArgs;
use airlock_audit::AuditTrail;
use airlock_platform::install::Installer;
use airlock_runtime::bundle::load_trusted;
use airlock_runtime::invoke::Caller;
use airlock_runtime::loader::Integration;
use airlock_runtime::manifest::MANIFEST_FILE_NAME;
use airlock_runtime::runtime::Runtime;
use airlock_runtime::trust::TrustStore;
use airlock_store::Storage;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A signed bundle (`.airlock`); or, with --allow-unsigned, an integration directory or
    /// its airlock.toml. Omit it to run what --tenant's --installation has installed, with
    /// its grant and config
    #[arg(required_unless_present = "installation")]
    path: Option<PathBuf>,
    /// DEV ONLY: run an unsigned integration directory
    #[arg(long)]
    allow_unsigned: bool,
    /// The action to run
    #[arg(long)]
    action: String,
    /// Input JSON, or @FILE to read it from a file (@- for stdin)
    #[arg(long, value_name = "JSON|@FILE")]
    input: String,
    /// Config JSON, or @FILE; validated against the manifest's config schema
    #[arg(long, value_name = "JSON|@FILE")]
    config: Option<String>,
    #[command(flatten)]
    secrets: SecretArgs,
    /// Print one JSON object on stdout, `{"output": …, "summary": {…}}`, instead of the output
    /// alone (docs/cli.md); the guest log stays on stderr
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    state: StateArgs,
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<Exit> {
    let state = args.state.state()?;
    let (store, trail) = state.open()?;
    let mut settings = args.engine.settings();
    // The person running it owns the data: a denied request is shown with the rules to change.
    settings.egress.explain_denials = true;
    let runtime = Runtime::new(&state.data, settings)?.with_audit(trail.clone());
    let (integration, installed_config) = match &args.path {
        Some(path) => {
            if let Some((tenant, installation)) = args.secrets.scope() {
                return Err(fail(
                    Exit::Usage,
                    anyhow::anyhow!(
                        "--tenant {tenant} --installation {installation} runs what is installed \
                         (`airlock run --tenant {tenant} --installation {installation}`), with its \
                         grant and credentials; they never go to code given on the command line"
                    ),
                ));
            }
            let loaded = load(&runtime, path, args.allow_unsigned, &*store, &trail)?;
            (loaded, None)
        }
        None => load_installed(&args, &runtime, &*store, &trail)?,
    };
    let code = invoke(&args, &runtime, &integration, &*store, installed_config).await;
    trail.checkpoint()?;
    code
}

/// What `--tenant T --installation I` has installed: its stored bundle verified again, its
/// egress cut to its grant, and its config.
fn load_installed(
    args: &RunArgs,
    runtime: &Runtime,
    store: &dyn Storage,
    trail: &AuditTrail,
) -> anyhow::Result<(Integration, Option<String>)> {
    let (tenant, installation) = args.secrets.scope().ok_or_else(|| {
        fail(
            Exit::Usage,
            anyhow::anyhow!("name --tenant and --installation"),
        )
    })?;
    let installer = Installer {
        runtime,
        store,
        trail,
    };
    let record = installer
        .get(tenant, installation)
        .map_err(|e| fail(Exit::Usage, e))?;
    match installer.load_runnable(&record) {
        Ok(integration) => Ok((integration, record.config)),
        Err(e) => {
            let stored = store.bundle_origin(&record.bundle);
            Err(refusal(trail, &stored, e.trust_reason(), e))
        }
    }
}

async fn invoke(
    args: &RunArgs,
    runtime: &Runtime,
    integration: &Integration,
    store: &dyn Storage,
    installed_config: Option<String>,
) -> anyhow::Result<Exit> {
    let limit = integration.limits().input;
    let config = match args.config.as_deref() {
        Some(c) => Some(read_arg("config", c, limit)?),
        None => installed_config,
    };
    let config = integration
        .validate_config(config.as_deref())
        .map_err(|e| fail(Exit::Usage, e))?;
    let input = read_arg("input", &args.input, limit)?;
    let credentials = args
        .secrets
        .broker(runtime, integration.credentials(), store)
        .map_err(|e| fail(Exit::Usage, e))?;
    let caller = Caller {
        subject: args.secrets.subject(),
        trigger: Trigger::Cli,
        credentials,
        kv: kv_namespace(args, integration, store),
    };
    let invocation = runtime
        .invoke_as(integration, &config, &caller, &args.action, &input)
        .await;
    print_guest_log(&invocation.log);
    if args.json {
        print_error(&invocation);
        print_json(&invocation, integration)?;
    } else {
        print_egress(&invocation.egress, &invocation.egress_suppressed);
        if let Ok(output) = &invocation.result {
            println!("{}", serde_json::to_string_pretty(&output.to_value())?);
        }
        print_error(&invocation);
        print_summary(&invocation, integration);
    }
    Ok(invocation
        .result
        .as_ref()
        .err()
        .map_or(Exit::Success, Exit::from))
}

/// The kv namespace of this run: the installation's, or for a local run the data dir's
/// `local` tenant under the integration's name (kept between local runs, apart from every
/// installation).
fn kv_namespace(
    args: &RunArgs,
    integration: &Integration,
    store: &dyn Storage,
) -> Option<Arc<dyn KvBackend>> {
    integration.kv_quota()?;
    let (tenant, installation) = match args.secrets.scope() {
        Some((tenant, installation)) => (tenant.clone(), installation.clone()),
        None => {
            let id = &integration.manifest().manifest.integration.id;
            let name = id.as_str().rsplit('/').next().unwrap_or_default();
            ("local".parse().ok()?, name.parse().ok()?)
        }
    };
    Some(store.kv(&tenant, &installation))
}

/// Loads a signed bundle verified against the trust store, or (with `allow_unsigned`) a plain
/// directory. Trust failures exit 6 before anything compiles.
pub(crate) fn load(
    runtime: &Runtime,
    path: &Path,
    allow_unsigned: bool,
    store: &dyn Storage,
    trail: &AuditTrail,
) -> anyhow::Result<Integration> {
    if is_bundle(path) {
        let trust = TrustStore::from_keys(store.trusted_keys()?);
        return match load_trusted(runtime, path, &trust) {
            Ok((integration, _)) => Ok(integration),
            Err(e) => Err(refusal(trail, path, e.trust_reason(), e)),
        };
    }
    if !allow_unsigned {
        return Err(refusal(
            trail,
            path,
            Some("unsigned"),
            anyhow::anyhow!(
                "{} is not a signed bundle (unsigned): only signed bundles run; sign it with \
                 `airlock sign`, or pass --allow-unsigned for local development",
                path.display()
            ),
        ));
    }
    eprintln!(
        "warning: dev switch --allow-unsigned: running unsigned code from {}; no signature, \
         publisher or trust check applies",
        path.display()
    );
    runtime.load(path).map_err(|e| fail(Exit::Usage, e))
}

/// A regular file that is not a manifest is taken for a bundle.
fn is_bundle(path: &Path) -> bool {
    path.is_file() && path.file_name().is_none_or(|n| n != MANIFEST_FILE_NAME)
}
