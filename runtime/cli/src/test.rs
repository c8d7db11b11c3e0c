//! `airlock test`: an integration's fixture cases (`tests/*.toml`), offline, through the real
//! egress path; `--privileges` adds the least-privilege report; `--record` runs one case
//! against the real upstream and writes what it exchanged into the fixture, scrubbed.

use std::path::{Path, PathBuf};

use clap::Args;

use super::build::BuildFirst;
use super::engine_args::EngineArgs;
use super::exit::{Exit, fail};
use super::secrets::SecretArgs;
use super::state::{State, StateArgs};
use airlock_audit::AuditTrail;
use airlock_devkit::fixtures::record::{self, Recorder};
use airlock_devkit::fixtures::runner::{CaseOutcome, Runner, RunnerError, Upstream};
use airlock_devkit::fixtures::{Case, FixtureFile, fixture_files};
use airlock_devkit::privileges::{Report, Usage};
use airlock_runtime::engine::EngineSettings;
use airlock_runtime::manifest::LoadedManifest;

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// Integration directory
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Only the cases whose name contains this text
    #[arg(long, value_name = "TEXT")]
    case: Option<String>,
    /// Also report which declared egress rules, methods and credentials the cases used, and
    /// print the manifest fragment without the rest
    #[arg(long)]
    privileges: bool,
    /// Run the one case --case names against the real upstream (secrets from --secret or
    /// --secrets-file) and write the exchanges it made, and its outcome, into its fixture,
    /// every injected secret scrubbed; then replay it offline
    #[arg(long, requires = "case")]
    record: bool,
    #[command(flatten)]
    build: BuildFirst,
    #[command(flatten)]
    secrets: SecretArgs,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    state: StateArgs,
}

pub(crate) async fn test(args: TestArgs) -> anyhow::Result<Exit> {
    let state = &args.state.state()?;
    let settings = args.engine.settings();
    let suite = Suite::load(&args.dir, args.case.as_deref())?;
    if args.secrets.is_given() && !args.record {
        return Err(fail(
            Exit::Usage,
            anyhow::anyhow!(
                "fixture runs use dummy credentials; --secret and --secrets-file go with --record"
            ),
        ));
    }
    args.build.fresh(&suite.manifest)?;
    let (_store, trail) = state.open()?;
    let verdict = if args.record {
        record(&args, &suite, state, &settings, &trail).await
    } else {
        run_cases(&args, &suite, state, &settings, &trail).await
    };
    trail.checkpoint()?;
    verdict
}

/// An integration's fixture cases, loaded and selected: what `airlock test` and `airlock
/// watch` run.
pub(crate) struct Suite {
    pub(crate) manifest: LoadedManifest,
    loaded: Vec<(PathBuf, FixtureFile)>,
    case: Option<String>,
}

impl Suite {
    /// Loads the manifest and every fixture file of the integration in `dir`, keeping the
    /// cases whose name contains `case`; refuses a suite with nothing to run.
    pub(crate) fn load(dir: &Path, case: Option<&str>) -> anyhow::Result<Suite> {
        let manifest = LoadedManifest::load(dir).map_err(|e| fail(Exit::Usage, e))?;
        let files = fixture_files(&manifest.dir).map_err(|e| fail(Exit::Usage, e))?;
        if files.is_empty() {
            return Err(fail(
                Exit::Usage,
                anyhow::anyhow!(
                    "no fixture files in {}: write cases in tests/*.toml (docs/connector-guide.md)",
                    manifest
                        .dir
                        .join(airlock_devkit::fixtures::FIXTURE_DIR)
                        .display()
                ),
            ));
        }
        let loaded: Vec<(PathBuf, FixtureFile)> = files
            .iter()
            .map(|path| Ok((path.clone(), FixtureFile::load(path)?)))
            .collect::<Result<_, airlock_devkit::fixtures::FixtureError>>()
            .map_err(|e| fail(Exit::Usage, e))?;
        let suite = Suite {
            manifest,
            loaded,
            case: case.map(str::to_string),
        };
        if let (Some((path, _)), Some((other, _))) = (
            suite.load_error(),
            suite.loaded.iter().find(|(_, f)| !f.cases.is_empty()),
        ) {
            return Err(fail(
                Exit::Usage,
                anyhow::anyhow!(
                    "{} expects the integration to be refused at load, and {} has cases to run \
                     in it: one of them is wrong",
                    path.display(),
                    other.display()
                ),
            ));
        }
        if suite.total() == 0 {
            return Err(fail(
                Exit::Usage,
                anyhow::anyhow!(
                    "no case to run{}",
                    case.map_or(String::new(), |c| format!(": no case name contains {c:?}"))
                ),
            ));
        }
        Ok(suite)
    }

    fn selected(&self, name: &str) -> bool {
        self.case.as_deref().is_none_or(|c| name.contains(c))
    }

    /// The fixture file that expects the integration to be refused at load, and the error it
    /// expects.
    fn load_error(&self) -> Option<(&Path, &str)> {
        self.loaded
            .iter()
            .find_map(|(path, f)| f.load_error.as_deref().map(|e| (path.as_path(), e)))
    }

    /// How many cases a run reports: the selected ones, or the one load-error case.
    pub(crate) fn total(&self) -> usize {
        if self.load_error().is_some() {
            return 1;
        }
        self.loaded
            .iter()
            .map(|(_, f)| f.cases.iter().filter(|c| self.selected(&c.name)).count())
            .sum()
    }

    /// Runs the selected cases offline against their fixtures; `each` hears every verdict as
    /// it comes, labelled `file::case`.
    pub(crate) async fn run(
        &self,
        state: &State,
        settings: &EngineSettings,
        trail: &AuditTrail,
        each: &mut dyn FnMut(&str, &CaseOutcome),
    ) -> anyhow::Result<Tally> {
        let files: Vec<&FixtureFile> = self.loaded.iter().map(|(_, file)| file).collect();
        let started = Runner::start(
            &state.data,
            settings,
            trail,
            &self.manifest.dir,
            &files,
            Upstream::Fixtures,
        )
        .await;
        let mut tally = Tally::default();
        if let Some((path, expected)) = self.load_error() {
            let outcome = refused_at_load(expected, started.err());
            tally.add(&format!("{}::load-error", file_stem(path)), outcome, each);
            return Ok(tally);
        }
        let runner = started.map_err(|e| fail(Exit::Usage, e))?;
        for (path, file) in &self.loaded {
            let stem = file_stem(path);
            for case in file.cases.iter().filter(|c| self.selected(&c.name)) {
                let outcome = runner.run(file, case).await;
                tally.usage.record(&self.manifest.manifest, &outcome.egress);
                tally.add(&format!("{stem}::{}", case.name), outcome, each);
            }
        }
        Ok(tally)
    }
}

/// What a run of a suite came to.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) passed: usize,
    /// Each failed case's label and outcome, in the order they ran.
    pub(crate) failed: Vec<(String, CaseOutcome)>,
    /// What the cases used of the manifest's egress rules and credentials.
    usage: Usage,
}

impl Tally {
    fn add(&mut self, label: &str, outcome: CaseOutcome, each: &mut dyn FnMut(&str, &CaseOutcome)) {
        each(label, &outcome);
        if outcome.passed() {
            self.passed += 1;
        } else {
            self.failed.push((label.to_string(), outcome));
        }
    }

    /// The failures, each under its label, as `airlock test` prints them.
    pub(crate) fn print_failures(&self) {
        for (label, outcome) in &self.failed {
            println!("\n---- {label} ----");
            for problem in &outcome.problems {
                println!("{problem}");
            }
        }
    }
}

/// Runs the selected cases and prints the report.
async fn run_cases(
    args: &TestArgs,
    suite: &Suite,
    state: &State,
    settings: &EngineSettings,
    trail: &AuditTrail,
) -> anyhow::Result<Exit> {
    println!("\nrunning {} case(s)", suite.total());
    let tally = suite
        .run(state, settings, trail, &mut |label, outcome| {
            let verdict = if outcome.passed() { "ok" } else { "FAILED" };
            println!("case {label} ... {verdict}");
        })
        .await?;
    if !tally.failed.is_empty() {
        println!("\nfailures:");
        tally.print_failures();
    }
    let verdict = if tally.failed.is_empty() {
        "ok"
    } else {
        "FAILED"
    };
    println!(
        "\ntest result: {verdict}. {} passed, {} failed",
        tally.passed,
        tally.failed.len()
    );
    if args.privileges {
        let report = Report::new(&suite.manifest.manifest, &tally.usage);
        println!("\n{}", report.render());
        if let Some(fragment) = report.tightened() {
            println!("{fragment}");
        }
    }
    Ok(if tally.failed.is_empty() {
        Exit::Success
    } else {
        Exit::TEST_FAILED
    })
}

/// `--record`: the one case `--case` names, run live, written back, then replayed offline.
async fn record(
    args: &TestArgs,
    suite: &Suite,
    state: &State,
    settings: &EngineSettings,
    trail: &AuditTrail,
) -> anyhow::Result<Exit> {
    let manifest = &suite.manifest;
    let wanted = args.case.as_deref().unwrap_or_default();
    let (path, file, case) = only_case(&suite.loaded, wanted)?;
    if args.secrets.scope().is_some() {
        return Err(fail(
            Exit::Usage,
            anyhow::anyhow!(
                "--record takes local secrets (--secret, --secrets-file), never an installation's"
            ),
        ));
    }
    let declared = airlock_runtime::loader::credential_specs(&manifest.manifest);
    let secrets = args
        .secrets
        .local_values(&declared)
        .map_err(|e| fail(Exit::Usage, e))?;
    let recorder = Recorder::new();
    let tap = airlock_host_api::egress::tap::Tap(recorder.clone());
    let upstream = Upstream::Live {
        secrets: secrets.clone(),
        tap,
    };
    let runner = Runner::start(&state.data, settings, trail, &manifest.dir, &[], upstream)
        .await
        .map_err(|e| fail(Exit::Usage, e))?;
    let invocation = runner
        .invoke(file, case)
        .await
        .map_err(|e| fail(Exit::Usage, anyhow::anyhow!(e)))?;
    let exchanges = recorder.take();
    let with_specs: Vec<_> = secrets
        .into_iter()
        .filter_map(|(name, secret)| {
            let spec = declared.get(&name)?.clone();
            Some((name, spec, secret))
        })
        .collect();
    let written =
        record::write(path, &case.name, &invocation, &exchanges, &with_specs).map_err(|e| {
            // A run that cannot be recorded safely is a failed run, not a usage error.
            let code = match e {
                record::RecordError::Secret(_)
                | record::RecordError::Incomplete(..)
                | record::RecordError::Binary(..) => Exit::TEST_FAILED,
                _ => Exit::Usage,
            };
            fail(code, e)
        })?;
    let outcome = match &invocation.result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.class().to_string(),
    };
    println!(
        "recorded {:?}: {written} exchange(s), outcome {outcome}, into {}",
        case.name,
        path.display()
    );
    // The recording must pass offline, as it will from now on.
    let file = FixtureFile::load(path).map_err(|e| fail(Exit::Usage, e))?;
    let Some(case) = file.cases.iter().find(|c| c.name == case.name) else {
        return Err(anyhow::anyhow!(
            "the recorded case is gone from {}",
            path.display()
        ));
    };
    let runner = Runner::start(
        &state.data,
        settings,
        trail,
        &manifest.dir,
        &[&file],
        Upstream::Fixtures,
    )
    .await
    .map_err(|e: RunnerError| fail(Exit::Usage, e))?;
    let replayed = runner.run(&file, case).await;
    if replayed.passed() {
        println!("replayed offline: ok");
        Ok(Exit::Success)
    } else {
        println!("replayed offline: FAILED");
        for problem in &replayed.problems {
            println!("{problem}");
        }
        Ok(Exit::TEST_FAILED)
    }
}

/// The one case named `wanted` (exactly, or else the only one whose name contains it).
fn only_case<'a>(
    loaded: &'a [(PathBuf, FixtureFile)],
    wanted: &str,
) -> anyhow::Result<(&'a Path, &'a FixtureFile, &'a Case)> {
    let all = || {
        loaded
            .iter()
            .flat_map(|(path, file)| file.cases.iter().map(move |c| (path.as_path(), file, c)))
    };
    let exact: Vec<_> = all().filter(|(_, _, c)| c.name == wanted).collect();
    let found: Vec<_> = if exact.is_empty() {
        all().filter(|(_, _, c)| c.name.contains(wanted)).collect()
    } else {
        exact
    };
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(fail(
            Exit::Usage,
            anyhow::anyhow!("no case is named {wanted:?}"),
        )),
        many => {
            let names: Vec<&str> = many.iter().map(|(_, _, c)| c.name.as_str()).collect();
            Err(fail(
                Exit::Usage,
                anyhow::anyhow!(
                    "--record runs one case, and {wanted:?} names {}: {}",
                    names.len(),
                    names.join(", ")
                ),
            ))
        }
    }
}

/// The verdict on a fixture file that expects the integration to be refused at load with an
/// error containing `expected`.
fn refused_at_load(expected: &str, error: Option<RunnerError>) -> CaseOutcome {
    let problem = match &error {
        Some(e) if format!("{e}").contains(expected) => None,
        Some(e) => Some(format!(
            "expected a load error containing {expected:?}, got: {e}"
        )),
        None => Some(format!(
            "expected a load error containing {expected:?}, but the integration loaded"
        )),
    };
    CaseOutcome {
        name: "load-error".to_string(),
        problems: problem.into_iter().collect(),
        egress: Vec::new(),
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}
