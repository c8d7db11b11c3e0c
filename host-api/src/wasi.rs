//! WASI p2 linked deny-by-default, interface by interface, and the import check that names
//! anything a component asks for outside the world.
//!
//! Rust std guests import clocks, random, cli and filesystem whether they use them or not, so
//! those are linked with nothing behind them: empty environment and arguments, stdio captured
//! into the guest log, and a filesystem whose one preopen is the invocation's scratch
//! directory, for an integration that declares one ([`crate::scratch`]). Sockets and name lookup are never
//! linked, so a component that imports them fails to load instead of failing at first use.

use wasmtime::component::{HasData, Linker};
use wasmtime_wasi::cli::WasiCliView;
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};

use crate::random::RandomCtx;
use crate::scratch::ScratchFilesystem;
use crate::state::HostState;

/// `wasi:random` through [`RandomCtx`], which charges what it hands out to the host budget.
struct BudgetedRandom;
impl HasData for BudgetedRandom {
    type Data<'a> = RandomCtx<'a>;
}

/// The WASI interfaces linked for guests (all at any `0.2.x` version).
pub const LINKED_WASI: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// The airlock interfaces a guest may import (at any `0.1.x` version).
pub const LINKED_AIRLOCK: &[&str] = &[
    "airlock:integration/types",
    "airlock:integration/log",
    "airlock:integration/config",
    "airlock:integration/kv",
];

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    type T = HostState;
    let l = linker;
    wasmtime_wasi_io::add_to_linker_async(l)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, BudgetedRandom>(l, T::random)?;
    random::insecure::add_to_linker::<T, BudgetedRandom>(l, T::random)?;
    random::insecure_seed::add_to_linker::<T, BudgetedRandom>(l, T::random)?;
    cli::exit::add_to_linker::<T, wasmtime_wasi::cli::WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, wasmtime_wasi::cli::WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, wasmtime_wasi::cli::WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, wasmtime_wasi::cli::WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, wasmtime_wasi::cli::WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, wasmtime_wasi::cli::WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, wasmtime_wasi::cli::WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, wasmtime_wasi::cli::WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, wasmtime_wasi::cli::WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, wasmtime_wasi::cli::WasiCli>(l, T::cli)?;
    filesystem::types::add_to_linker::<T, ScratchFilesystem>(l, T::scratch_fs)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    Ok(())
}

/// A component import the host does not provide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnlinkedImport {
    #[error(
        "the component imports `{0}`, but sockets and name lookup are never linked: \
         integrations reach the network only through the host's brokered HTTP"
    )]
    Network(String),
    #[error(
        "the component imports `{name}`, but only version {supported} of that package is linked"
    )]
    Version {
        name: String,
        supported: &'static str,
    },
    #[error("the component imports `{0}`, which is not part of the airlock:integration world")]
    Unknown(String),
}

/// Checks one import name (`namespace:package/interface@version`) against what is linked.
///
/// Run before instantiation so the error names the import instead of a linker internal.
pub fn check_import(name: &str) -> Result<(), UnlinkedImport> {
    let (path, version) = name.split_once('@').unwrap_or((name, ""));
    if path.starts_with("wasi:sockets/") {
        return Err(UnlinkedImport::Network(name.to_string()));
    }
    let (linked, supported) = if path.starts_with("wasi:") {
        (LINKED_WASI, "0.2")
    } else {
        (LINKED_AIRLOCK, "0.1")
    };
    if !linked.contains(&path) {
        return Err(UnlinkedImport::Unknown(name.to_string()));
    }
    let compatible = version
        .strip_prefix(supported)
        .is_some_and(|rest| rest.starts_with('.'));
    if !compatible {
        return Err(UnlinkedImport::Version {
            name: name.to_string(),
            supported: if supported == "0.2" { "0.2.x" } else { "0.1.x" },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_checked_by_interface_and_version() {
        let cases: &[(&str, Result<(), &str>)] = &[
            ("wasi:cli/environment@0.2.0", Ok(())),
            ("wasi:io/streams@0.2.6", Ok(())),
            ("wasi:filesystem/preopens@0.2.3", Ok(())),
            ("airlock:integration/log@0.1.0", Ok(())),
            ("wasi:sockets/tcp@0.2.0", Err("never linked")),
            ("wasi:sockets/ip-name-lookup@0.2.0", Err("never linked")),
            ("wasi:http/outgoing-handler@0.2.0", Ok(())),
            ("wasi:http/incoming-handler@0.2.0", Err("not part of")),
            ("wasi:cli/environment@0.3.0", Err("only version 0.2.x")),
            ("wasi:cli/environment@0.20.0", Err("only version 0.2.x")),
            ("wasi:cli/environment", Err("only version 0.2.x")),
            ("airlock:integration/log@1.0.0", Err("only version 0.1.x")),
            ("evil:pkg/iface@0.1.0", Err("not part of")),
            ("airlock:integration/kv@0.1.0", Ok(())),
            ("airlock:integration/kv-admin@0.1.0", Err("not part of")),
        ];
        for (name, expected) in cases {
            let got = check_import(name).map_err(|e| e.to_string());
            match (expected, &got) {
                (Ok(()), Ok(())) => {}
                (Err(fragment), Err(message)) => {
                    assert!(message.contains(fragment), "{name}: {message}");
                    assert!(message.contains(name), "{name}: error must name the import");
                }
                _ => panic!("{name}: expected {expected:?}, got {got:?}"),
            }
        }
    }
}
