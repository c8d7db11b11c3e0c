//! Building guests: make sure the wasm target is installed and run guest builds cleanly.
//!
//! `rust-toolchain.toml` does not add a missing target to an already-installed toolchain, so
//! (as wasm-pack does) we add `wasm32-wasip2` ourselves when it is missing. Std-only on
//! purpose: the tests' build script includes this file to build the guests the same way.

use std::io;
use std::path::Path;
use std::process::Command;

/// The target every guest is built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Installs the guests' wasm target with rustup if it is missing.
pub fn ensure_wasm_target(dir: &Path) -> io::Result<()> {
    ensure_target(dir, WASM_TARGET)
}

/// Installs `target` with rustup if it is missing. Without rustup, does nothing: the build
/// that follows reports a missing target itself.
pub fn ensure_target(dir: &Path, target: &str) -> io::Result<()> {
    match target_installed(dir, target) {
        Some(false) => {}
        // Installed, or no rustup to ask: the build reports a missing target itself.
        Some(true) | None => return Ok(()),
    }
    eprintln!("airlock: installing the {target} target with rustup (one time)");
    let status = Command::new("rustup")
        .args(["target", "add", target])
        .current_dir(dir)
        .status()?;
    // A concurrent build may have installed it first, which fails our add: check again.
    if !status.success() && target_installed(dir, target) != Some(true) {
        return Err(io::Error::other(format!(
            "`rustup target add {target}` failed ({status})"
        )));
    }
    Ok(())
}

/// Whether rustup lists `target` for the toolchain used in `dir`; `None` without rustup.
fn target_installed(dir: &Path, target: &str) -> Option<bool> {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(dir)
        .output()
        .ok()?;
    Some(
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .any(|t| t.trim() == target),
    )
}

/// `cargo build --release --target wasm32-wasip2` for the guest workspace or crate at `dir`.
pub fn guest_build(dir: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = clean_command(cargo, dir);
    command.args(["build", "--release", "--target", WASM_TARGET]);
    command
}

/// A command run in `dir` without the variables an enclosing cargo sets for its own build
/// (target dir, profile, flags, wrappers), which would otherwise redirect or reconfigure the
/// guest build. The jobserver (`CARGO_MAKEFLAGS`) stays, so nested builds share its limit.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let inherited_build_setting =
            (name.starts_with("CARGO") && name != "CARGO_HOME" && name != "CARGO_MAKEFLAGS")
                || name.starts_with("RUSTC")
                || name.starts_with("RUSTDOC")
                || name == "RUSTFLAGS";
        if inherited_build_setting {
            command.env_remove(name.as_ref());
        }
    }
    command
}
