//! Bundle-level tests: tampering, trust decisions, hostile archives, fuzzing
//! and interoperability with standard tools.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer;

use super::archive::{self, ArchiveError, ArchiveLimits, At, BLOCK};
use super::*;

type Entries = Vec<(String, Vec<u8>)>;

const ID: &str = "acme/db";
const PUBLISHER: &str = "Acme Inc";

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn public(k: &SigningKey) -> PublicKey {
    PublicKey::from_verifying_key(k.verifying_key())
}

/// Deterministic pseudo-random bytes (xorshift64), so tests need no rand dep.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn files(version: &str) -> Entries {
    let manifest = format!(
        "id = \"{ID}\"\nversion = \"{version}\"\ncomponent = \"db.wasm\"\n\n[schemas]\ninput = \"schemas/in.json\"\noutput = \"schemas/out.json\"\n"
    );
    vec![
        (
            "schemas/out.json".into(),
            br#"{"type":"object","properties":{"rows":{"type":"array"}}}"#.to_vec(),
        ),
        (
            "component.wasm".into(),
            [b"\0asm\x01\0\0\0".to_vec(), Rng(42).bytes(3000)].concat(),
        ),
        ("airlock.toml".into(), manifest.into_bytes()),
        (
            "schemas/in.json".into(),
            br#"{"type":"object","properties":{"query":{"type":"string"}}}"#.to_vec(),
        ),
    ]
}

fn bundle(version: &str) -> Vec<u8> {
    sign(files(version), ID, version, PUBLISHER, &key(1)).expect("sign")
}

fn check(bytes: &[u8]) -> Result<VerifiedBundle, BundleError> {
    let pk = public(&key(1));
    verify(bytes, |id| {
        if id == pk.key_id() {
            Trust::Trusted {
                key: &pk,
                publisher: PUBLISHER,
            }
        } else {
            Trust::Unknown
        }
    })
}

fn entries_of(bytes: &[u8]) -> Entries {
    archive::read(bytes, &ArchiveLimits::default()).expect("read")
}

/// (name, data offset, data length) of each entry, parsed independently of `archive::read`.
fn spans(bytes: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut off = 0;
    while bytes[off..off + BLOCK].iter().any(|&b| b != 0) {
        let h = &bytes[off..off + BLOCK];
        let name = String::from_utf8(h[..100].iter().copied().take_while(|&b| b != 0).collect())
            .expect("name");
        let size = usize::from_str_radix(std::str::from_utf8(&h[124..135]).expect("size"), 8)
            .expect("octal");
        out.push((name, off + BLOCK, size));
        off += BLOCK + size.next_multiple_of(BLOCK);
    }
    out
}

fn span(bytes: &[u8], name: &str) -> (usize, usize) {
    spans(bytes)
        .into_iter()
        .find(|s| s.0 == name)
        .map(|s| (s.1, s.2))
        .expect("entry present")
}

/// Signs arbitrary entries with an arbitrary claimed key id, bypassing `sign`'s checks.
fn craft(
    mut entries: Entries,
    version: &str,
    publisher: &str,
    signer: &SigningKey,
    key_id: &str,
) -> Vec<u8> {
    let st = statement(ID, version, publisher, key_id, &entries).expect("statement");
    let sig = signer.sign(st.to_text().as_bytes());
    let sf = SignatureFile {
        format: "airlock-bundle-v1".into(),
        algorithm: "ed25519".into(),
        key_id: key_id.into(),
        publisher: publisher.into(),
        id: ID.into(),
        version: version.into(),
        signature: STANDARD.encode(sig.to_bytes()),
    };
    entries.sort();
    entries.push((SIGNATURE.into(), sf.to_bytes().expect("json")));
    archive::write(&entries)
}

fn flip(bytes: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= mask;
    b
}

#[test]
fn round_trip() {
    let bytes = bundle("1.0.0");
    let v = check(&bytes).expect("verifies");
    assert_eq!(
        (v.id.as_str(), v.version.as_str(), v.publisher.as_str()),
        (ID, "1.0.0", PUBLISHER)
    );
    assert_eq!(v.key_id, public(&key(1)).key_id());
    let expected: std::collections::BTreeMap<_, _> = files("1.0.0").into_iter().collect();
    assert_eq!(v.files, expected);
    let st = statement(ID, "1.0.0", PUBLISHER, &v.key_id, &files("1.0.0")).expect("statement");
    assert_eq!(v.digest, st.digest());
    let names: Vec<_> = entries_of(&bytes).into_iter().map(|e| e.0).collect();
    assert_eq!(
        names,
        [
            "airlock.toml",
            "component.wasm",
            "schemas/in.json",
            "schemas/out.json",
            "SIGNATURE"
        ]
    );
    assert_eq!(file_name(ID, "1.0.0"), "acme_db-1.0.0.airlock");
}

#[test]
fn deterministic_bytes() {
    let mut shuffled = files("1.0.0");
    shuffled.reverse();
    let other = sign(shuffled, ID, "1.0.0", PUBLISHER, &key(1)).expect("sign");
    assert_eq!(bundle("1.0.0"), other);
    assert_eq!(bundle("1.0.0").len() % BLOCK, 0);
}

#[test]
fn every_flip_at_300_offsets_is_refused() {
    let bytes = bundle("1.0.0");
    for i in 0..300 {
        let at = i * (bytes.len() - 1) / 299;
        for mask in [0x01, 0x20, 0x80, 0xff] {
            assert!(
                check(&flip(&bytes, at, mask)).is_err(),
                "flip {mask:#x} at {at} accepted"
            );
        }
    }
}

#[test]
fn every_single_bit_flip_anywhere_is_refused() {
    let bytes = bundle("1.0.0");
    for at in 0..bytes.len() {
        assert!(
            check(&flip(&bytes, at, 0x01)).is_err(),
            "flip at {at} accepted"
        );
    }
}

#[test]
fn flips_in_content_are_digest_mismatches() {
    let bytes = bundle("1.0.0");
    for name in [
        "component.wasm",
        "airlock.toml",
        "schemas/in.json",
        "schemas/out.json",
    ] {
        let (start, len) = span(&bytes, name);
        for at in [start, start + len / 2, start + len - 1] {
            let err = check(&flip(&bytes, at, 0x01)).expect_err("tampered");
            assert!(
                matches!(err, BundleError::DigestMismatch),
                "{name}@{at}: {err}"
            );
            assert_eq!(err.reason(), "digest-mismatch");
        }
    }
}

#[test]
fn flips_in_signature_base64_are_refused() {
    let bytes = bundle("1.0.0");
    let (start, len) = span(&bytes, SIGNATURE);
    let json = &bytes[start..start + len];
    let field = b"\"signature\":\"";
    let b64 = start
        + json
            .windows(field.len())
            .position(|w| w == field)
            .expect("field")
        + field.len();
    for at in b64..b64 + 88 {
        for mask in [0x01, 0x02, 0x20] {
            let err = check(&flip(&bytes, at, mask)).expect_err("tampered signature");
            assert!(
                matches!(
                    err,
                    BundleError::DigestMismatch | BundleError::MalformedSignature(_)
                ),
                "@{at}: {err}"
            );
        }
    }
}

#[test]
fn appended_bytes_are_refused() {
    let bytes = bundle("1.0.0");
    let extra_entry = archive::write(&[("extra.txt".into(), b"x".to_vec())]);
    let extra_entry = &extra_entry[..extra_entry.len() - 2 * BLOCK];
    for tail in [
        &[0u8][..],
        &[0u8; 512][..],
        &[0u8; 1024][..],
        extra_entry,
        b"junk",
    ] {
        let err = check(&[&bytes[..], tail].concat()).expect_err("appended data");
        assert!(
            matches!(err, BundleError::Archive(ArchiveError::TrailingData { .. })),
            "{err}"
        );
        assert_eq!(err.reason(), "malformed");
    }
}

#[test]
fn removing_or_adding_entries_is_a_digest_mismatch() {
    let bytes = bundle("1.0.0");
    for drop in ["schemas/out.json", "component.wasm", "airlock.toml"] {
        let mut e = entries_of(&bytes);
        e.retain(|(n, _)| n != drop);
        let err = check(&archive::write(&e)).expect_err("removed entry");
        assert!(matches!(err, BundleError::DigestMismatch), "{drop}: {err}");
    }
    let mut e = entries_of(&bytes);
    e.insert(2, ("schemas/extra.json".into(), b"{}".to_vec()));
    let err = check(&archive::write(&e)).expect_err("added entry");
    assert!(matches!(err, BundleError::DigestMismatch), "{err}");
}

#[test]
fn old_signature_on_new_version_is_a_digest_mismatch() {
    let old = entries_of(&bundle("1.0.0"));
    let mut new = entries_of(&bundle("1.0.1"));
    let last = new.len() - 1;
    new[last] = old[old.len() - 1].clone();
    let err = check(&archive::write(&new)).expect_err("replayed signature");
    assert!(matches!(err, BundleError::DigestMismatch), "{err}");
}

#[test]
fn trust_decisions() {
    let bytes = bundle("1.0.0");
    let pk = public(&key(1));
    let id = pk.key_id().to_owned();
    let err = verify(&bytes, |_| Trust::Unknown).expect_err("unknown");
    assert!(
        matches!(&err, BundleError::UnknownKey(k) if *k == id) && err.reason() == "unknown-key"
    );
    let err = verify(&bytes, |_| Trust::Revoked).expect_err("revoked");
    assert!(
        matches!(&err, BundleError::RevokedKey(k) if *k == id) && err.reason() == "revoked-key"
    );
    let err = verify(&bytes, |_| Trust::Trusted {
        key: &pk,
        publisher: "Mallory",
    })
    .expect_err("publisher");
    assert!(
        matches!(&err, BundleError::PublisherMismatch { signed, trusted } if signed == PUBLISHER && trusted == "Mallory")
    );
    assert_eq!(err.reason(), "publisher-mismatch");
    // A trust store answering with some other key does not make it valid.
    let other = public(&key(2));
    let err = verify(&bytes, |_| Trust::Trusted {
        key: &other,
        publisher: PUBLISHER,
    })
    .expect_err("other key");
    assert!(matches!(err, BundleError::UnknownKey(_)), "{err}");
}

#[test]
fn key_id_is_only_a_hint() {
    // Mallory signs with her own key but names the trusted key's id.
    let trusted = public(&key(1));
    let forged = craft(
        files("1.0.0"),
        "1.0.0",
        PUBLISHER,
        &key(66),
        trusted.key_id(),
    );
    let err = check(&forged).expect_err("forged");
    assert!(matches!(err, BundleError::DigestMismatch), "{err}");
    // The same crafting path with the right key does verify (the helper is sound).
    check(&craft(
        files("1.0.0"),
        "1.0.0",
        PUBLISHER,
        &key(1),
        trusted.key_id(),
    ))
    .expect("genuine");
}

#[test]
fn signature_placement() {
    let bytes = bundle("1.0.0");
    let mut e = entries_of(&bytes);
    e.pop();
    let err = check(&archive::write(&e)).expect_err("unsigned");
    assert!(matches!(err, BundleError::Unsigned) && err.reason() == "unsigned");
    let mut e = entries_of(&bytes);
    e.rotate_right(1); // SIGNATURE first
    let err = check(&archive::write(&e)).expect_err("not last");
    assert!(matches!(err, BundleError::Malformed(_)), "{err}");
    let mut e = entries_of(&bytes);
    e.swap(0, 1); // unsorted
    let err = check(&archive::write(&e)).expect_err("unsorted");
    assert!(matches!(err, BundleError::Malformed(_)), "{err}");
    let mut e = entries_of(&bytes);
    let sig = e[e.len() - 1].clone();
    e.push(sig); // two SIGNATUREs
    assert!(check(&archive::write(&e)).is_err());
}

#[test]
fn signed_bundle_missing_required_files_is_malformed() {
    let pk = public(&key(1));
    for drop in ["airlock.toml", "component.wasm"] {
        let mut f = files("1.0.0");
        f.retain(|(n, _)| n != drop);
        let err = check(&craft(f, "1.0.0", PUBLISHER, &key(1), pk.key_id())).expect_err("missing");
        assert!(matches!(err, BundleError::Malformed(_)), "{drop}: {err}");
    }
}

#[test]
fn sign_refuses_bad_input() {
    let k = key(1);
    let mut f = files("1");
    f.push((SIGNATURE.into(), vec![]));
    assert!(sign(f, ID, "1", PUBLISHER, &k).is_err());
    for drop in ["airlock.toml", "component.wasm"] {
        let mut f = files("1");
        f.retain(|(n, _)| n != drop);
        assert!(sign(f, ID, "1", PUBLISHER, &k).is_err(), "{drop}");
    }
    for bad in [
        "../x",
        "/abs",
        "a//b",
        "a b",
        "Schemas/In.json",
        "component.wasm/x",
    ] {
        let mut f = files("1");
        f.push((bad.into(), vec![]));
        assert!(sign(f, ID, "1", PUBLISHER, &k).is_err(), "{bad}");
    }
    assert!(sign(files("1"), ID, "1\n", PUBLISHER, &k).is_err());
    assert!(sign(files("1"), ID, "1", "", &k).is_err());
    // Never produce a bundle that verify() would refuse for its SIGNATURE size.
    assert!(sign(files("1"), ID, "1", &"P".repeat(17_000), &k).is_err());
}

#[test]
fn malformed_signature_files() {
    let bytes = bundle("1.0.0");
    let good = entries_of(&bytes).pop().expect("sig").1;
    let text = String::from_utf8(good.clone()).expect("utf8");
    let cases: Vec<Vec<u8>> = vec![
        text.replace("airlock-bundle-v1", "airlock-bundle-v2")
            .into_bytes(),
        text.replace("ed25519", "rsa").into_bytes(),
        text.replacen('}', ",\"extra\":1}", 1).into_bytes(),
        text.replace(",\"", ", \"").into_bytes(),
        text.trim_end().as_bytes().to_vec(),
        format!("{text}\n").into_bytes(),
        text.replace("\"signature\":\"", "\"signature\":\"AAAA")
            .into_bytes(),
        b"{\"format\":\"TOPSECRET\"}\n".to_vec(),
        b"[\"TOPSECRET\"]".to_vec(),
        vec![b' '; 20_000],
        {
            // Canonical and otherwise well-formed, but over the size cap.
            let (mut sf, _) = SignatureFile::parse(&good).expect("parse");
            sf.publisher = "P".repeat(17_000);
            sf.to_bytes().expect("json")
        },
        Vec::new(),
    ];
    for (i, sig) in cases.into_iter().enumerate() {
        let mut e = entries_of(&bytes);
        let last = e.len() - 1;
        e[last].1 = sig;
        let err = check(&archive::write(&e)).expect_err("malformed");
        assert!(
            matches!(err, BundleError::MalformedSignature(_)),
            "case {i}: {err}"
        );
        assert!(
            !err.to_string().contains("TOPSECRET"),
            "case {i} echoes content: {err}"
        );
        assert_eq!(err.reason(), "malformed");
    }
}

#[test]
fn archive_round_trip_and_limits() {
    let long = "d/".repeat(49) + "xy"; // exactly 100 bytes
    let e: Entries = vec![
        (long, vec![1; 512]),
        ("a".into(), vec![]),
        ("b".into(), vec![2; 513]),
    ];
    let bytes = archive::write(&e);
    assert_eq!(
        archive::read(&bytes, &ArchiveLimits::default()).expect("read"),
        e
    );
    assert_eq!(
        archive::read(&archive::write(&[]), &ArchiveLimits::default()).expect("empty"),
        vec![]
    );
    let limits = ArchiveLimits {
        max_entries: 2,
        ..ArchiveLimits::default()
    };
    assert!(matches!(
        archive::read(&bytes, &limits),
        Err(ArchiveError::TooManyEntries { max: 2 })
    ));
    let limits = ArchiveLimits {
        max_entry: 512,
        ..ArchiveLimits::default()
    };
    assert!(matches!(
        archive::read(&bytes, &limits),
        Err(ArchiveError::EntryTooLarge(At { index: 2, .. }, ..))
    ));
    let limits = ArchiveLimits {
        max_total: 1000,
        ..ArchiveLimits::default()
    };
    assert!(matches!(
        archive::read(&bytes, &limits),
        Err(ArchiveError::TotalTooLarge(At { index: 2, .. }, _))
    ));
}

fn read(bytes: &[u8]) -> Result<Entries, ArchiveError> {
    archive::read(bytes, &ArchiveLimits::default())
}

fn with_header(h: [u8; BLOCK], data: &[u8]) -> Vec<u8> {
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(BLOCK) + 2 * BLOCK, 0);
    out
}

#[test]
fn hostile_archives_are_refused() {
    let dup = archive::write(&[("a".into(), vec![1]), ("a".into(), vec![2])]);
    assert!(matches!(
        read(&dup),
        Err(ArchiveError::Duplicate(At { index: 1, .. }, _))
    ));
    for (a, b) in [("A", "a"), ("a", "a/b"), ("a/b", "a")] {
        let e = archive::write(&[(a.into(), vec![]), (b.into(), vec![])]);
        assert!(
            matches!(read(&e), Err(ArchiveError::Duplicate(..))),
            "{a} {b}"
        );
    }
    for bad in [
        "../x", "/abs", "a/../b", "./a", "a//b", "a/", "a b", "a\\b", "é",
    ] {
        let e = archive::write(&[(bad.into(), vec![])]);
        assert!(matches!(read(&e), Err(ArchiveError::BadPath(..))), "{bad}");
    }
    for t in [
        b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'x', b'g', b'L', b'K', b'S',
    ] {
        let mut h = archive::raw_header(b"link", 0, t);
        h[157..163].copy_from_slice(b"target");
        archive::fix_checksum(&mut h);
        let err = read(&with_header(h, b"")).expect_err("type");
        assert!(
            matches!(err, ArchiveError::UnsupportedType(_, typeflag) if typeflag == t),
            "{err}"
        );
    }
    // Typeflag NUL is the old spelling of a regular file and is accepted.
    assert!(read(&with_header(archive::raw_header(b"old", 1, 0), b"x")).is_ok());
    let mut h = archive::raw_header(b"f", 1, b'0');
    h[150] ^= 1;
    assert!(matches!(
        read(&with_header(h, b"x")),
        Err(ArchiveError::BadChecksum(At {
            index: 0,
            offset: 0,
            ..
        }))
    ));
    let mut h = archive::raw_header(b"f", 1, b'0');
    h[257..265].copy_from_slice(b"ustar  \0"); // old GNU magic
    archive::fix_checksum(&mut h);
    assert!(matches!(
        read(&with_header(h, b"x")),
        Err(ArchiveError::BadMagic(_))
    ));
    // Huge sizes: refused by the cap before any allocation or out-of-bounds read.
    for size in [archive::MAX_OCTAL_SIZE, 1 << 32, (64 << 20) + 1] {
        let err =
            read(&with_header(archive::raw_header(b"big", size, b'0'), b"")).expect_err("huge");
        assert!(matches!(err, ArchiveError::EntryTooLarge(..)), "{err}");
    }
    let mut h = archive::raw_header(b"f", 1, b'0');
    h[124..136].copy_from_slice(b"0000000008\0\0");
    archive::fix_checksum(&mut h);
    assert!(matches!(
        read(&with_header(h, b"x")),
        Err(ArchiveError::BadNumber(..))
    ));
    let mut h = archive::raw_header(b"f", 1, b'0');
    h[124..136].copy_from_slice(b"777777777777");
    archive::fix_checksum(&mut h);
    assert!(read(&with_header(h, b"x")).is_err());
    // Non-canonical fields: mode, uid, mtime, prefix (which would change the path for tar).
    for (range, value, field) in [
        (100..108, &b"0000755\0"[..], "mode"),
        (108..116, b"0001750\0", "uid"),
        (136..148, b"14000000000\0", "mtime"),
        (345..348, b"etc", "prefix"),
        (2..5, b"\0zz", "name"),
    ] {
        let mut h = archive::raw_header(b"f", 1, b'0');
        h[range].copy_from_slice(value);
        archive::fix_checksum(&mut h);
        let err = read(&with_header(h, b"x")).expect_err("non-canonical");
        assert!(
            matches!(&err, ArchiveError::NonCanonical(_, f) if *f == field),
            "{err}"
        );
    }
}

#[test]
fn truncation_padding_and_end_marker() {
    let bytes = archive::write(&[
        ("a".into(), b"TOPSECRET".to_vec()),
        ("b".into(), vec![7; 600]),
    ]);
    for cut in 0..bytes.len() {
        let err = read(&bytes[..cut]).expect_err("truncated");
        assert!(
            matches!(err, ArchiveError::Truncated { .. }),
            "cut {cut}: {err}"
        );
    }
    let mut padded = bytes.clone();
    padded[BLOCK + 100] = 1;
    let err = read(&padded).expect_err("padding");
    assert!(
        matches!(err, ArchiveError::BadPadding(At { index: 0, .. }, _)),
        "{err}"
    );
    assert!(!err.to_string().contains("TOPSECRET"));
    // One zero block followed by another header: not an end marker.
    let one = [&[0u8; BLOCK][..], &bytes[..]].concat();
    assert!(matches!(read(&one), Err(ArchiveError::BadEnd { .. })));
}

#[test]
fn entry_count_is_capped() {
    // However many headers an archive claims (here 300, standing in for 10^6,
    // which would be 512 MB), parsing stops with an error at the cap.
    let mut bytes = Vec::with_capacity(300 * BLOCK);
    for i in 0..300u32 {
        bytes.extend_from_slice(&archive::raw_header(format!("f{i}").as_bytes(), 0, b'0'));
    }
    let err = read(&bytes).expect_err("too many");
    assert!(
        matches!(err, ArchiveError::TooManyEntries { max: 256 }),
        "{err}"
    );
    // With a cap of 10^6 the same input is merely truncated (no end marker).
    let limits = ArchiveLimits {
        max_entries: 1_000_000,
        ..ArchiveLimits::default()
    };
    assert!(matches!(
        archive::read(&bytes, &limits),
        Err(ArchiveError::Truncated { .. })
    ));
}

#[test]
fn fuzz_random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let header = archive::raw_header(b"airlock.toml", 700, b'0');
    for i in 0..2000 {
        let len = rng.below(4096);
        let mut b = rng.bytes(len);
        if i % 2 == 0 && b.len() >= BLOCK {
            b[..BLOCK].copy_from_slice(&header); // get past the first header sometimes
        }
        assert!(check(&b).is_err());
        let _ = read(&b);
    }
}

#[test]
fn fuzz_mutations_never_panic_and_never_verify() {
    let original = bundle("1.0.0");
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for _ in 0..2000 {
        let mut b = original.clone();
        for _ in 0..1 + rng.below(6) {
            match rng.below(4) {
                0 | 1 => {
                    let at = rng.below(b.len());
                    if let Some(x) = b.get_mut(at) {
                        *x = rng.next() as u8;
                    }
                }
                2 => b.truncate(rng.below(b.len() + 1)),
                _ => {
                    let at = rng.below(b.len() + 1);
                    let n = 1 + rng.below(600);
                    let ins = rng.bytes(n);
                    b.splice(at..at, ins);
                }
            }
        }
        let result = check(&b);
        assert!(b == original || result.is_err(), "mutation verified");
    }
}

#[test]
fn reasons_are_stable() {
    let cases = [
        (BundleError::Unsigned, "unsigned"),
        (BundleError::UnknownKey("k".into()), "unknown-key"),
        (BundleError::RevokedKey("k".into()), "revoked-key"),
        (BundleError::DigestMismatch, "digest-mismatch"),
        (
            BundleError::PublisherMismatch {
                signed: "a".into(),
                trusted: "b".into(),
            },
            "publisher-mismatch",
        ),
        (BundleError::MalformedSignature("x".into()), "malformed"),
        (BundleError::Malformed("x".into()), "malformed"),
        (
            BundleError::Archive(ArchiveError::TooManyEntries { max: 1 }),
            "malformed",
        ),
    ];
    for (err, code) in cases {
        assert_eq!(err.reason(), code, "{err}");
    }
}

fn have(tool: &str, arg: &str) -> bool {
    let ok = Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("note: `{tool}` not available; skipping this interoperability check");
    }
    ok
}

/// Runs `command`, asserting success; returns its stdout.
fn succeed(command: &mut Command) -> Vec<u8> {
    let out = command.output().expect("the tool runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn openssl_verify(dir: &Path, statement: &Path, sig: &Path) -> bool {
    Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(dir.join("pub.pem"))
        .arg("-rawin")
        .arg("-in")
        .arg(statement)
        .arg("-sigfile")
        .arg(sig)
        .output()
        .expect("run openssl")
        .status
        .success()
}

#[test]
fn openssl_verifies_the_signature() {
    if !have("openssl", "version") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = bundle("1.0.0");
    let mut e = entries_of(&bytes);
    let sig = e.pop().expect("sig").1;
    let (sf, signature) = SignatureFile::parse(&sig).expect("parse");
    let st = statement(&sf.id, &sf.version, &sf.publisher, &sf.key_id, &e).expect("statement");
    std::fs::write(dir.path().join("statement.txt"), st.to_text()).expect("write");
    std::fs::write(dir.path().join("sig.bin"), signature.to_bytes()).expect("write");
    std::fs::write(dir.path().join("pub.pem"), public(&key(1)).to_pem()).expect("write");
    assert!(openssl_verify(
        dir.path(),
        &dir.path().join("statement.txt"),
        &dir.path().join("sig.bin")
    ));
    // And it can fail: a one-byte change in the statement is rejected by openssl too.
    std::fs::write(
        dir.path().join("bad.txt"),
        st.to_text().replace("1.0.0", "1.0.1"),
    )
    .expect("write");
    assert!(!openssl_verify(
        dir.path(),
        &dir.path().join("bad.txt"),
        &dir.path().join("sig.bin")
    ));
}

/// The whole audit path from the module docs, with tar, sha256sum and openssl only.
#[test]
fn tar_lists_extracts_and_statement_rebuilds_with_standard_tools() {
    if !have("tar", "--version") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = bundle("1.0.0");
    let path = dir.path().join(file_name(ID, "1.0.0"));
    std::fs::write(&path, &bytes).expect("write");
    let listed = succeed(Command::new("tar").arg("-tf").arg(&path));
    let listed: Vec<String> = String::from_utf8(listed)
        .expect("utf8")
        .lines()
        .map(str::to_owned)
        .collect();
    let names: Vec<String> = entries_of(&bytes).into_iter().map(|e| e.0).collect();
    assert_eq!(listed, names);
    let x = dir.path().join("x");
    std::fs::create_dir(&x).expect("mkdir");
    succeed(Command::new("tar").arg("-xf").arg(&path).arg("-C").arg(&x));
    for (name, data) in entries_of(&bytes) {
        assert_eq!(
            std::fs::read(x.join(&name)).expect("extracted"),
            data,
            "{name}"
        );
    }
    if !have("sha256sum", "--version") || !have("openssl", "version") {
        return;
    }
    let v = check(&bytes).expect("verify");
    let script = r#"cd "$X" && { printf 'airlock-bundle-v1\nid %s\nversion %s\npublisher %s\nkey-id %s\n' "$ID" "$VER" "$PUB" "$KID"
        find . -type f ! -path ./SIGNATURE | sed 's|^\./||' | LC_ALL=C sort |
        while IFS= read -r f; do printf 'file %s %d %s\n' "$(sha256sum < "$f" | cut -d' ' -f1)" "$(wc -c < "$f")" "$f"; done; }"#;
    let text = succeed(
        Command::new("sh")
            .args(["-c", script])
            .env("X", &x)
            .env("ID", &v.id)
            .env("VER", &v.version)
            .env("PUB", &v.publisher)
            .env("KID", &v.key_id),
    );
    let rebuilt =
        statement(&v.id, &v.version, &v.publisher, &v.key_id, &files("1.0.0")).expect("st");
    assert_eq!(
        String::from_utf8(text.clone()).expect("utf8"),
        rebuilt.to_text()
    );
    let sig_json = std::fs::read(x.join(SIGNATURE)).expect("SIGNATURE");
    let (_, signature) = SignatureFile::parse(&sig_json).expect("parse");
    std::fs::write(dir.path().join("statement.txt"), &text).expect("write");
    std::fs::write(dir.path().join("sig.bin"), signature.to_bytes()).expect("write");
    std::fs::write(dir.path().join("pub.pem"), public(&key(1)).to_pem()).expect("write");
    assert!(openssl_verify(
        dir.path(),
        &dir.path().join("statement.txt"),
        &dir.path().join("sig.bin")
    ));
}
