//! Shared by the benchmarks: the example guests, built once per run.

use std::path::{Path, PathBuf};

use airlock_runtime::toolchain;

/// The guest-examples workspace, with every example built (adding the wasm target if missing).
pub fn built_examples() -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-examples");
    toolchain::ensure_wasm_target(&examples).expect("wasm target");
    let status = toolchain::guest_build(&examples).status().expect("cargo");
    assert!(status.success(), "building the examples failed: {status}");
    examples
}
