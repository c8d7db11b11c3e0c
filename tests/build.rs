//! Builds the guest examples (`../guest-examples`, a workspace of its own) for `wasm32-wasip2`,
//! so the end-to-end tests run real components, and tells the tests where their manifests are
//! through `AIRLOCK_GUEST_EXAMPLES`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The same code `airlock build` and `airlock demo` use, so guests build one way everywhere.
#[path = "../runtime/devkit/src/toolchain.rs"]
mod toolchain;

fn main() {
    let tests_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = tests_dir
        .parent()
        .expect("tests/ sits inside the repository root");
    let guests = root.join("guest-examples");

    rerun_if_changed(root, &guests);
    build_guests(&guests);
    println!(
        "cargo:rustc-env=AIRLOCK_GUEST_EXAMPLES={}",
        guests.display()
    );
}

/// Reruns this script when the WIT contract or any guest's sources or manifests change. Cargo
/// scans the listed directories recursively.
fn rerun_if_changed(root: &Path, guests: &Path) {
    let mut paths = vec![
        root.join("wit"),
        guests.join("Cargo.toml"),
        guests.join("Cargo.lock"),
    ];
    let mut crates: Vec<PathBuf> = guests
        .read_dir()
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", guests.display()))
        .map(|entry| entry.expect("guest-examples entry").path())
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .collect();
    crates.sort();
    for dir in crates {
        paths.extend([dir.join("src"), dir.join("Cargo.toml")]);
    }
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Builds the whole guest workspace in release mode, as the manifests' `[integration.build]` do.
fn build_guests(guests: &Path) {
    if let Err(e) = toolchain::ensure_wasm_target(guests) {
        panic!("cannot install the {} target: {e}", toolchain::WASM_TARGET);
    }
    run(
        &mut toolchain::guest_build(guests),
        "building guest-examples",
    );
}

/// Runs `command`, failing the build with its stderr if it fails.
fn run(command: &mut Command, what: &str) {
    // Not `{command:?}`: that lists every removed variable.
    let shown = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run `{shown}`: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}): `{shown}`\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
