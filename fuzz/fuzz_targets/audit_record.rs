//! Audit records read back from the store: a damaged or forged line is refused, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let _ = airlock_audit::record::open(line);
});
