//! What it checks: `airlock_fuzz_checks::host::body_decoding`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_fuzz_checks::host::body_decoding(data));
