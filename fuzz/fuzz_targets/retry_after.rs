//! What it checks: `airlock_fuzz_checks::host::retry_after`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_fuzz_checks::host::retry_after(data));
