//! What every fuzz target checks, as a function of the fuzzer's bytes.
//!
//! Each function calls what production calls on untrusted bytes and asserts what must hold
//! for any input; a panic is a finding. Structured inputs are decoded with `arbitrary` exactly
//! as `libfuzzer-sys` decodes a typed `fuzz_target!` (`arbitrary_take_rest`), so a corpus
//! file means the same thing to the fuzzer and to the replay test.

pub mod audit;
pub mod bundle;
pub mod host;
pub mod policy;
pub mod runtime;
pub mod schedule;

/// One target's check: any bytes in, a panic on a broken invariant.
pub type Check = fn(&[u8]);

/// Every target by the name of its binary in `fuzz/fuzz_targets/`.
pub const TARGETS: &[(&str, Check)] = &[
    ("api_key", policy::api_key),
    ("audit_chain", audit::chain),
    ("audit_record", audit::record),
    ("body_decoding", host::body_decoding),
    ("bundle_archive", bundle::archive),
    ("bundle_signature", bundle::signature),
    ("cron", schedule::cron),
    ("egress_target", policy::egress_target),
    ("grant", policy::grant),
    ("ids", runtime::ids),
    ("json_strict", runtime::json_strict),
    ("kv_key", host::kv_key),
    ("manifest", runtime::manifest),
    ("redactor", host::redactor),
    ("retry_after", host::retry_after),
    ("schema", runtime::schema),
    ("webhook_github", policy::webhook_github),
    ("webhook_slack", policy::webhook_slack),
    ("webhook_standard", policy::webhook_standard),
];

/// Decodes the fuzzer's bytes as a typed `fuzz_target!` would; `None` is an input the
/// fuzzer skips.
fn decode<'a, T: arbitrary::Arbitrary<'a>>(data: &'a [u8]) -> Option<T> {
    T::arbitrary_take_rest(arbitrary::Unstructured::new(data)).ok()
}

/// Splits `data` into the chunks a network would deliver: sizes cycle through `sizes`
/// (each at least one byte).
fn chunks<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .map_or(rest.len(), |s| usize::from(*s).max(1));
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        out.push(chunk);
        rest = tail;
        i += 1;
    }
    out
}
