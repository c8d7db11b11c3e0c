//! Grants (TOML from the CLI, JSON through the API, converted): refused or parsed, no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = airlock_policy::grant::Grant::parse(text);
});
