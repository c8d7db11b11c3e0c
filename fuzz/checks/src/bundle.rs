//! airlock-bundle's parsers: the archive reader and signature verification.

use std::sync::OnceLock;

use airlock_bundle::{ArchiveLimits, PublicKey, SignatureFile, SigningKey, Trust};

/// The bundle archive reader: any bytes are read within the limits or refused.
pub fn archive(data: &[u8]) {
    let limits = ArchiveLimits::default();
    if let Ok(entries) = airlock_bundle::archive::read(data, &limits) {
        assert!(entries.len() <= limits.max_entries);
    }
}

/// A bundle signed by a fixed key, and that key.
fn signed() -> &'static (Vec<u8>, PublicKey) {
    static SIGNED: OnceLock<(Vec<u8>, PublicKey)> = OnceLock::new();
    SIGNED.get_or_init(|| {
        let key = SigningKey::from_bytes(&[7; 32]);
        let files = vec![
            (
                "airlock.toml".to_string(),
                b"id = \"fuzz\"\nversion = \"1.0.0\"\n".to_vec(),
            ),
            ("component.wasm".to_string(), b"\0asm\x0d\0\x01\0".to_vec()),
            ("schemas/input.json".to_string(), b"{}".to_vec()),
        ];
        let bytes =
            airlock_bundle::sign(files, "fuzz", "1.0.0", "acme", &key).expect("a valid bundle");
        (bytes, PublicKey::from_verifying_key(key.verifying_key()))
    })
}

/// Signature files parse strictly, and what parses writes back as the same bytes (the
/// canonical form is the only one accepted). Then the first four bytes pick a byte of a signed
/// bundle and how to flip it: any flipped byte is refused.
pub fn signature(data: &[u8]) {
    if let Ok((file, _)) = SignatureFile::parse(data) {
        assert_eq!(file.to_bytes().expect("serializes"), data);
    }
    let [a, b, c, mask, ..] = *data else {
        return;
    };
    if mask == 0 {
        return;
    }
    let (bytes, key) = signed();
    let mut flipped = bytes.clone();
    let at = usize::from(u16::from_le_bytes([a, b])) * 256 + usize::from(c);
    let at = at % flipped.len();
    flipped[at] ^= mask;
    let trust = |_: &str| Trust::Trusted {
        key,
        publisher: "acme",
    };
    assert!(airlock_bundle::verify(bytes, trust).is_ok());
    assert!(
        airlock_bundle::verify(&flipped, trust).is_err(),
        "a bundle with byte {at} flipped by {mask:#04x} verified"
    );
}
