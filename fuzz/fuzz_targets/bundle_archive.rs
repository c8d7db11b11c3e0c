//! The bundle archive reader: any bytes are read within the limits or refused.
#![no_main]

use airlock_bundle::ArchiveLimits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let limits = ArchiveLimits::default();
    if let Ok(entries) = airlock_bundle::archive::read(bytes, &limits) {
        assert!(entries.len() <= limits.max_entries);
    }
});
