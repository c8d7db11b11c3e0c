//! `airlock build`: run an integration's declared build command in its directory; and the
//! build `airlock test` and `airlock sign` run first, so neither uses a stale component.

use std::path::PathBuf;

use clap::Args;

use super::exit::{Exit, fail};
use airlock_devkit::{freshness, toolchain};
use airlock_runtime::manifest::LoadedManifest;

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Integration directory, or the path of its airlock.toml
    #[arg(default_value = ".")]
    path: PathBuf,
}

pub(crate) fn build(args: BuildArgs) -> anyhow::Result<Exit> {
    let manifest = LoadedManifest::load(&args.path).map_err(|e| fail(Exit::Usage, e))?;
    if manifest.manifest.integration.build.is_none() {
        return Err(fail(
            Exit::Usage,
            anyhow::anyhow!(
                "{} has no [integration.build] command; build the component yourself",
                manifest.path.display()
            ),
        ));
    }
    run(&manifest)?;
    Ok(Exit::Success)
}

/// Runs `[integration.build]` (which `manifest` has) and checks the component is there.
fn run(manifest: &LoadedManifest) -> anyhow::Result<()> {
    let Some(build) = &manifest.manifest.integration.build else {
        return Ok(());
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
    Ok(())
}

/// Whether `airlock test` and `airlock sign` build the component first.
#[derive(Debug, Args)]
pub(crate) struct BuildFirst {
    /// Use the component as it is instead of running [integration.build] first (one older
    /// than its sources is still refused)
    #[arg(long)]
    no_build: bool,
}

impl BuildFirst {
    /// Makes sure the component is built from the sources as they are now: runs
    /// `[integration.build]` (as `cargo test` builds first), or, with `--no-build` or without a
    /// build command, refuses a component older than a source file. A missing component is
    /// left for the caller to report.
    pub(crate) fn fresh(&self, manifest: &LoadedManifest) -> anyhow::Result<()> {
        let build = manifest.manifest.integration.build.as_ref();
        if build.is_some() && !self.no_build {
            return run(manifest).map_err(|e| fail(Exit::Usage, e));
        }
        let component = manifest.resolve(&manifest.manifest.integration.component);
        if !component.is_file() {
            return Ok(());
        }
        let Some(source) = freshness::newer_source(&manifest.dir, &component)? else {
            return Ok(());
        };
        let how = if build.is_some() {
            "run `airlock build`, or leave out --no-build"
        } else {
            "build it, or declare [integration.build] so airlock builds it first"
        };
        Err(fail(
            Exit::Usage,
            anyhow::anyhow!(
                "{} is older than {}, changed since it was built: {how}",
                component.display(),
                source.display()
            ),
        ))
    }
}
