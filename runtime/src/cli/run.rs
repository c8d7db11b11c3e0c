//! `airlock run`: one action of one integration, end to end.

use std::path::{Path, PathBuf};

use clap::Args;

use super::input::read_arg;
use super::report::{print_egress, print_guest_log, print_summary};
use super::secrets::SecretArgs;
use super::{EXIT_INVALID, fail};
use crate::engine::EngineSettings;
use crate::runtime::Runtime;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Integration directory, or the path of its airlock.toml
    path: PathBuf,
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
    let integration = runtime
        .load(&args.path)
        .map_err(|e| fail(EXIT_INVALID, e))?;
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
