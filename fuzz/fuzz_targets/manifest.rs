//! The manifest (`airlock.toml`): any text parses or is refused with a position, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = airlock_runtime::manifest::LoadedManifest::parse(
        std::path::Path::new("airlock.toml"),
        text,
    );
});
