//! Shared fixtures: the example integrations, runtimes in temp dirs, and the `airlock` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use airlock_runtime::{EngineSettings, Integration, Invocation, Runtime, ValidatedConfig};
use tempfile::TempDir;

/// The guest-examples workspace, built by this crate's build script.
pub fn examples() -> PathBuf {
    PathBuf::from(env!("AIRLOCK_GUEST_EXAMPLES"))
}

pub fn example(name: &str) -> PathBuf {
    examples().join(name)
}

pub fn read_example(name: &str, file: &str) -> String {
    std::fs::read_to_string(example(name).join(file))
        .unwrap_or_else(|e| panic!("cannot read {name}/{file}: {e}"))
}

/// One runtime shared by the tests that need no fresh state, so components compile once.
pub fn shared() -> &'static Runtime {
    static RUNTIME: OnceLock<(TempDir, Runtime)> = OnceLock::new();
    &RUNTIME.get_or_init(fresh).1
}

/// A runtime with its own empty data dir.
pub fn fresh() -> (TempDir, Runtime) {
    let dir = TempDir::new().expect("temp dir");
    let runtime = Runtime::new(dir.path(), EngineSettings::default()).expect("runtime starts");
    (dir, runtime)
}

pub fn load(name: &str) -> Integration {
    shared()
        .load(&example(name))
        .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

pub fn mapper_config(integration: &Integration) -> ValidatedConfig {
    integration
        .validate_config(Some(&read_example("contact-mapper", "sample-config.json")))
        .expect("sample config is valid")
}

/// Runs one action on the shared runtime.
pub async fn invoke(
    integration: &Integration,
    config: &ValidatedConfig,
    action: &str,
    input: &str,
) -> Invocation {
    shared().invoke(integration, config, action, input).await
}

/// The outcome class of an invocation: `ok` or the error's class.
pub fn outcome(invocation: &Invocation) -> &'static str {
    invocation.result.as_ref().err().map_or("ok", |e| e.class())
}

/// An integration directory in a temp dir: a copy of `example`'s schemas and built component,
/// with the manifest text given (its `component` should be `"component.wasm"`).
pub fn custom_integration(example_name: &str, wasm: &str, manifest: &str) -> TempDir {
    let dir = TempDir::new().expect("temp dir");
    let source = example(example_name);
    let schemas = source.join("schemas");
    if schemas.is_dir() {
        std::fs::create_dir(dir.path().join("schemas")).expect("schemas dir");
        for entry in std::fs::read_dir(&schemas).expect("read schemas") {
            let entry = entry.expect("schema entry");
            std::fs::copy(
                entry.path(),
                dir.path().join("schemas").join(entry.file_name()),
            )
            .expect("copy schema");
        }
    }
    let built = examples().join("target/wasm32-wasip2/release").join(wasm);
    std::fs::copy(&built, dir.path().join("component.wasm")).expect("copy component");
    std::fs::write(dir.path().join("airlock.toml"), manifest).expect("write manifest");
    dir
}

/// The contact-mapper manifest with `component = "component.wasm"` and `extra` appended.
pub fn mapper_manifest(extra_limits: &str) -> String {
    let original = read_example("contact-mapper", "airlock.toml");
    let mut out = String::new();
    for line in original.lines() {
        if line.trim_start().starts_with("component") {
            out.push_str("component = \"component.wasm\"\n");
        } else {
            out.push_str(line);
            out.push('\n');
            if line.trim() == "[limits]" {
                out.push_str(extra_limits);
            }
        }
    }
    out
}

/// The `airlock` CLI as this package builds it (`src/bin/airlock-under-test.rs`).
pub fn airlock_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_airlock-under-test"))
}

/// The audit dir the CLI under test uses: shared by every test (checkpoint files are named by
/// chain, one chain per data dir), under cargo's target tmp dir, never inside a data dir.
pub fn audit_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit")
}

/// `airlock ARGS…` on the data dir DATA (`AIRLOCK_DATA`: every verb that keeps state reads
/// it, and the others ignore it), with the tests' audit dir and none of the caller's
/// `AIRLOCK_MASTER_KEY` or `AIRLOCK_STORE`.
pub fn airlock_command(data: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(airlock_bin());
    command
        .args(args)
        .env("AIRLOCK_DATA", data)
        .env_remove("AIRLOCK_STORE")
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_MASTER_KEY_FILE")
        .env("AIRLOCK_AUDIT_DIR", audit_dir());
    command
}

/// Runs `airlock ARGS` with its own data dir; returns the output.
pub fn airlock(data: &Path, args: &[&str]) -> Output {
    airlock_command(data, args).output().expect("airlock runs")
}

/// [`airlock`] with `dir` as the working directory.
pub fn airlock_in(dir: &Path, data: &Path, args: &[&str]) -> Output {
    airlock_command(data, args)
        .current_dir(dir)
        .output()
        .expect("airlock runs")
}

/// `airlock ARGS…` on DATA with `stdin` piped in and extra environment variables.
pub fn airlock_with(data: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    use std::io::Write;
    let mut child = airlock_command(data, args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("airlock starts");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("airlock runs")
}

/// The dev switches that point `airlock` at TLS mocks: `--resolve` for each pin, loopback
/// allowed, and the mock CA (PEM file `ca`) trusted. They go after the verb that runs code.
pub fn dev_switches(pins: &[String], ca: &Path) -> Vec<String> {
    let mut args = Vec::new();
    for pin in pins {
        args.extend(["--resolve".to_string(), pin.clone()]);
    }
    args.extend(["--allow-private".into(), "127.0.0.0/8".into()]);
    args.extend(["--extra-root-ca".into(), ca.display().to_string()]);
    args
}

/// `airlock` arguments that run `action` of the unsigned example `name` against TLS mocks
/// (see [`dev_switches`]).
pub fn run_against_mocks(pins: &[String], ca: &Path, name: &str, action: &str) -> Vec<String> {
    let mut args = vec![
        "run".into(),
        "--allow-unsigned".into(),
        example(name).display().to_string(),
        "--action".into(),
        action.into(),
    ];
    args.extend(dev_switches(pins, ca));
    args
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `@PATH` of an example's file, as `--input`/`--config` take it.
pub fn example_arg(name: &str, file: &str) -> String {
    format!("@{}", example(name).join(file).display())
}

/// `airlock run <hostile> --action ACTION --input {} [OPTIONS…]`.
pub fn run_hostile(data: &Path, options: &[&str], action: &str) -> Output {
    let hostile = example("hostile").display().to_string();
    let mut args = vec![
        "run",
        "--allow-unsigned",
        &hostile,
        "--action",
        action,
        "--input",
        "{}",
    ];
    args.extend(options);
    airlock(data, &args)
}

/// `airlock run <contact-mapper> --action map-contact --input INPUT --config CONFIG [EXTRA…]`.
pub fn run_mapper(data: &Path, input: &str, config: &str, extra: &[&str]) -> Output {
    let mapper = example("contact-mapper").display().to_string();
    let mut args = vec![
        "run",
        "--allow-unsigned",
        &mapper,
        "--action",
        "map-contact",
        "--input",
        input,
    ];
    args.extend(["--config", config]);
    args.extend(extra);
    airlock(data, &args)
}

/// A copy of contact-mapper (manifest, schemas, built component) in a temp dir.
pub fn mapper_copy() -> TempDir {
    custom_integration(
        "contact-mapper",
        "contact_mapper.wasm",
        &mapper_manifest(""),
    )
}

/// [`mapper_copy`] with `file` replaced by `contents`.
pub fn mapper_with(file: &str, contents: &[u8]) -> TempDir {
    let dir = mapper_copy();
    std::fs::write(dir.path().join(file), contents).expect("write replacement");
    dir
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
