//! Strict JSON parsing of inputs and outputs: nothing panics, and what parses has no
//! duplicate keys (a parse of its own serialization gives the same value).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(value) = airlock_runtime::json::parse_strict(text, 1 << 20) {
        let again = airlock_runtime::json::parse_strict(&value.to_string(), 1 << 21)
            .expect("its own serialization parses");
        assert_eq!(again, value);
    }
});
