//! What it checks: `airlock_fuzz_checks::policy::grant`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_fuzz_checks::policy::grant(data));
