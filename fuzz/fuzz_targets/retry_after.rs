//! An upstream's `Retry-After`: any bytes, any status; at most a day, never a panic.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, Vec<u8>, u32)| {
    let (status, value, now) = input;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(now));
    if let Some(wait) = airlock_host_api::egress::event::retry_after(status, Some(&value), now) {
        assert!(wait <= 24 * 3600);
    }
});
