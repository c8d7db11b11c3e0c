//! Names what `airlock --version` reports besides the crate version: the commit it was built
//! from (`unknown` outside a git checkout) and the wasmtime version it links, the exact pin in
//! the workspace's `Cargo.toml`, so an operator can tell exactly which runtime serves them.

use std::path::Path;
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|hash| hash.trim().to_string())
        .filter(|hash| !hash.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    let wasmtime = pinned_version(&manifest, "wasmtime").unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=AIRLOCK_COMMIT={commit}");
    println!("cargo:rustc-env=AIRLOCK_WASMTIME={wasmtime}");
    // A new commit or checkout changes HEAD or the branch it names.
    let git = root.join(".git");
    println!("cargo:rerun-if-changed={}", git.join("HEAD").display());
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
        && let Some(branch) = head.trim().strip_prefix("ref: ")
    {
        println!("cargo:rerun-if-changed={}", git.join(branch).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );
}

/// The exact version (`=X.Y.Z`) `[workspace.dependencies]` pins the package `name` to.
fn pinned_version(manifest: &str, name: &str) -> Option<String> {
    let line = manifest
        .lines()
        .find(|line| line.starts_with(&format!("{name} = ")))?;
    let pin = line.split("version = \"=").nth(1)?;
    Some(pin.split('"').next()?.to_string())
}
