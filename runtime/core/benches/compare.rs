//! The comparison harness: Airlock against its floors, in one process and one run.
//!
//! `cargo bench -p airlock-runtime --bench compare` measures in full; under `cargo test` (no
//! `--bench` argument) the same code runs in a quick mode of a few seconds so it cannot rot, and
//! asserts nothing about time. It prints a markdown table and ends with one machine-readable
//! line, `ratios: …`, whose keys stay stable so a script can compare runs. With
//! `AIRLOCK_BENCH_PLOT=FILE` it also draws the scaling figure (SVG) into FILE.
//!
//! Rows: `contact-mapper`'s `map-contact` through Airlock's full path (with and without the
//! durable audit trail), bare wasmtime on the same engine (`InstancePre` + fresh `Store` + call),
//! and the same mapping compiled natively (the physical floor); throughput with N concurrent
//! tasks, and with the audit trail at 64; `map-contacts` on 1 KB, 100 KB and 1 MB pages against
//! native serde_json; cold start of a new signed bundle with an empty and a warm compiled
//! cache; one brokered HTTPS GET (on the broker's keep-alive connection) against reqwest with a
//! new connection and with a pooled one; and the resident memory of invocations parked in a
//! host call. With `--features extism-baseline`, Extism runs the same mapping (the guest's own
//! code behind extism-pdk, `benches/extism-guest`): a fresh plugin from a compiled one per call
//! (its isolation per call), and a warm call on one reused plugin (no isolation).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_host_api::credentials::{CredentialScope, CredentialType, Secret, StaticSecrets};
use airlock_runtime::bundle::{self, PublicKey, SigningKey};
use airlock_runtime::cache::{CacheOutcome, CompileCache};
use airlock_runtime::digest::Digest;
use airlock_runtime::engine::EgressOptions;
use airlock_runtime::manifest::LoadedManifest;
use airlock_runtime::trust::TrustStore;
use airlock_runtime::{EngineSettings, Runtime};
use airlock_testkit::{TestCa, Upstream};
use bytes::Bytes;

mod common;

use common::measure::{
    Load, Stats, Table, micros, ratio, sample, sample_side_by_side, throughput_side_by_side,
};

/// The guest's own mapping code, compiled natively. Its unit tests are the guest's to run.
#[path = "../../../guest-examples/contact-mapper/src/mapping.rs"]
#[allow(unused_imports)]
mod mapping;

const HOST: &str = "vault.allowed.test";
/// Where the stand-in upstream listens.
const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
/// Concurrent tasks for the throughput rows.
const CONCURRENCY: [usize; 5] = [1, 2, 4, 8, 64];

/// How much to measure.
struct Plan {
    full: bool,
    /// Timed calls per latency row.
    samples: usize,
    /// How long each throughput row runs.
    window: Duration,
    /// Cold starts per row.
    starts: usize,
    /// Invocations parked at once for the memory row.
    parked: usize,
}

impl Plan {
    fn from_args() -> Self {
        if std::env::args().any(|a| a == "--bench") {
            Self {
                full: true,
                samples: 5_000,
                window: Duration::from_secs(3),
                starts: 10,
                parked: 1_000,
            }
        } else {
            Self {
                full: false,
                samples: 50,
                window: Duration::from_millis(100),
                starts: 1,
                parked: 50,
            }
        }
    }
}

/// The resident set of this process, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Resident bytes of wasmtime's pooled sandboxes: its large anonymous reservations (linear
/// memories, tables, fiber stacks) and the copy-on-write memory images mapped into them. The
/// rest of the resident set is the host's.
fn pooled_rss_bytes() -> u64 {
    const LARGE_KIB: u64 = 128 * 1024;
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let (mut total_kib, mut size_kib) = (0, 0);
    let (mut anonymous, mut image) = (false, false);
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        let kib = |value: Option<&str>| value.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping's header: `start-end perms offset dev inode [path]`.
            let path = line.split_whitespace().nth(5).unwrap_or("");
            anonymous = path.is_empty();
            image = path.contains("wasm-memory-image");
            size_kib = 0;
        } else if first == "Size:" {
            size_kib = kib(words.next());
        } else if first == "Rss:" && (image || (anonymous && size_kib >= LARGE_KIB)) {
            total_kib += kib(words.next());
        }
    }
    total_kib * 1024
}

fn main() {
    let plan = Plan::from_args();
    let examples = common::built_examples();
    let input = common::mapper_file(&examples, "sample-input.json");
    let config_text = common::mapper_file(&examples, "sample-config.json");
    let (current, multi) = common::executors();
    let settings = EngineSettings {
        max_concurrent: 1_100,
        ..EngineSettings::default()
    };
    let data = tempfile::TempDir::new().expect("temp dir");
    let runtime = Arc::new(Runtime::new(data.path(), settings.clone()).expect("runtime"));
    let mapper = Arc::new(
        runtime
            .load(&examples.join("contact-mapper"))
            .expect("loads"),
    );
    let config = Arc::new(mapper.validate_config(Some(&config_text)).expect("config"));
    let wasm = examples.join("target/wasm32-wasip2/release/contact_mapper.wasm");
    let bare = Arc::new(common::bare::Bare::new(
        &runtime,
        &wasm,
        *mapper.limits(),
        &config_text,
    ));
    let mut table = Table::default();

    // 1, 2, 4: one invocation at a time, Airlock, bare wasmtime and Extism side by side.
    let mut invoke = || {
        let ran = current.block_on(runtime.invoke(&mapper, &config, "map-contact", &input));
        assert!(ran.result.is_ok());
    };
    let mut bare_call = || current.block_on(bare.call("map-contact", &input));
    let (airlock, floor, extism) =
        invocation_latencies(&plan, &config_text, &input, &mut invoke, &mut bare_call);
    let native_config: mapping::Config = serde_json::from_str(&config_text).expect("config");
    let native = sample(plan.samples * 10, || {
        let crm: mapping::CrmContact = serde_json::from_str(&input).expect("input");
        let contact = mapping::map(crm, &native_config).expect("maps");
        std::hint::black_box(serde_json::to_string(&contact).expect("output"));
    });
    let audited = audited_latency(&plan, &examples, &input, &config_text, &current);
    table.latency(
        "bare wasmtime: `InstancePre` + fresh `Store` + call (same engine, pooling)",
        floor,
        floor,
    );
    table.latency(
        "Airlock `Runtime::invoke`: validation, policy, fresh store, limits, call, output checks",
        airlock,
        floor,
    );
    table.latency(
        "Airlock with the audit trail: the record flushed (fsync) before the result returns",
        audited,
        floor,
    );
    table.latency(
        "native Rust: the same mapping, JSON in and out",
        native,
        floor,
    );
    match extism {
        Some((fresh, warm)) => {
            table.latency(
                "Extism 1.30, a fresh plugin from a compiled one per call (its per-call isolation)",
                fresh,
                floor,
            );
            table.latency(
                "Extism 1.30, warm call on one reused plugin (no isolation between calls)",
                warm,
                floor,
            );
        }
        None => table.row(
            "Extism",
            "not measured".into(),
            "build with --features extism-baseline",
        ),
    }

    // 5: throughput with N concurrent tasks on 2 worker threads, side by side.
    let unaudited = MapContact {
        runtime: runtime.clone(),
        mapper: mapper.clone(),
        config: config.clone(),
        input: input.as_str().into(),
        audited: false,
    };
    let mut at64 = (0.0, 0.0);
    let mut curves = (Vec::new(), Vec::new());
    for tasks in CONCURRENCY {
        let floor = BareMapContact {
            bare: bare.clone(),
            input: input.as_str().into(),
        };
        let (airlock, floor) =
            throughput_side_by_side(&multi, tasks, plan.window, unaudited.clone(), floor);
        table.rate(
            &format!("throughput, Airlock, {tasks} concurrent task(s) on 2 threads"),
            airlock,
            floor,
            "bare wasmtime",
        );
        if tasks == 64 {
            at64 = (airlock, floor);
        }
        curves.0.push(airlock);
        curves.1.push(floor);
    }
    let (audited64, unaudited64) =
        audited_throughput(&plan, &examples, &config_text, unaudited, &multi);
    table.rate(
        "throughput with the audit trail, 64 concurrent tasks (each record durable before its result; group commit)",
        audited64,
        unaudited64,
        "Airlock unaudited",
    );

    // 5b: how the per-invocation cost grows with input size, against native serde_json.
    let sizes = input_sizes(
        &plan,
        &examples,
        &runtime,
        &mapper,
        &config,
        &native_config,
        &current,
    );
    for size in &sizes {
        table.row(
            &format!(
                "`map-contacts`, {} input ({} contacts): Airlock, one at a time",
                size.label, size.contacts
            ),
            micros(size.airlock.median),
            &format!(
                "native serde_json {} — {:.2}×",
                micros(size.native.median),
                ratio(size.airlock.median, size.native.median)
            ),
        );
    }
    if let Some(path) = std::env::var_os("AIRLOCK_BENCH_PLOT") {
        let plot = scaling_plot(&curves, &sizes);
        std::fs::write(&path, plot).expect("plot written");
        eprintln!("scaling plot written to {}", Path::new(&path).display());
    }

    // 6: cold start of a signed bundle, and where the warm one's time goes.
    let starts = cold_start(&plan, &examples, &settings, &input, &config_text, &current);
    table.row(
        "cold start, empty compiled cache: verify + compile + pre-instantiate + first call",
        micros(starts.cold.median),
        "",
    );
    table.row(
        "cold start, warm cache: verify + deserialize + pre-instantiate + first call",
        micros(starts.warm.median),
        "",
    );
    for (what, stats) in &starts.phases {
        table.row(&format!("… {what}"), micros(stats.median), "timed apart");
    }

    // 7: one brokered HTTPS GET against native reqwest.
    let (brokered, reqwest_fresh, reqwest_pooled) = https_get(&plan, &examples, &multi);
    table.latency(
        "reqwest, new connection per request (the fair baseline)",
        reqwest_fresh,
        reqwest_fresh,
    );
    table.latency(
        "Airlock brokered GET: fresh sandbox, policy, pinned address, pooled keep-alive connection, injection, redaction",
        brokered,
        reqwest_fresh,
    );
    table.latency(
        "reqwest, pooled keep-alive connection",
        reqwest_pooled,
        reqwest_fresh,
    );

    // 8: memory of invocations parked in a host call.
    let parked = parked_memory(&plan, &examples, &multi);
    table.row(
        &format!(
            "resident memory per invocation parked in a host call ({} at once)",
            plan.parked
        ),
        format!("{:.0} KiB", parked.total / 1024.0),
        &format!(
            "the guest's linear memory is {:.0} KiB in size, resident only where touched",
            parked.guest_memory / 1024.0
        ),
    );
    table.row(
        "… of which in its pooled sandbox (touched linear memory, tables, fiber stack)",
        format!("{:.0} KiB", parked.pooled / 1024.0),
        "/proc/self/smaps: the pool's reservations and memory images",
    );
    table.row(
        "… of which the host's own (store, WASI and HTTP state, TLS client, task)",
        format!(
            "{:.0} KiB",
            (parked.total - parked.pooled).max(0.0) / 1024.0
        ),
        "target ≤ 64 KiB",
    );

    println!(
        "\n## Airlock comparison ({} mode)\n",
        if plan.full { "full" } else { "quick" }
    );
    table.print();
    let extism_ratio = extism.map_or("n/a".to_string(), |(fresh, _)| {
        format!("{:.2}", ratio(airlock.median, fresh.median))
    });
    println!(
        "\nratios: airlock/wasmtime={:.2} airlock/extism_fresh={extism_ratio} airlock/native={:.2} \
         brokered/reqwest={:.2} brokered/reqwest_pooled={:.2} warm_start_ms={:.3} \
         throughput64/wasmtime64={:.2} audited64/unaudited64={:.2}",
        ratio(airlock.median, floor.median),
        ratio(airlock.median, native.median),
        ratio(brokered.median, reqwest_fresh.median),
        ratio(brokered.median, reqwest_pooled.median),
        starts.warm.median.as_secs_f64() * 1e3,
        at64.0 / at64.1,
        audited64 / unaudited64,
    );
}

/// Airlock's and bare wasmtime's invocation, and Extism's fresh-plugin and warm calls of the same
/// mapping, sampled side by side; returns Airlock's, bare wasmtime's and Extism's figures.
#[cfg(feature = "extism-baseline")]
fn invocation_latencies(
    plan: &Plan,
    config_text: &str,
    input: &str,
    airlock: &mut dyn FnMut(),
    floor: &mut dyn FnMut(),
) -> (Stats, Stats, Option<(Stats, Stats)>) {
    use extism::{CompiledPlugin, Manifest, Plugin, PluginBuilder, Wasm};
    let wasm = std::fs::read(common::built_extism_guest()).expect("extism plugin");
    let manifest = Manifest::new([Wasm::data(wasm)]).with_config_key("config", config_text);
    let compiled =
        CompiledPlugin::new(PluginBuilder::new(manifest).with_wasi(false)).expect("compiles");
    let call = |plugin: &mut Plugin| {
        let output: String = plugin.call("map_contact", input).expect("maps");
        assert!(output.contains("ada@example.com"));
    };
    let mut reused = Plugin::new_from_compiled(&compiled).expect("plugin");
    let stats = sample_side_by_side(
        plan.samples,
        &mut [
            airlock,
            floor,
            &mut || call(&mut Plugin::new_from_compiled(&compiled).expect("plugin")),
            &mut || call(&mut reused),
        ],
    );
    (stats[0], stats[1], Some((stats[2], stats[3])))
}

/// Without the `extism-baseline` feature there is no Extism to compare with.
#[cfg(not(feature = "extism-baseline"))]
fn invocation_latencies(
    plan: &Plan,
    _: &str,
    _: &str,
    airlock: &mut dyn FnMut(),
    floor: &mut dyn FnMut(),
) -> (Stats, Stats, Option<(Stats, Stats)>) {
    let stats = sample_side_by_side(plan.samples, &mut [airlock, floor]);
    (stats[0], stats[1], None)
}

/// `map-contact` through Airlock's full path, as the throughput rows drive it.
#[derive(Clone)]
struct MapContact {
    runtime: Arc<Runtime>,
    mapper: Arc<airlock_runtime::Integration>,
    config: Arc<airlock_runtime::ValidatedConfig>,
    input: Arc<str>,
    /// Whether the runtime keeps an audit trail, so each invocation must bring its record.
    audited: bool,
}

impl Load for MapContact {
    async fn call(&self) {
        let ran = self
            .runtime
            .invoke(&self.mapper, &self.config, "map-contact", &self.input)
            .await;
        assert!(ran.result.is_ok());
        assert_eq!(ran.record.is_some(), self.audited);
    }
}

/// `map-contact` on bare wasmtime, as the throughput rows drive it.
struct BareMapContact {
    bare: Arc<common::bare::Bare>,
    input: Arc<str>,
}

impl Load for BareMapContact {
    async fn call(&self) {
        self.bare.call("map-contact", &self.input).await
    }
}

/// `contact-mapper` on a runtime with a durable audit trail in temp dirs of its own.
struct Audited {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    runtime: Arc<Runtime>,
    mapper: Arc<airlock_runtime::Integration>,
    config: Arc<airlock_runtime::ValidatedConfig>,
}

impl Audited {
    fn new(examples: &Path, config_text: &str) -> Self {
        let data = tempfile::TempDir::new().expect("temp dir");
        let audit_home = tempfile::TempDir::new().expect("temp dir");
        let runtime = Arc::new(common::audited_runtime(data.path(), audit_home.path()));
        let mapper = runtime
            .load(&examples.join("contact-mapper"))
            .expect("loads");
        let config = mapper.validate_config(Some(config_text)).expect("config");
        Self {
            _dirs: (data, audit_home),
            runtime,
            mapper: Arc::new(mapper),
            config: Arc::new(config),
        }
    }
}

/// The full path with a durable audit trail (one fsync per sequential invocation).
fn audited_latency(
    plan: &Plan,
    examples: &Path,
    input: &str,
    config_text: &str,
    rt: &tokio::runtime::Runtime,
) -> Stats {
    let audited = Audited::new(examples, config_text);
    sample(plan.samples.min(1_000), || {
        let ran = rt.block_on(audited.runtime.invoke(
            &audited.mapper,
            &audited.config,
            "map-contact",
            input,
        ));
        assert!(ran.record.is_some());
    })
}

/// One input size of the scaling rows: `map-contacts` on a page of the sample contact.
struct InputSize {
    label: &'static str,
    contacts: usize,
    airlock: Stats,
    native: Stats,
}

/// `map-contacts` through Airlock and natively, on pages of about 1 KB, 100 KB and 1 MB.
fn input_sizes(
    plan: &Plan,
    examples: &Path,
    runtime: &Runtime,
    mapper: &airlock_runtime::Integration,
    config: &airlock_runtime::ValidatedConfig,
    native_config: &mapping::Config,
    rt: &tokio::runtime::Runtime,
) -> Vec<InputSize> {
    let one: serde_json::Value =
        serde_json::from_str(&common::mapper_file(examples, "sample-input.json"))
            .expect("sample contact");
    [
        ("1 KB", 1_000usize),
        ("100 KB", 100_000),
        ("1 MB", 1_000_000),
    ]
    .into_iter()
    .map(|(label, bytes)| {
        let each = one.to_string().len() + 1;
        let contacts: Vec<serde_json::Value> = (0..bytes.div_ceil(each))
            .map(|i| {
                let mut contact = one.clone();
                contact["Id"] = format!("c{i}").into();
                contact
            })
            .collect();
        let page = serde_json::json!({ "contacts": contacts }).to_string();
        // Fewer samples for the larger pages: each takes milliseconds.
        let n = (plan.samples * 1_000 / bytes).clamp(5, plan.samples);
        let airlock = sample(n, || {
            let ran = rt.block_on(runtime.invoke(mapper, config, "map-contacts", &page));
            assert!(ran.result.is_ok(), "{:?}", ran.result.err());
        });
        let native = sample(n, || {
            let crm: mapping::CrmPage = serde_json::from_str(&page).expect("page");
            let mapped = mapping::map_page(crm, native_config);
            std::hint::black_box(serde_json::to_string(&mapped).expect("output"));
        });
        InputSize {
            label,
            contacts: contacts.len(),
            airlock,
            native,
        }
    })
    .collect()
}

/// The scaling figure: throughput by concurrent tasks, and cost by input size.
fn scaling_plot(curves: &(Vec<f64>, Vec<f64>), sizes: &[InputSize]) -> String {
    use common::plot::{Chart, svg};
    let throughput = Chart {
        title: "Invocations per second, 2 threads",
        x_label: "concurrent tasks",
        x: CONCURRENCY.iter().map(|n| n.to_string()).collect(),
        y_label: "invocations/s",
        log_y: false,
        series: vec![
            ("Airlock", curves.0.clone()),
            ("bare wasmtime", curves.1.clone()),
        ],
    };
    let micros = |stats: &Stats| stats.median.as_secs_f64() * 1e6;
    let cost = Chart {
        title: "One invocation by input size (map-contacts)",
        x_label: "input",
        x: sizes.iter().map(|s| s.label.to_string()).collect(),
        y_label: "µs (log)",
        log_y: true,
        series: vec![
            (
                "Airlock",
                sizes.iter().map(|s| micros(&s.airlock)).collect(),
            ),
            (
                "native serde_json",
                sizes.iter().map(|s| micros(&s.native)).collect(),
            ),
        ],
    };
    svg(&[throughput, cost])
}

/// Invocations per second with the durable audit trail, 64 concurrent tasks on 2 threads, side
/// by side with `unaudited`: each result waits for its record, and concurrent records share a
/// flush. Returns the audited rate and the unaudited one.
fn audited_throughput(
    plan: &Plan,
    examples: &Path,
    config_text: &str,
    unaudited: MapContact,
    rt: &tokio::runtime::Runtime,
) -> (f64, f64) {
    let audited = Audited::new(examples, config_text);
    let load = MapContact {
        runtime: audited.runtime.clone(),
        mapper: audited.mapper.clone(),
        config: audited.config.clone(),
        input: unaudited.input.clone(),
        audited: true,
    };
    throughput_side_by_side(rt, 64, plan.window, load, unaudited)
}

/// Cold starts: with an empty compiled cache, with a warm one, and the warm one's phases
/// timed apart (each on its own; they add up to about the whole).
struct ColdStarts {
    cold: Stats,
    warm: Stats,
    phases: Vec<(&'static str, Stats)>,
}

/// An installed bundle's first invocation on a running runtime, loaded as a starting host loads
/// it (schemas compiled on first use): with an empty compiled cache, and again with the cache
/// the first load filled.
fn cold_start(
    plan: &Plan,
    examples: &Path,
    settings: &EngineSettings,
    input: &str,
    config_text: &str,
    rt: &tokio::runtime::Runtime,
) -> ColdStarts {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let public = PublicKey::from_verifying_key(key.verifying_key());
    let manifest = LoadedManifest::load(&examples.join("contact-mapper")).expect("manifest");
    let signed = bundle::sign_dir(&manifest, &key).expect("signs");
    let origin = examples.join("contact-mapper.airlock");
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut phases: [(&'static str, Vec<Duration>); 4] = [
        (
            "of which: verify the bundle (archive, SHA-256 of each entry, Ed25519)",
            Vec::new(),
        ),
        (
            "of which: read, open (AES-256-GCM) and deserialize the cached artifact",
            Vec::new(),
        ),
        (
            "of which: the rest of loading (manifest, schemas parsed, imports, pre-instantiate)",
            Vec::new(),
        ),
        (
            "of which: config validation, the action's schemas compiled, the first call",
            Vec::new(),
        ),
    ];
    for _ in 0..plan.starts {
        let data = tempfile::TempDir::new().expect("temp dir");
        let mut trust = TrustStore::default();
        trust
            .add(&public, &manifest.manifest.publisher.name, 0)
            .expect("trusted");
        // One runtime, as on a running host: the first load compiles, the second finds the
        // artifact the first cached (the runtime keeps no loaded component in memory).
        let runtime = Runtime::new(data.path(), settings.clone()).expect("runtime");
        for times in [&mut cold, &mut warm] {
            let start = Instant::now();
            let mapper = bundle::load_installed(&runtime, &origin, &signed.bytes, &trust)
                .expect("verified and loaded");
            let loaded = start.elapsed();
            let config = mapper.validate_config(Some(config_text)).expect("config");
            let ran = rt.block_on(runtime.invoke(&mapper, &config, "map-contact", input));
            let total = start.elapsed();
            times.push(total);
            assert!(ran.result.is_ok());
            phases[3].1.push(total - loaded);
        }
        // The warm start's phases, each timed on its own with the same runtime and cache.
        let start = Instant::now();
        let verified = bundle::verify_trusted(&origin, &signed.bytes, &trust).expect("verified");
        phases[0].1.push(start.elapsed());
        let wasm = &verified.files["component.wasm"];
        // The digest comes from the verified statement: the load hashes nothing again.
        let digest = Digest::from_bytes(verified.digests["component.wasm"]);
        let cache = CompileCache::open(data.path(), runtime.engine()).expect("cache");
        let start = Instant::now();
        let (_, outcome) = cache
            .load_or_compile(runtime.engine(), &digest, wasm)
            .expect("deserialized");
        phases[1].1.push(start.elapsed());
        assert_eq!(outcome, CacheOutcome::Hit);
    }
    let warm_stats = Stats::of(warm.clone());
    let others: Duration = phases[..2]
        .iter()
        .map(|(_, times)| Stats::of(times.clone()).median)
        .sum::<Duration>()
        + Stats::of(phases[3].1.clone()).median;
    let rest = warm_stats.median.saturating_sub(others);
    phases[2].1.push(rest);
    ColdStarts {
        cold: Stats::of(cold),
        warm: warm_stats,
        phases: phases
            .into_iter()
            .map(|(what, times)| (what, Stats::of(times)))
            .collect(),
    }
}

/// One GET through the `exfil` guest's `fetch`, and the same GET from reqwest with a new
/// connection each time, to a TLS server on loopback.
/// Returns the brokered GET, reqwest with a new connection, and reqwest with a pooled one.
fn https_get(plan: &Plan, examples: &Path, rt: &tokio::runtime::Runtime) -> (Stats, Stats, Stats) {
    let ca = TestCa::new().expect("CA");
    let api = Upstream::start_http(&ca, &[HOST], LOOPBACK, |_| {
        http::Response::builder()
            .header("content-type", "application/json")
            .body(Bytes::from_static(br#"{"items":[1,2,3]}"#))
            .unwrap_or_default()
    })
    .expect("loopback server");
    let data = tempfile::TempDir::new().expect("temp dir");
    let runtime = pinned_runtime(data.path(), api.addr(), &ca, 256);
    let exfil = runtime.load(&examples.join("exfil")).expect("loads");
    let config = exfil.validate_config(None).expect("config");
    let caller = runtime.local_caller(bench_token(&runtime));
    let url = format!("https://{HOST}/items");
    let input = serde_json::json!({ "url": url }).to_string();
    let client = |pooled: bool| {
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_der(&ca.cert_der()).expect("ca"))
            .resolve(HOST, api.addr())
            .no_proxy()
            .http1_only();
        let builder = if pooled {
            builder
        } else {
            builder.pool_max_idle_per_host(0)
        };
        builder.build().expect("reqwest client")
    };
    let n = plan.samples.min(2_000);
    let brokered = sample(n, || {
        let ran = rt.block_on(runtime.invoke_as(&exfil, &config, &caller, "fetch", &input));
        let report = ran.result.expect("fetch reports").to_value();
        assert_eq!(report["attempts"][0]["outcome"], "ok 200");
    });
    let get = |client: &reqwest::Client| {
        rt.block_on(async {
            let response = client
                .get(&url)
                .bearer_auth("bench-token-0123456789")
                .send()
                .await;
            let body = response.expect("send").bytes().await.expect("body");
            assert_eq!(body.len(), 17);
        })
    };
    let (fresh, pooled) = (client(false), client(true));
    let native = sample(n, || get(&fresh));
    let kept_alive = sample(n, || get(&pooled));
    (brokered, native, kept_alive)
}

/// The credential broker of a local run holding the `exfil` guest's bearer token.
fn bench_token(runtime: &Runtime) -> Arc<dyn airlock_host_api::credentials::CredentialBroker> {
    let secret =
        Secret::new(CredentialType::Bearer, "bench-token-0123456789".into()).expect("secret");
    runtime.credentials(
        CredentialScope::local(),
        Arc::new(StaticSecrets::new([("token".to_string(), secret)].into())),
    )
}

/// A runtime whose egress to [`HOST`] goes to `addr`, trusting `ca`.
fn pinned_runtime(data: &Path, addr: SocketAddr, ca: &TestCa, sandboxes: u32) -> Runtime {
    let settings = EngineSettings {
        egress: EgressOptions {
            resolve: vec![format!("{HOST}={addr}").parse().expect("pin")],
            allow_private: "127.0.0.0/8".parse().expect("cidr"),
            extra_roots: vec![ca.write_pem(data).expect("ca")],
            ..EgressOptions::default()
        },
        max_concurrent: sandboxes,
        ..EngineSettings::default()
    };
    Runtime::new(data, settings).expect("runtime")
}

/// Resident memory per invocation while `plan.parked` of them wait in a host call (a TLS
/// handshake with a server that accepts and never answers), and the guest's linear memory.
fn parked_memory(plan: &Plan, examples: &Path, rt: &tokio::runtime::Runtime) -> Parked {
    // Only the CA is needed: the handshake never completes.
    let ca = TestCa::new().expect("CA");
    // Accepts connections and holds them open, silent: each guest waits in its `fetch`.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let holder = held.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            holder.lock().expect("held").push(stream);
        }
    });
    let data = tempfile::TempDir::new().expect("temp dir");
    let sandboxes = u32::try_from(plan.parked + 64).expect("small");
    let runtime = Arc::new(pinned_runtime(data.path(), silent_addr, &ca, sandboxes));
    let exfil = Arc::new(runtime.load(&examples.join("exfil")).expect("loads"));
    let config = Arc::new(exfil.validate_config(None).expect("config"));
    let input = serde_json::json!({ "url": format!("https://{HOST}/slow") }).to_string();
    let caller = || runtime.local_caller(bench_token(&runtime));
    let (base, pooled_base) = (rss_bytes(), pooled_rss_bytes());
    let mut parked = tokio::task::JoinSet::new();
    for _ in 0..plan.parked {
        let (r, e, c, i) = (
            runtime.clone(),
            exfil.clone(),
            config.clone(),
            input.clone(),
        );
        let caller = caller();
        parked.spawn_on(
            async move { r.invoke_as(&e, &c, &caller, "fetch", &i).await.memory_peak },
            rt.handle(),
        );
    }
    let waited = Instant::now();
    while held.lock().expect("held").len() < plan.parked
        && waited.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (during, pooled_during) = (rss_bytes(), pooled_rss_bytes());
    eprintln!(
        "parked: {} connections held, {} invocations running, RSS {} → {} KiB, of which in \
         the sandbox pool {} → {} KiB",
        held.lock().expect("held").len(),
        parked.len(),
        base / 1024,
        during / 1024,
        pooled_base / 1024,
        pooled_during / 1024
    );
    // Close the held connections: every parked fetch fails at once and its invocation ends.
    held.lock().expect("held").clear();
    let peaks: Vec<u64> = rt.block_on(async {
        let mut peaks = Vec::new();
        while let Some(peak) = parked.join_next().await {
            peaks.push(peak.expect("joined"));
        }
        peaks
    });
    let n = plan.parked as f64;
    Parked {
        total: during.saturating_sub(base) as f64 / n,
        pooled: pooled_during.saturating_sub(pooled_base) as f64 / n,
        guest_memory: peaks.iter().sum::<u64>() as f64 / peaks.len().max(1) as f64,
    }
}

/// Resident memory per parked invocation: in all, in its pooled sandbox, and the size of its
/// linear memory.
struct Parked {
    total: f64,
    pooled: f64,
    guest_memory: f64,
}
