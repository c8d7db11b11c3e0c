//! The `airlock` CLI, built by this package so that `cargo test` builds it with the libraries
//! it already built and hands its path to the end-to-end tests (`CARGO_BIN_EXE_…`): no nested
//! cargo, no second copy of the workspace.

fn main() -> std::process::ExitCode {
    airlock::main()
}
