//! `airlock demo`: builds the example integrations and shows the runtime's promises end to
//! end. Every step checks what it shows, so the demo fails loudly if a promise breaks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

mod audit;
mod credentials;
mod operator;

use super::engine_args::EngineArgs;
use super::exit::Exit;
use super::state::StateArgs;
use airlock_devkit::toolchain;
use airlock_runtime::bundle::{self, PublicKey, SigningKey};
use airlock_runtime::engine::EngineSettings;
use airlock_runtime::invoke::Invocation;
use airlock_runtime::loader::{Integration, SchemaCompile};
use airlock_runtime::manifest::LoadedManifest;
use airlock_runtime::runtime::Runtime;
use airlock_runtime::units::ByteSize;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// The guest-examples workspace to build and run
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../guest-examples"))]
    examples: PathBuf,
    /// Fresh sandboxes to time for the speed step
    #[arg(long, default_value_t = 500)]
    iterations: usize,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    state: StateArgs,
}

pub(crate) async fn demo(args: DemoArgs) -> anyhow::Result<Exit> {
    let settings = args.engine.settings();
    let state = args.state.state()?;
    let data = state.data.as_path();
    let examples = args.examples.canonicalize().map_err(|e| {
        anyhow::anyhow!(
            "cannot find the examples at {}: {e}",
            args.examples.display()
        )
    })?;
    step("Building the example integrations (Rust → wasm32-wasip2 components)");
    toolchain::ensure_wasm_target(&examples)?;
    let status = toolchain::guest_build(&examples).status()?;
    anyhow::ensure!(status.success(), "building the examples failed ({status})");

    let (store, trail) = state.open()?;
    let first_record = trail.lines().count() as u64;
    let runtime = Runtime::new(data, settings.clone())?.with_audit(trail.clone());
    let mut demo = Demo::default();
    let signer = Signer::fresh();

    step("Signing the examples with a fresh demo key; only verified bundles are loaded");
    println!(
        "  demo publisher key {} (in memory only; trusted for this run, never stored)",
        signer.key_id()
    );
    let mapper = signer.load(&runtime, &examples.join("contact-mapper"))?;
    println!(
        "  {} ({}), {} imports, all linked deny-by-default; {}",
        mapper.label(),
        mapper.digest(),
        mapper.imports().len(),
        mapper.cache_outcome()
    );
    let config_text = std::fs::read_to_string(examples.join("contact-mapper/sample-config.json"))?;
    let config = mapper.validate_config(Some(&config_text))?;
    let sample = std::fs::read_to_string(examples.join("contact-mapper/sample-input.json"))?;

    step("Running map-contact on a CRM record (input and output checked against schemas)");
    let ran = runtime
        .invoke(&mapper, &config, "map-contact", &sample)
        .await;
    if let Ok(output) = &ran.result {
        println!(
            "{}",
            indent(&serde_json::to_string_pretty(&output.to_value())?)
        );
    }
    demo.expect(&ran, "ok");

    step("Invalid input is refused at the boundary; the guest never sees it");
    let invalid = std::fs::read_to_string(examples.join("contact-mapper/invalid-input.json"))?;
    let refused = runtime
        .invoke(&mapper, &config, "map-contact", &invalid)
        .await;
    demo.expect(&refused, "input-rejected");

    step("A hostile guest tries to escape its limits");
    let hostile = signer.load(&runtime, &examples.join("hostile"))?;
    let none = hostile.validate_config(None)?;
    for (action, expected) in [
        ("spin-forever", "limit-timeout"),
        ("grow-memory", "limit-memory"),
        ("recurse-forever", "limit-stack"),
        ("huge-output", "limit-output"),
        ("flood-log", "ok"),
        ("read-env", "ok"),
        ("read-files", "ok"),
    ] {
        let attempt = runtime.invoke(&hostile, &none, action, "{}").await;
        demo.expect(&attempt, expected);
        if let Ok(output) = &attempt.result {
            println!("      output: {}", output.to_value());
        }
    }

    step("Egress is brokered: requests go only where the manifest allows, checked by the host");
    let exfil = signer.load(&runtime, &examples.join("exfil"))?;
    let none = exfil.validate_config(None)?;
    for action in [
        "undeclared-host",
        "ip-literals",
        "metadata",
        "userinfo",
        "plain-http",
    ] {
        let attempt = runtime.invoke(&exfil, &none, action, "{}").await;
        let denied = !attempt.egress.is_empty()
            && attempt
                .egress
                .iter()
                .all(|e| e.decision == airlock_host_api::egress::Decision::Denied);
        let reasons: Vec<&str> = attempt
            .egress
            .iter()
            .filter_map(|e| e.reason.as_deref())
            .collect();
        let mark = if denied { "✓" } else { "✗" };
        println!(
            "  {mark} {action:<16} {} request(s) denied: {}",
            attempt.egress.len(),
            reasons.join(", ")
        );
        if !denied {
            demo.failed(&format!("exfil {action}: a request was not denied"));
        }
    }

    step("Credentials stay with the host: injected on the wire, redacted from every echo");
    credentials::show(
        &mut demo,
        &signer,
        &examples,
        data,
        (&*store, &trail),
        &settings,
    )
    .await?;

    operator::show(&mut demo, &signer, &examples, &settings).await?;

    step("A component that imports wasi:sockets is refused before it runs");
    match signer.load(&runtime, &examples.join("hostile-sockets")) {
        Ok(_) => demo.failed("hostile-sockets loaded, but it imports wasi:sockets"),
        Err(e) => println!("  refused: {e}"),
    }

    step("Speed: a fresh sandbox for every invocation");
    let median = time_invocations(&runtime, &mapper, &config, &sample, args.iterations).await?;
    println!(
        "  {} invocations of map-contact, each in a new Store: median {:.1} µs",
        args.iterations,
        median.as_secs_f64() * 1e6
    );

    step("Every invocation and every request left a metadata-only, hash-chained audit record");
    audit::show(&mut demo, &trail, first_record)?;

    if demo.failures.is_empty() {
        println!("\nDemo complete: every promise held.");
        Ok(Exit::Success)
    } else {
        for failure in &demo.failures {
            eprintln!("demo failure: {failure}");
        }
        Ok(Exit::TEST_FAILED)
    }
}

/// The demo's publisher: a key made for this run, which signs each example into a bundle in
/// memory that is verified before it is loaded, as a trusted operator key's would be.
pub(super) struct Signer {
    key: SigningKey,
    pub(super) public: PublicKey,
}

impl Signer {
    fn fresh() -> Self {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let public = PublicKey::from_verifying_key(key.verifying_key());
        Self { key, public }
    }

    fn key_id(&self) -> &str {
        self.public.key_id()
    }

    /// The integration in `dir` as a signed bundle's bytes, and the file name it would have.
    pub(super) fn bundle(&self, dir: &Path) -> anyhow::Result<(Vec<u8>, PathBuf)> {
        let manifest = LoadedManifest::load(dir)?;
        let signed = bundle::sign_dir(&manifest, &self.key)?;
        let name = bundle::file_name(&signed.verified.id, &signed.verified.version);
        Ok((signed.bytes, dir.join(name)))
    }

    /// Signs the integration in `dir`, verifies the bundle against this key, and loads it.
    pub(super) fn load(&self, runtime: &Runtime, dir: &Path) -> anyhow::Result<Integration> {
        let manifest = LoadedManifest::load(dir)?;
        // sign_dir verifies the bytes against this (the trusted) key before returning them.
        let verified = bundle::sign_dir(&manifest, &self.key)?.verified;
        let origin = dir.join(bundle::file_name(&verified.id, &verified.version));
        Ok(runtime.load_bundle(&origin, &verified, SchemaCompile::AtLoad)?)
    }
}

#[derive(Default)]
struct Demo {
    failures: Vec<String>,
}

impl Demo {
    fn expect(&mut self, invocation: &Invocation, expected: &str) {
        let outcome = invocation.result.as_ref().err().map_or("ok", |e| e.class());
        let detail = match &invocation.result {
            Err(e) => format!(" — {}", e.to_string().replace('\n', " ")),
            Ok(_) => String::new(),
        };
        let mark = if outcome == expected { "✓" } else { "✗" };
        println!(
            "  {mark} {:<16} {outcome:<15} {:>8.1} ms, memory peak {}, {} log line(s){}{detail}",
            invocation.action,
            invocation.duration.as_secs_f64() * 1000.0,
            ByteSize(invocation.memory_peak),
            invocation.log.lines.len(),
            if invocation.log.dropped > 0 {
                format!(" (+{} dropped)", invocation.log.dropped)
            } else {
                String::new()
            },
        );
        if outcome != expected {
            self.failed(&format!(
                "{}: expected {expected}, got {outcome}",
                invocation.action
            ));
        }
    }

    /// Prints `what` with its mark; a failed check fails the demo.
    fn check(&mut self, held: bool, what: &str) {
        println!("  {} {what}", if held { "✓" } else { "✗" });
        if !held {
            self.failed(what);
        }
    }

    fn failed(&mut self, what: &str) {
        self.failures.push(what.to_string());
    }
}

async fn time_invocations(
    runtime: &Runtime,
    integration: &Integration,
    config: &airlock_runtime::loader::ValidatedConfig,
    input: &str,
    iterations: usize,
) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations.max(1) {
        let invocation = runtime
            .invoke(integration, config, "map-contact", input)
            .await;
        if let Err(e) = invocation.result {
            anyhow::bail!("timed invocation failed: {e}");
        }
        times.push(invocation.duration);
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Where the demo's stand-ins listen.
const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// `settings` with egress to `name` pinned to the loopback stand-in at `addr` (whose CA `ca` is
/// written to `dir/loopback-ca.pem` and trusted): the demo's dev switches, set in code, never
/// on the command line.
fn pinned_to(
    settings: &EngineSettings,
    name: &str,
    (addr, ca): (std::net::SocketAddr, &airlock_testkit::TestCa),
    dir: &Path,
) -> anyhow::Result<EngineSettings> {
    let ca_pem = dir.join("loopback-ca.pem");
    std::fs::write(&ca_pem, ca.cert_pem())?;
    Ok(EngineSettings {
        egress: airlock_runtime::engine::EgressOptions {
            resolve: vec![format!("{name}={addr}").parse()?],
            allow_private: "127.0.0.0/8".parse()?,
            extra_roots: vec![ca_pem],
            ..airlock_runtime::engine::EgressOptions::default()
        },
        ..settings.clone()
    })
}

fn step(title: &str) {
    println!("\n▶ {title}");
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}
