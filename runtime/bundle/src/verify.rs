//! Signing and verifying bundles.
//!
//! Verification order is chosen so that the cheapest, content-independent
//! checks run first and the answer is always the most specific one: archive
//! structure, then the SIGNATURE file, then trust (unknown/revoked key,
//! publisher), then the Ed25519 check over the rebuilt statement.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};

use super::archive::{self, ArchiveError, ArchiveLimits};
use super::keys::{PublicKey, is_key_id};
use super::statement::{FORMAT, StatementError, statement};
use super::{COMPONENT, MANIFEST, SIGNATURE};

/// The only signature algorithm.
pub const ALGORITHM: &str = "ed25519";
/// SIGNATURE files are ~300 bytes; the cap stops a hostile one early.
pub const MAX_SIGNATURE_LEN: usize = 16 * 1024;

/// Contents of the `SIGNATURE` entry: compact JSON in this field order plus
/// one LF. Only that canonical form is accepted, so the file has no
/// unsigned degrees of freedom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    pub format: String,
    pub algorithm: String,
    pub key_id: String,
    pub publisher: String,
    pub id: String,
    pub version: String,
    /// Base64 (standard, padded) of the 64-byte Ed25519 signature.
    pub signature: String,
}

impl SignatureFile {
    /// Canonical bytes: compact JSON and a trailing LF.
    pub fn to_bytes(&self) -> Result<Vec<u8>, BundleError> {
        let mut out = serde_json::to_vec(self)
            .map_err(|_| BundleError::MalformedSignature("cannot serialize".into()))?;
        out.push(b'\n');
        Ok(out)
    }

    /// Strict parse: size cap, known fields only, canonical form, known format
    /// and algorithm, well-formed key id and a 64-byte signature.
    pub fn parse(bytes: &[u8]) -> Result<(Self, Signature), BundleError> {
        let bad = |why: String| BundleError::MalformedSignature(why);
        if bytes.len() > MAX_SIGNATURE_LEN {
            return Err(bad(format!(
                "{} bytes exceeds the {MAX_SIGNATURE_LEN}-byte cap",
                bytes.len()
            )));
        }
        // serde_json messages can quote input values; report only category and position.
        let file: Self = serde_json::from_slice(bytes).map_err(|e| {
            bad(format!(
                "invalid JSON ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if file.to_bytes()? != bytes {
            return Err(bad(
                "not in canonical form (compact JSON, fixed field order, one trailing LF)".into(),
            ));
        }
        if file.format != FORMAT {
            return Err(bad(format!("unknown format (expected `{FORMAT}`)")));
        }
        if file.algorithm != ALGORITHM {
            return Err(bad(format!("unknown algorithm (expected `{ALGORITHM}`)")));
        }
        if !is_key_id(&file.key_id) {
            return Err(bad("key_id is not 16 lowercase hex characters".into()));
        }
        let raw = STANDARD
            .decode(&file.signature)
            .map_err(|_| bad("signature is not valid base64".into()))?;
        let raw: [u8; 64] = raw
            .try_into()
            .map_err(|_| bad("signature is not 64 bytes".into()))?;
        Ok((file, Signature::from_bytes(&raw)))
    }
}

/// Why a bundle was refused (or could not be produced).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is not signed (no SIGNATURE entry)")]
    Unsigned,
    #[error("bundle is signed by unknown key {0}")]
    UnknownKey(String),
    #[error("bundle is signed by revoked key {0}")]
    RevokedKey(String),
    #[error("bundle claims publisher {signed:?} but the signing key is trusted for {trusted:?}")]
    PublisherMismatch { signed: String, trusted: String },
    #[error("signature does not match the bundle contents: the bytes are not what was signed")]
    DigestMismatch,
    #[error("malformed SIGNATURE: {0}")]
    MalformedSignature(String),
    #[error("malformed bundle: {0}")]
    Malformed(String),
    #[error("malformed bundle archive: {0}")]
    Archive(#[from] ArchiveError),
    #[error("invalid bundle metadata: {0}")]
    Statement(#[from] StatementError),
}

impl BundleError {
    /// Stable short code for logs, metrics and API responses.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::UnknownKey(_) => "unknown-key",
            Self::RevokedKey(_) => "revoked-key",
            Self::DigestMismatch => "digest-mismatch",
            Self::PublisherMismatch { .. } => "publisher-mismatch",
            Self::MalformedSignature(_)
            | Self::Malformed(_)
            | Self::Archive(_)
            | Self::Statement(_) => "malformed",
        }
    }
}

/// The caller's trust decision for a key id.
#[derive(Clone, Copy, Debug)]
pub enum Trust<'a> {
    /// Trusted key, and the publisher it may sign for.
    Trusted {
        key: &'a PublicKey,
        publisher: &'a str,
    },
    Revoked,
    Unknown,
}

/// A bundle whose signature verified against a trusted key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedBundle {
    pub id: String,
    pub version: String,
    pub publisher: String,
    pub key_id: String,
    /// SHA-256 of the statement text: identifies exactly what was signed.
    pub digest: [u8; 32],
    /// Every entry except SIGNATURE.
    pub files: BTreeMap<String, Vec<u8>>,
    /// SHA-256 of each of `files`, as the signed statement lists them: taken once, while
    /// verifying, so the loader need not hash the component again.
    pub digests: BTreeMap<String, [u8; 32]>,
}

/// Signs `files` into bundle bytes. `files` must contain `airlock.toml` and
/// `component.wasm` and must not contain `SIGNATURE`. Entries are written in
/// byte order of name, then SIGNATURE last. Deterministic (Ed25519 is).
pub fn sign(
    mut files: Vec<(String, Vec<u8>)>,
    id: &str,
    version: &str,
    publisher: &str,
    key: &SigningKey,
) -> Result<Vec<u8>, BundleError> {
    if files.iter().any(|(n, _)| n == SIGNATURE) {
        return Err(BundleError::Malformed(format!(
            "`{SIGNATURE}` is reserved and cannot be an input file"
        )));
    }
    require(&files)?;
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let public = PublicKey::from_verifying_key(key.verifying_key());
    let st = statement(id, version, publisher, public.key_id(), &files)?;
    let signature = key.sign(st.to_text().as_bytes());
    let sig_file = SignatureFile {
        format: FORMAT.into(),
        algorithm: ALGORITHM.into(),
        key_id: public.key_id().into(),
        publisher: publisher.into(),
        id: id.into(),
        version: version.into(),
        signature: STANDARD.encode(signature.to_bytes()),
    };
    let sig_bytes = sig_file.to_bytes()?;
    if sig_bytes.len() > MAX_SIGNATURE_LEN {
        let why = format!("SIGNATURE would exceed {MAX_SIGNATURE_LEN} bytes (fields too long)");
        return Err(BundleError::Malformed(why));
    }
    files.push((SIGNATURE.into(), sig_bytes));
    archive::check_entries(&files)?;
    // Refuse to produce what verify() would refuse for size.
    let limits = ArchiveLimits::default();
    let total: usize = files.iter().map(|(_, d)| d.len()).sum();
    let largest = files.iter().map(|(_, d)| d.len()).max().unwrap_or(0);
    if files.len() > limits.max_entries
        || largest as u64 > limits.max_entry
        || total as u64 > limits.max_total
    {
        return Err(BundleError::Malformed(format!(
            "bundle exceeds limits ({} entries, {} per entry, {} total bytes)",
            limits.max_entries, limits.max_entry, limits.max_total
        )));
    }
    Ok(archive::write(&files))
}

fn require(files: &[(String, Vec<u8>)]) -> Result<(), BundleError> {
    for name in [MANIFEST, COMPONENT] {
        if !files.iter().any(|(n, _)| n == name) {
            return Err(BundleError::Malformed(format!(
                "missing required entry `{name}`"
            )));
        }
    }
    Ok(())
}

/// Verifies bundle bytes. `trust` maps the key id named in SIGNATURE to a
/// trust decision; the id is only a lookup hint, the signature is always
/// checked against the key `trust` returns.
pub fn verify<'a>(
    bytes: &[u8],
    trust: impl Fn(&str) -> Trust<'a>,
) -> Result<VerifiedBundle, BundleError> {
    let mut entries = archive::read(bytes, &ArchiveLimits::default())?;
    let Some(pos) = entries.iter().position(|(n, _)| n == SIGNATURE) else {
        return Err(BundleError::Unsigned);
    };
    if pos + 1 != entries.len() {
        return Err(BundleError::Malformed(format!(
            "`{SIGNATURE}` must be the last entry"
        )));
    }
    let Some((_, sig_bytes)) = entries.pop() else {
        return Err(BundleError::Unsigned);
    };
    // Order is not covered by the statement, so fix it: one byte layout per content.
    if entries
        .windows(2)
        .any(|w| w[0].0.as_bytes() >= w[1].0.as_bytes())
    {
        return Err(BundleError::Malformed(
            "entries are not in sorted order".into(),
        ));
    }
    let (sig_file, signature) = SignatureFile::parse(&sig_bytes)?;
    let (key, trusted_publisher) = match trust(&sig_file.key_id) {
        Trust::Unknown => return Err(BundleError::UnknownKey(sig_file.key_id)),
        Trust::Revoked => return Err(BundleError::RevokedKey(sig_file.key_id)),
        Trust::Trusted { key, publisher } => (key, publisher),
    };
    // A trust store that answers with a different key has no key for this id.
    if key.key_id() != sig_file.key_id {
        return Err(BundleError::UnknownKey(sig_file.key_id));
    }
    if trusted_publisher != sig_file.publisher {
        return Err(BundleError::PublisherMismatch {
            signed: sig_file.publisher,
            trusted: trusted_publisher.to_owned(),
        });
    }
    let st = statement(
        &sig_file.id,
        &sig_file.version,
        &sig_file.publisher,
        &sig_file.key_id,
        &entries,
    )
    .map_err(|e| BundleError::MalformedSignature(e.to_string()))?;
    key.verifying_key()
        .verify_strict(st.to_text().as_bytes(), &signature)
        .map_err(|_| BundleError::DigestMismatch)?;
    // After the signature check: a signed bundle missing these is still malformed,
    // but an unsigned change (e.g. a dropped file) reports as a digest mismatch.
    require(&entries)?;
    Ok(VerifiedBundle {
        digest: st.digest(),
        digests: st
            .files
            .iter()
            .map(|(name, digest, _)| (name.clone(), *digest))
            .collect(),
        id: sig_file.id,
        version: sig_file.version,
        publisher: sig_file.publisher,
        key_id: sig_file.key_id,
        files: entries.into_iter().collect(),
    })
}
