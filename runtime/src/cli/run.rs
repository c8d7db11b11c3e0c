//! `airlock run`: one action of one integration, end to end.

use std::path::{Path, PathBuf};

use clap::Args;

use super::input::read_arg;
use super::report::{print_egress, print_guest_log, print_summary};
use super::secrets::SecretArgs;
use super::{EXIT_INVALID, EXIT_TRUST, fail};
use crate::bundle::load_trusted;
use crate::engine::EngineSettings;
use crate::loader::Integration;
use crate::manifest::MANIFEST_FILE_NAME;
use crate::runtime::Runtime;
use crate::trust::TrustStore;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A signed bundle (`.airlock`); or, with --allow-unsigned, an integration directory or
    /// its airlock.toml
    path: PathBuf,
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
    /// Print the run summary as one JSON object (on stderr; stdout carries only the output)
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(
    args: RunArgs,
    data: &Path,
    master_key: Option<&Path>,
    settings: EngineSettings,
) -> anyhow::Result<u8> {
    let runtime = Runtime::new(data, settings)?;
    let integration = load(&runtime, &args.path, args.allow_unsigned, data)?;
    let limit = integration.limits().input;
    let config = args
        .config
        .as_deref()
        .map(|c| read_arg("config", c, limit))
        .transpose()?;
    let config = integration
        .validate_config(config.as_deref())
        .map_err(|e| fail(EXIT_INVALID, e))?;
    let input = read_arg("input", &args.input, limit)?;
    let credentials = args
        .secrets
        .broker(&runtime, integration.credentials(), master_key)
        .map_err(|e| fail(EXIT_INVALID, e))?;

    let invocation = runtime
        .invoke_with(&integration, &config, credentials, &args.action, &input)
        .await;
    print_guest_log(&invocation.log);
    if !args.json {
        print_egress(&invocation.egress);
    }
    if let Ok(output) = &invocation.result {
        println!("{}", serde_json::to_string_pretty(output)?);
    }
    print_summary(&invocation, &integration, args.json)?;
    Ok(invocation
        .result
        .as_ref()
        .err()
        .map_or(0, |e| e.exit_code()))
}

/// Loads a signed bundle verified against the trust store, or (with `allow_unsigned`) a plain
/// directory. Trust failures exit 6 before anything compiles.
pub(crate) fn load(
    runtime: &Runtime,
    path: &Path,
    allow_unsigned: bool,
    data: &Path,
) -> anyhow::Result<Integration> {
    if is_bundle(path) {
        let trust = TrustStore::open(data)?;
        let (integration, _) = load_trusted(runtime, path, &trust).map_err(|e| {
            let code = if e.trust_reason().is_some() {
                EXIT_TRUST
            } else {
                EXIT_INVALID
            };
            fail(code, e)
        })?;
        return Ok(integration);
    }
    if !allow_unsigned {
        return Err(fail(
            EXIT_TRUST,
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
    runtime.load(path).map_err(|e| fail(EXIT_INVALID, e))
}

/// A regular file that is not a manifest is taken for a bundle.
fn is_bundle(path: &Path) -> bool {
    path.is_file() && path.file_name().is_none_or(|n| n != MANIFEST_FILE_NAME)
}
