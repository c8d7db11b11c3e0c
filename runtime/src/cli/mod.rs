//! The `airlock` command line: thin adapters over the library, one file per verb.
//!
//! Exit codes (documented in the README): 0 success; 1 host failure; 2 usage or invalid
//! manifest/config; 3 input or output rejected by a schema; 4 the guest returned an error or
//! trapped (and `policy check`: the request would be denied); 5 the guest was stopped by a
//! limit; 6 unsigned or untrusted code.

mod apikey;
mod audit;
mod build;
mod check;
mod credentials;
mod demo;
mod input;
mod inspect;
mod install;
mod new;
mod policy;
mod report;
mod run;
mod secrets;
mod serve;
mod sign;
mod tenant;
mod test;
mod trust;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use airlock_host_api::egress::ip::AllowRanges;
use airlock_host_api::egress::resolve::ResolveOverride;

use crate::engine::{EgressOptions, EngineSettings};

/// Run untrusted integration components under declared limits, with validated I/O.
#[derive(Debug, Parser)]
#[command(name = "airlock", version)]
struct Cli {
    /// Directory for Airlock's state (compile cache and keys) [default: the platform's
    /// per-user data directory]
    #[arg(long, global = true, env = "AIRLOCK_DATA", value_name = "DIR")]
    data: Option<PathBuf>,

    /// The master key file that wraps tenants' data keys; keep it outside the data dir in
    /// production. AIRLOCK_MASTER_KEY (the key itself, base64) takes precedence
    /// [default: DIR/master.key, created 0600 when first needed]
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_MASTER_KEY_FILE",
        value_name = "FILE"
    )]
    master_key: Option<PathBuf>,

    /// Directory for the audit checkpoint key and signed checkpoints; must be outside the data
    /// dir [default: the platform's per-user config dir, e.g. ~/.config/airlock/audit]
    #[arg(long, global = true, env = "AIRLOCK_AUDIT_DIR", value_name = "DIR")]
    audit_dir: Option<PathBuf>,

    /// Meter fuel: give each invocation this deterministic budget (roughly, wasm
    /// instructions). Costs 25-45% on CPU-heavy guests; the timeout applies either way
    #[arg(long, global = true, value_name = "N")]
    fuel: Option<u64>,

    /// The operator's ceilings: the most any manifest may ask for. A manifest asking for more
    /// is refused, not clamped
    #[command(flatten)]
    ceilings: CeilingArgs,

    /// DEV ONLY: dial IP (and PORT) for HOST instead of resolving it, like curl; repeatable
    #[arg(long = "resolve", global = true, value_name = "HOST=IP[:PORT]")]
    resolve: Vec<ResolveOverride>,

    /// DEV ONLY: let egress reach addresses in CIDR that are otherwise denied as private
    #[arg(long, global = true, value_name = "CIDR")]
    allow_private: Vec<AllowRanges>,

    /// DEV ONLY: also trust the CA certificates in this PEM file for egress TLS
    #[arg(long, global = true, value_name = "FILE")]
    extra_root_ca: Vec<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

/// `--ceiling-*`: the operator's bounds on what manifests may declare.
#[derive(Debug, clap::Args)]
struct CeilingArgs {
    /// Most linear memory per invocation [default: 256 MiB]
    #[arg(long, global = true, value_name = "SIZE")]
    ceiling_memory: Option<crate::units::ByteSize>,
    /// Longest timeout per invocation [default: 1m]
    #[arg(long, global = true, value_name = "DURATION")]
    ceiling_timeout: Option<crate::units::HumanDuration>,
    /// Largest output per invocation [default: 16 MiB]
    #[arg(long, global = true, value_name = "SIZE")]
    ceiling_output: Option<crate::units::ByteSize>,
    /// Largest kv store (keys and values) per installation [default: 64 MiB]
    #[arg(long, global = true, value_name = "SIZE")]
    ceiling_kv_bytes: Option<crate::units::ByteSize>,
    /// Most kv keys per installation [default: 100000]
    #[arg(long, global = true, value_name = "N")]
    ceiling_kv_keys: Option<u64>,
    /// Most memory the host holds for one invocation outside its linear memory [default: 64 MiB]
    #[arg(long, global = true, value_name = "SIZE")]
    ceiling_host_memory: Option<crate::units::ByteSize>,
}

impl CeilingArgs {
    /// The defaults, with what was given in their place.
    fn ceilings(&self) -> airlock_host_api::policy::Ceilings {
        let mut c = airlock_host_api::policy::Ceilings::default();
        if let Some(size) = self.ceiling_memory {
            c.memory = size.bytes();
        }
        if let Some(duration) = self.ceiling_timeout {
            c.timeout = duration.0;
        }
        if let Some(size) = self.ceiling_output {
            c.output = size.bytes();
        }
        if let Some(size) = self.ceiling_kv_bytes {
            c.kv_bytes = size.bytes();
        }
        if let Some(keys) = self.ceiling_kv_keys {
            c.kv_keys = keys;
        }
        if let Some(size) = self.ceiling_host_memory {
            c.host_memory = size.bytes();
        }
        c
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one action of an integration and print its output
    Run(run::RunArgs),
    /// Check an integration: manifest, schemas, limits and component imports
    Check(check::CheckArgs),
    /// Build an integration's component with its `[integration.build] command`
    Build(build::BuildArgs),
    /// Run an integration's fixture cases (tests/*.toml) offline, through the real egress path
    Test(test::TestArgs),
    /// Make a new integration crate that builds and passes its own tests as it is
    New(new::NewArgs),
    /// Build the example integrations and show them end to end
    Demo(demo::DemoArgs),
    /// Ask the egress policy of an integration
    Policy(policy::PolicyArgs),
    /// Manage tenants
    Tenant(tenant::TenantArgs),
    /// Manage API keys for Airlock's own API (one tenant each, or the admin key)
    ApiKey(apikey::ApiKeyArgs),
    /// Install a signed bundle for a tenant, granting it a subset of what it declares
    Install(install::InstallArgs),
    /// Manage an installation's credentials (stored encrypted; values read from stdin)
    Credentials(credentials::CredentialsArgs),
    /// Make a publisher key pair (Ed25519)
    Keygen(trust::KeygenArgs),
    /// Pack an integration into one signed bundle
    Sign(sign::SignArgs),
    /// Show what a bundle would be allowed to do, and who signed it, before trusting it
    Inspect(inspect::InspectArgs),
    /// Manage the publisher keys this host trusts
    Trust(trust::TrustArgs),
    /// Read and verify the audit trail
    Audit(audit::AuditArgs),
    /// Print metrics (OpenMetrics text format) derived from the audit trail
    Metrics(audit::MetricsArgs),
    /// Serve the operator's HTTP API (docs/api.md)
    Serve(serve::ServeArgs),
    /// Manage webhook endpoints: signed deliveries that run an installation's action
    Webhook(webhook::WebhookArgs),
}

/// An error that carries the exit code the README documents for it.
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub(crate) struct Failure {
    code: u8,
    error: anyhow::Error,
}

/// Wraps an error with the exit code it should produce.
pub(crate) fn fail(code: u8, error: impl Into<anyhow::Error>) -> anyhow::Error {
    Failure {
        code,
        error: error.into(),
    }
    .into()
}

/// Exit code 2: the usage, manifest or config was wrong.
pub(crate) const EXIT_INVALID: u8 = 2;
/// Exit code 6: the code is unsigned, or its signature, key or publisher is not trusted.
pub(crate) const EXIT_TRUST: u8 = 6;

/// Parses arguments, runs the command and maps the result to an exit code.
pub fn main() -> ExitCode {
    if let Err(e) = crate::hardening::disable_core_dumps() {
        eprintln!("error: cannot disable core dumps (a crash could write secrets to disk): {e}");
        return ExitCode::from(1);
    }
    crate::hardening::install_panic_hook();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(dispatch(cli)));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let code = error.downcast_ref::<Failure>().map_or(1, |f| f.code);
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let data = || data_dir(cli.data.clone());
    let settings = EngineSettings {
        ceilings: cli.ceilings.ceilings(),
        fuel: cli.fuel,
        egress: egress_options(cli.resolve, cli.allow_private, cli.extra_root_ca),
        ..EngineSettings::default()
    };
    let state = || -> anyhow::Result<State> {
        Ok(State {
            data: data()?,
            master_key: cli.master_key.clone(),
            audit_dir: cli.audit_dir.clone(),
        })
    };
    match cli.command {
        Command::Run(args) => run::run(args, &state()?, settings).await,
        Command::Keygen(args) => trust::keygen(args),
        Command::Sign(args) => sign::sign(args),
        Command::Inspect(args) => inspect::inspect(args, &data()?, &settings.ceilings),
        Command::Trust(args) => trust::trust(args, &state()?),
        Command::Credentials(args) => credentials::credentials(args, &state()?),
        Command::Check(args) => check::check(args, &data()?, settings),
        Command::Build(args) => build::build(args),
        Command::Test(args) => test::test(args, &state()?, settings).await,
        Command::New(args) => new::new(args),
        Command::Demo(args) => demo::demo(args, &state()?, settings).await,
        Command::Policy(args) => policy::policy(args, settings.egress),
        Command::Audit(args) => audit::audit(args, &state()?),
        Command::Tenant(args) => tenant::tenant(args, &state()?),
        Command::ApiKey(args) => apikey::api_key(args, &state()?),
        Command::Install(args) => install::install(args, &state()?.open_installations(settings)?),
        Command::Metrics(args) => audit::metrics(args, &state()?),
        Command::Serve(args) => serve::serve(args, &state()?, settings).await,
        Command::Webhook(args) => webhook::webhook(args, &state()?),
    }
}

/// Where a verb's state lives: the data dir, the master key and the audit dir.
pub(crate) struct State {
    pub data: PathBuf,
    pub master_key: Option<PathBuf>,
    pub audit_dir: Option<PathBuf>,
}

impl State {
    /// Opens the store and its audit trail: every verb that changes state or runs code
    /// records it.
    pub(crate) fn open(&self) -> anyhow::Result<(crate::store::Store, crate::audit::AuditTrail)> {
        audit::open_trail(
            &self.data,
            self.master_key.as_deref(),
            self.audit_dir.as_deref(),
        )
    }
}

/// What the verbs that act on installations open.
pub(crate) struct Opened {
    pub store: crate::store::Store,
    pub trail: crate::audit::AuditTrail,
    pub trust: crate::trust::TrustStore,
    pub runtime: crate::runtime::Runtime,
}

impl Opened {
    pub(crate) fn installer(&self) -> crate::install::Installer<'_> {
        crate::install::Installer {
            runtime: &self.runtime,
            store: &self.store,
            trust: &self.trust,
            trail: &self.trail,
        }
    }
}

impl State {
    /// The store, its trail, the trust store and a runtime with `settings`.
    pub(crate) fn open_installations(&self, settings: EngineSettings) -> anyhow::Result<Opened> {
        let (store, trail) = self.open()?;
        Ok(Opened {
            trust: crate::trust::TrustStore::open(&self.data)?,
            runtime: crate::runtime::Runtime::new(&self.data, settings)?,
            store,
            trail,
        })
    }
}

/// The egress dev switches, each announced on stderr: they loosen secure defaults.
fn egress_options(
    resolve: Vec<ResolveOverride>,
    allow_private: Vec<AllowRanges>,
    extra_roots: Vec<PathBuf>,
) -> EgressOptions {
    let allow_private: AllowRanges = allow_private.into_iter().collect();
    for pin in &resolve {
        eprintln!("warning: dev switch --resolve {pin}: this name is not resolved through DNS");
    }
    if !allow_private.is_empty() {
        eprintln!(
            "warning: dev switch --allow-private {allow_private}: egress may reach these private \
             addresses; for development and tests only"
        );
    }
    for root in &extra_roots {
        eprintln!(
            "warning: dev switch --extra-root-ca {}: egress TLS trusts this CA too",
            root.display()
        );
    }
    EgressOptions {
        resolve,
        allow_private,
        extra_roots,
        ..EgressOptions::default()
    }
}

/// `--data`, else `$AIRLOCK_DATA` (both via clap), else the platform's per-user data dir.
fn data_dir(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match explicit {
        Some(dir) => dir,
        None => directories::ProjectDirs::from("dev", "airlock", "airlock")
            .map(|p| p.data_dir().to_path_buf())
            .ok_or_else(|| {
                fail(
                    EXIT_INVALID,
                    anyhow::anyhow!("no home directory to keep state in; pass --data DIR"),
                )
            })?,
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", dir.display()))?;
    Ok(dir)
}
