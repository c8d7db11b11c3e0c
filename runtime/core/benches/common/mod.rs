//! Shared by the benchmarks: the example guests, built once per run, and the bare-wasmtime
//! floor. Each benchmark uses a part of it.
#![allow(dead_code)]

pub mod bare;
pub mod measure;
pub mod plot;

use std::path::{Path, PathBuf};

use airlock_audit::{AuditDir, AuditTrail};
use airlock_devkit::toolchain;
use airlock_runtime::{EngineSettings, Runtime};
use airlock_store::Store;

/// The guest-examples workspace, with every example built (adding the wasm target if missing).
pub fn built_examples() -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-examples");
    toolchain::ensure_wasm_target(&examples).expect("wasm target");
    let status = toolchain::guest_build(&examples).status().expect("cargo");
    assert!(status.success(), "building the examples failed: {status}");
    examples
}

/// A file of the contact-mapper example.
pub fn mapper_file(examples: &Path, file: &str) -> String {
    std::fs::read_to_string(examples.join("contact-mapper").join(file)).expect("example file")
}

/// The Extism plugin of the comparison harness (`benches/extism-guest`), built for
/// `wasm32-unknown-unknown` (adding the target if missing); returns the `.wasm`.
pub fn built_extism_guest() -> PathBuf {
    const TARGET: &str = "wasm32-unknown-unknown";
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/extism-guest");
    toolchain::ensure_target(&dir, TARGET).expect("wasm target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = toolchain::clean_command(cargo, &dir)
        .args(["build", "--release", "--target", TARGET])
        .status()
        .expect("cargo");
    assert!(
        status.success(),
        "building the Extism plugin failed: {status}"
    );
    dir.join("target")
        .join(TARGET)
        .join("release/extism_mapper.wasm")
}

/// The benchmarks' two executors: one thread (latency rows), and two worker threads (the
/// throughput rows, as on the reference machine's two cores).
pub fn executors() -> (tokio::runtime::Runtime, tokio::runtime::Runtime) {
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    (current, multi)
}

/// A runtime on `data` that records every invocation to an audit trail (its key and
/// checkpoints in `audit_home`), each record flushed before the result returns.
pub fn audited_runtime(data: &Path, audit_home: &Path) -> Runtime {
    let db = Store::open(data, None).expect("store");
    let dir = AuditDir::open(audit_home, data).expect("audit dir");
    let trail = AuditTrail::open(&db, dir).expect("audit trail");
    Runtime::new(data, EngineSettings::default())
        .expect("runtime")
        .with_audit(trail)
}
