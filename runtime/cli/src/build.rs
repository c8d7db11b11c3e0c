//! `airlock build`: run an integration's declared build command in its directory; and the
//! build `airlock test` and `airlock sign` run first, so neither uses a stale component.

use std::io::Write;
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

/// Runs `[integration.build]` (which `manifest` has), its output on the terminal, and checks
/// the component is there.
fn run(manifest: &LoadedManifest) -> anyhow::Result<()> {
    let Some(mut command) = command(manifest)? else {
        return Ok(());
    };
    eprintln!(
        "airlock: building in {}: {}",
        manifest.dir.display(),
        manifest
            .manifest
            .integration
            .build
            .as_ref()
            .map_or("", |b| b.command.as_str())
    );
    let status = command.status()?;
    if !status.success() {
        anyhow::bail!("build command failed ({status})");
    }
    let component = built(manifest)?;
    eprintln!("airlock: built {}", component.display());
    Ok(())
}

/// Runs `[integration.build]`, if `manifest` has one, keeping its output unless it fails (for
/// `airlock watch`); the build is killed if the returned future is dropped.
pub(crate) async fn run_quietly(manifest: &LoadedManifest) -> anyhow::Result<()> {
    let Some(command) = command(manifest)? else {
        return Ok(());
    };
    let output = tokio::process::Command::from(command)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    if !output.status.success() {
        let mut stderr = std::io::stderr().lock();
        stderr.write_all(&output.stdout)?;
        stderr.write_all(&output.stderr)?;
        anyhow::bail!(
            "build command failed ({}); its output is above",
            output.status
        );
    }
    built(manifest).map(drop)
}

/// The `[integration.build]` command ready to run in the integration's directory, once the
/// wasm target is installed; `None` without one.
fn command(manifest: &LoadedManifest) -> anyhow::Result<Option<std::process::Command>> {
    let Some(build) = &manifest.manifest.integration.build else {
        return Ok(None);
    };
    toolchain::ensure_wasm_target(&manifest.dir)?;
    let mut command = toolchain::clean_command("sh", &manifest.dir);
    command.args(["-c", &build.command]);
    Ok(Some(command))
}

/// The component a build that succeeded wrote, or an error if it wrote none there.
fn built(manifest: &LoadedManifest) -> anyhow::Result<PathBuf> {
    let component = manifest.resolve(&manifest.manifest.integration.component);
    if !component.is_file() {
        anyhow::bail!(
            "the build succeeded but {} does not exist: check `component` in {}",
            component.display(),
            manifest.path.display()
        );
    }
    Ok(component)
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
        if manifest.manifest.integration.build.is_some() && !self.no_build {
            return run(manifest).map_err(|e| fail(Exit::Usage, e));
        }
        refuse_stale(manifest)
    }
}

/// Refuses a component older than a source file; a missing one is left for the caller.
pub(crate) fn refuse_stale(manifest: &LoadedManifest) -> anyhow::Result<()> {
    let build = manifest.manifest.integration.build.as_ref();
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
