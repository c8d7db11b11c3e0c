//! Key files and key ids.
//!
//! * Key id: first 16 hex chars of SHA-256(public key bytes). It is a lookup
//!   hint, not a trust anchor: verification always uses the trusted key.
//! * Private key file: `airlock-ed25519-private-key v1\n<base64 seed>\n`,
//!   mode 0600, never overwritten. Seeds live in `Zeroizing` buffers.
//! * Public key line: `airlock-ed25519 <key-id> <base64 key>`; the id is
//!   checked against the key, so a pasted line cannot mislabel a key.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// First line of a private key file, including its LF.
pub const PRIVATE_KEY_HEADER: &str = "airlock-ed25519-private-key v1\n";
/// First word of a public key line.
pub const PUBLIC_KEY_TAG: &str = "airlock-ed25519";
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw key follows.
pub const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// A private key file is ~76 bytes; anything much larger is not one.
const MAX_PRIVATE_KEY_FILE: u64 = 1024;

/// Key handling failures. Messages never include key material or file content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("refusing to overwrite existing key file {}", path.display())]
    Exists { path: PathBuf },
    #[error("private key {} has mode {mode:04o}, readable or writable by group/other; run `chmod 600 {}`", path.display(), path.display())]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("{} is not an airlock private key file: {reason}", path.display())]
    BadPrivateKey { path: PathBuf, reason: &'static str },
    #[error("invalid public key line: {reason}")]
    BadPublicKey { reason: &'static str },
    #[error("public key line claims key id {claimed} but the key's id is {actual}")]
    KeyIdMismatch { claimed: String, actual: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Key id of a public key: 16 lowercase hex chars (64 bits of SHA-256).
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

/// Whether `s` has the shape of a key id (16 lowercase hex chars).
pub fn is_key_id(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A public key together with its (derived, hence always consistent) key id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: String,
}

impl PublicKey {
    pub fn from_verifying_key(key: VerifyingKey) -> Self {
        let id = key_id(&key);
        Self { key, id }
    }

    pub fn key_id(&self) -> &str {
        &self.id
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Parses `airlock-ed25519 <key-id> <base64>` (one optional trailing LF or
    /// CRLF). Refuses invalid or small-order points and an id that does not
    /// match the key.
    pub fn parse_line(line: &str) -> Result<Self, KeyError> {
        let bad = |reason| KeyError::BadPublicKey { reason };
        let line = line
            .strip_suffix('\n')
            .map_or(line, |l| l.strip_suffix('\r').unwrap_or(l));
        let mut parts = line.split(' ');
        let (Some(tag), Some(id), Some(b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected `airlock-ed25519 <key-id> <base64 key>`"));
        };
        if tag != PUBLIC_KEY_TAG {
            return Err(bad("unknown key type (expected `airlock-ed25519`)"));
        }
        if !is_key_id(id) {
            return Err(bad("key id must be 16 lowercase hex characters"));
        }
        let raw = STANDARD
            .decode(b64)
            .map_err(|_| bad("key is not valid base64"))?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| bad("key is not 32 bytes"))?;
        let key =
            VerifyingKey::from_bytes(&raw).map_err(|_| bad("not a valid Ed25519 public key"))?;
        if key.is_weak() {
            return Err(bad("weak (small-order) Ed25519 key"));
        }
        let pk = Self::from_verifying_key(key);
        if pk.id != id {
            return Err(KeyError::KeyIdMismatch {
                claimed: id.to_owned(),
                actual: pk.id,
            });
        }
        Ok(pk)
    }

    /// The public key line, without a trailing newline.
    pub fn to_line(&self) -> String {
        format!(
            "{PUBLIC_KEY_TAG} {} {}",
            self.id,
            STANDARD.encode(self.key.as_bytes())
        )
    }

    /// DER SubjectPublicKeyInfo (44 bytes), the form openssl expects.
    pub fn spki_der(&self) -> [u8; 44] {
        let mut der = [0u8; 44];
        der[..12].copy_from_slice(&SPKI_PREFIX);
        der[12..].copy_from_slice(self.key.as_bytes());
        der
    }

    /// PEM `PUBLIC KEY` for `openssl pkeyutl -verify -pubin -inkey`.
    pub fn to_pem(&self) -> String {
        let body = STANDARD.encode(self.spki_der());
        format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n")
    }
}

/// Generates a key pair, writes the private key to `private_path` (new file,
/// 0600) and returns the public key.
pub fn generate(private_path: &Path) -> Result<PublicKey, KeyError> {
    let key = SigningKey::generate(&mut OsRng);
    write_signing_key(private_path, &key)?;
    Ok(PublicKey::from_verifying_key(key.verifying_key()))
}

/// Writes a private key file. Refuses to replace an existing file (a lost key
/// cannot be recovered), creates it 0600 from the start (no window where it
/// is readable), and fsyncs file and directory so a crash does not leave an
/// empty key behind a published public key.
pub fn write_signing_key(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let seed = Zeroizing::new(key.to_bytes());
    let encoded = Zeroizing::new(STANDARD.encode(seed.as_slice()));
    // Capacity fixed up front so the buffer never reallocates (which would
    // leave an un-zeroized copy behind).
    let mut text = Zeroizing::new(String::with_capacity(128));
    text.push_str(PRIVATE_KEY_HEADER);
    text.push_str(&encoded);
    text.push('\n');

    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => KeyError::Exists {
            path: path.to_owned(),
        },
        _ => io_err(path)(e),
    })?;
    if let Err(e) = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
    {
        drop(file);
        let _ = fs::remove_file(path); // best effort: do not leave a partial key
        return Err(io_err(path)(e));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all(); // best effort: not every platform can fsync a directory
    }
    Ok(())
}

/// Loads a private key file, refusing one that group/other can access: a
/// signing key anyone on the machine could read is already compromised.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let bad = |reason| KeyError::BadPrivateKey {
        path: path.to_owned(),
        reason,
    };
    let file = File::open(path).map_err(io_err(path))?;
    // fstat the opened file, not the path, so the checked file is the read one.
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(bad("not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    if meta.len() > MAX_PRIVATE_KEY_FILE {
        return Err(bad("file is too large"));
    }
    let mut text = Zeroizing::new(Vec::with_capacity(MAX_PRIVATE_KEY_FILE as usize + 1));
    file.take(MAX_PRIVATE_KEY_FILE + 1)
        .read_to_end(&mut text)
        .map_err(io_err(path))?;
    parse_private_key(&text).map_err(bad)
}

fn parse_private_key(text: &[u8]) -> Result<SigningKey, &'static str> {
    let rest = text
        .strip_prefix(PRIVATE_KEY_HEADER.as_bytes())
        .ok_or("first line is not `airlock-ed25519-private-key v1`")?;
    let b64 = rest.strip_suffix(b"\n").ok_or("missing final newline")?;
    if b64.contains(&b'\n') {
        return Err("unexpected extra lines");
    }
    let seed = Zeroizing::new(
        STANDARD
            .decode(b64)
            .map_err(|_| "seed is not valid base64")?,
    );
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        seed.as_slice()
            .try_into()
            .map_err(|_| "seed is not 32 bytes")?,
    );
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generate_writes_0600_and_refuses_existing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing.key");
        let public = generate(&path).expect("generate");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.starts_with(PRIVATE_KEY_HEADER) && text.ends_with('\n'));
        assert!(matches!(generate(&path), Err(KeyError::Exists { .. })));
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            text,
            "existing key untouched"
        );
        let loaded = load_signing_key(&path).expect("load");
        assert_eq!(
            PublicKey::from_verifying_key(loaded.verifying_key()),
            public
        );
    }

    #[test]
    fn load_refuses_group_or_other_access() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        generate(&path).expect("generate");
        for mode in [0o644, 0o640, 0o604, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let err = load_signing_key(&path).expect_err("must refuse");
            let msg = err.to_string();
            assert!(matches!(err, KeyError::InsecurePermissions { .. }), "{msg}");
            assert!(
                msg.contains("chmod 600") && msg.contains(&format!("{mode:04o}")),
                "{msg}"
            );
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
    }

    #[test]
    fn load_bad_format_does_not_echo_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (i, content) in [
            "SECRETSTUFF\n",
            "airlock-ed25519-private-key v1\nSECRET!!\n",
            "airlock-ed25519-private-key v1\nAAAA\n",
            "airlock-ed25519-private-key v1\n",
        ]
        .iter()
        .enumerate()
        {
            let path = dir.path().join(format!("k{i}"));
            fs::write(&path, content).expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
            let msg = load_signing_key(&path).expect_err("bad format").to_string();
            assert!(!msg.contains("SECRET") && !msg.contains("AAAA"), "{msg}");
        }
    }

    #[test]
    fn public_line_round_trip_and_mismatched_id() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let pk = PublicKey::from_verifying_key(key.verifying_key());
        let line = pk.to_line();
        assert_eq!(PublicKey::parse_line(&line).expect("parse"), pk);
        assert_eq!(
            PublicKey::parse_line(&format!("{line}\n")).expect("parse"),
            pk
        );
        let other =
            PublicKey::from_verifying_key(SigningKey::from_bytes(&[8u8; 32]).verifying_key());
        let forged = line.replace(pk.key_id(), other.key_id());
        assert!(matches!(
            PublicKey::parse_line(&forged),
            Err(KeyError::KeyIdMismatch { .. })
        ));
        for bad in [
            "",
            "airlock-ed25519",
            "ssh-ed25519 0123456789abcdef AAAA",
            &format!("{line} extra"),
            &line.replace(' ', "  "),
            &line.to_uppercase(),
        ] {
            assert!(PublicKey::parse_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pem_is_44_byte_spki() {
        let pk = PublicKey::from_verifying_key(SigningKey::from_bytes(&[9u8; 32]).verifying_key());
        let pem = pk.to_pem();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body).expect("base64");
        assert_eq!(der.len(), 44);
        assert_eq!(der[..12], SPKI_PREFIX);
        assert_eq!(&der[12..], pk.verifying_key().as_bytes());
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\n")
                && pem.ends_with("-----END PUBLIC KEY-----\n")
        );
    }
}
