//! What it checks: `airlock_fuzz_checks::runtime::ids`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_fuzz_checks::runtime::ids(data));
