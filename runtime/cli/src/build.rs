//! `airlock build`: run an integration's declared build command in its directory.

use std::path::PathBuf;

use clap::Args;

use super::exit::{Exit, fail};
use airlock_devkit::toolchain;
use airlock_runtime::manifest::LoadedManifest;

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Integration directory, or the path of its airlock.toml
    #[arg(default_value = ".")]
    path: PathBuf,
}

pub(crate) fn build(args: BuildArgs) -> anyhow::Result<Exit> {
    let manifest = LoadedManifest::load(&args.path).map_err(|e| fail(Exit::Usage, e))?;
    let Some(build) = &manifest.manifest.integration.build else {
        return Err(fail(
            Exit::Usage,
            anyhow::anyhow!(
                "{} has no [integration.build] command; build the component yourself",
                manifest.path.display()
            ),
        ));
    };
    toolchain::ensure_wasm_target(&manifest.dir)?;
    eprintln!(
        "airlock: building in {}: {}",
        manifest.dir.display(),
        build.command
    );
    let status = toolchain::clean_command("sh", &manifest.dir)
        .args(["-c", &build.command])
        .status()?;
    if !status.success() {
        anyhow::bail!("build command failed ({status})");
    }
    let component = manifest.resolve(&manifest.manifest.integration.component);
    if !component.is_file() {
        anyhow::bail!(
            "the build succeeded but {} does not exist: check `component` in {}",
            component.display(),
            manifest.path.display()
        );
    }
    eprintln!("airlock: built {}", component.display());
    Ok(Exit::Success)
}
