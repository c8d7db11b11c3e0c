//! What it checks: `airlock_fuzz_checks::policy::webhook_standard`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_fuzz_checks::policy::webhook_standard(data));
