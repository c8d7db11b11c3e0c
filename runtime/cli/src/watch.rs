//! `airlock watch`: rebuild and rerun an integration's fixture cases whenever a source,
//! schema, manifest or case file changes, with one summary line per run, until Ctrl-C.
//!
//! Changes are found by polling the watched files' times and sizes
//! (`airlock_devkit::watch`): a handful of files, read a few times a second, costs nothing
//! and behaves the same on every file system, editors' swap-and-rename saves included.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use super::build;
use super::engine_args::EngineArgs;
use super::exit::{Exit, explain, fail};
use super::state::{State, StateArgs};
use super::test::Suite;
use airlock_devkit::watch::{Snapshot, watched};
use airlock_runtime::engine::EngineSettings;

/// How often the watched files are looked at.
const POLL: Duration = Duration::from_millis(250);
/// How long the files must stay as they are before a run starts, so that an editor's save in
/// several writes (or `git checkout`) starts one run, not several.
const SETTLE: Duration = Duration::from_millis(150);

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Integration directory
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Only the cases whose name contains this text
    #[arg(long, value_name = "TEXT")]
    case: Option<String>,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    state: StateArgs,
}

pub(crate) async fn watch(args: WatchArgs) -> anyhow::Result<Exit> {
    let state = args.state.state()?;
    let settings = args.engine.settings();
    if !args.dir.is_dir() {
        return Err(fail(
            Exit::Usage,
            anyhow::anyhow!("{} is not a directory", args.dir.display()),
        ));
    }
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    println!(
        "airlock watch: watching {} (sources, manifest, schemas, tests/); Ctrl-C stops",
        args.dir.display()
    );
    let mut seen = look(&args.dir, &watched(&args.dir))?;
    let mut reason = "first run".to_string();
    for number in 1.. {
        tokio::select! {
            line = once(&args, &state, &settings) => println!("[run {number}] {reason}: {line}"),
            _ = &mut stop => break,
        }
        // Read once a run: only a manifest change, which is itself a change, names new schemas.
        let paths = watched(&args.dir);
        // A build writes Cargo.lock when it resolves anew: that is no change to run again for.
        seen.adopt(&look(&args.dir, &paths)?, &args.dir.join("Cargo.lock"));
        tokio::select! {
            changed = next_change(&args.dir, &paths, &mut seen) => reason = changed?,
            _ = &mut stop => break,
        }
    }
    println!("airlock watch: stopped");
    Ok(Exit::Success)
}

/// One run: load, build and test, printing the failures; returns the summary line.
async fn once(args: &WatchArgs, state: &State, settings: &EngineSettings) -> String {
    let started = Instant::now();
    match build_and_test(args, state, settings).await {
        Ok((passed, failed)) => {
            let verdict = if failed == 0 { "ok" } else { "FAILED" };
            format!(
                "{verdict}. {passed} passed, {failed} failed ({:.1} s)",
                started.elapsed().as_secs_f64()
            )
        }
        Err(error) => format!("error: {}", first_line(&explain(&error))),
    }
}

/// Builds (or refuses a stale component without a build command) and runs the cases; returns
/// how many passed and failed. What went wrong is printed in full here, and summed up by the
/// caller in one line.
async fn build_and_test(
    args: &WatchArgs,
    state: &State,
    settings: &EngineSettings,
) -> anyhow::Result<(usize, usize)> {
    let suite = Suite::load(&args.dir, args.case.as_deref()).inspect_err(show)?;
    let built = match suite.manifest.manifest.integration.build {
        Some(_) => build::run_quietly(&suite.manifest).await,
        None => build::refuse_stale(&suite.manifest),
    };
    built.inspect_err(show)?;
    // Opened for the run and closed after it, so `airlock test` works between runs.
    let (_store, trail) = state.open()?;
    let tally = suite
        .run(state, settings, &trail, &mut |_, _| {})
        .await
        .inspect_err(show)?;
    trail.checkpoint()?;
    tally.print_failures();
    Ok((tally.passed, tally.failed.len()))
}

/// Prints an error whole (a compiler's output, a manifest's complaint) before its summary.
fn show(error: &anyhow::Error) {
    eprintln!("{}", explain(error));
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The files under `paths` (the integration in `dir` watches) as they are now.
fn look(dir: &Path, paths: &[PathBuf]) -> anyhow::Result<Snapshot> {
    Snapshot::take(paths)
        .map_err(|e| anyhow::anyhow!("cannot read the files to watch in {}: {e}", dir.display()))
}

/// Waits until a file under `paths` changes and stays unchanged for [`SETTLE`]; returns what to
/// say about it ("src/lib.rs changed") and takes the new state as `seen`.
async fn next_change(dir: &Path, paths: &[PathBuf], seen: &mut Snapshot) -> anyhow::Result<String> {
    loop {
        tokio::time::sleep(POLL).await;
        let mut now = look(dir, paths)?;
        let Some(changed) = now.changed_since(seen).map(Path::to_path_buf) else {
            continue;
        };
        loop {
            tokio::time::sleep(SETTLE).await;
            let settled = look(dir, paths)?;
            if settled == now {
                break;
            }
            now = settled;
        }
        *seen = now;
        let shown = changed.strip_prefix(dir).unwrap_or(&changed);
        return Ok(format!("{} changed", shown.display()));
    }
}
