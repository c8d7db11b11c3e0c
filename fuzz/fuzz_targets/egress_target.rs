//! The egress URL canonicaliser: a URL it accepts reads back, in canonical form, as the same
//! target (canonicalisation is idempotent: what the policy judged is what is dialed).
#![no_main]

use airlock_policy::egress::RequestTarget;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|url: &str| {
    if let Ok(target) = RequestTarget::parse(url) {
        let again = RequestTarget::parse(&target.to_uri_string()).expect("a canonical URL parses");
        assert_eq!(again.host(), target.host());
        assert_eq!(again.port(), target.port());
        assert_eq!(again.path_and_query(), target.path_and_query());
    }
});
