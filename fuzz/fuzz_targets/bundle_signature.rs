//! A bundle's signature file: strict parse, and what parses writes back as the same bytes
//! (the canonical form is the only one accepted).
#![no_main]

use airlock_bundle::SignatureFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok((file, _)) = SignatureFile::parse(bytes) {
        assert_eq!(file.to_bytes().expect("serializes"), bytes);
    }
});
