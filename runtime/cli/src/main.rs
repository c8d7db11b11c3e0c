//! The `airlock` binary: the command line lives in the library (`airlock::main`), so the
//! end-to-end tests can run the same code under their own binary.

fn main() -> std::process::ExitCode {
    airlock::main()
}
