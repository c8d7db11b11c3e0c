//! Tenant, installation and user ids from paths, bodies and keys: parsed or refused; what
//! parses is what was given.
#![no_main]

use airlock_runtime::ids::{InstallationId, TenantId, UserId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(id) = text.parse::<TenantId>() {
        assert_eq!(id.as_str(), text);
    }
    if let Ok(id) = text.parse::<InstallationId>() {
        assert_eq!(id.as_str(), text);
    }
    let _ = text.parse::<UserId>();
});
