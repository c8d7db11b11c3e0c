//! One record of the chain, as stored and exported: a single line of compact JSON.
//!
//! A record is the JSON body `{"seq":…,"time":…,"prev":…,"security":…,"type":…,…}` with
//! `,"hash":"<hex>"}` in place of its closing brace, where `hash` is SHA-256 of the body bytes
//! and `prev` is the previous record's hash (64 zeros for the first). A flipped byte breaks the
//! record's own hash; a deleted, reordered or inserted record breaks the sequence or the link.
//! serde_json escapes every control character, so no value can split a line (CWE-117).

use airlock_host_api::audit::AuditEvent;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The `prev` of the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// The stored form of one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub seq: u64,
    /// UTC, RFC 3339 with milliseconds.
    pub time: String,
    /// Hex SHA-256 of the previous record's body.
    pub prev: String,
    pub security: bool,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// A record checked against its own hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub envelope: Envelope,
    pub hash: [u8; 32],
}

/// Why a stored line is not a well-formed record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the line does not end in a hash field")]
    NoHash,
    #[error("the hash does not match the record's contents (the record was altered)")]
    HashMismatch,
    #[error("the record is not valid JSON of a known event: {0}")]
    Body(String),
}

const HASH_PREFIX: &[u8] = b",\"hash\":\"";
const HASH_SUFFIX: &[u8] = b"\"}";
const HASH_FIELD_LEN: usize = HASH_PREFIX.len() + 64 + HASH_SUFFIX.len();

/// Serializes `envelope` into its line and returns the line with the record's hash.
pub fn seal(envelope: &Envelope) -> (Vec<u8>, [u8; 32]) {
    let mut line =
        serde_json::to_vec(envelope).expect("audit envelopes are plain data and always serialize");
    let hash: [u8; 32] = Sha256::digest(&line).into();
    line.pop(); // the body's closing brace
    line.extend_from_slice(HASH_PREFIX);
    line.extend_from_slice(hex::encode(hash).as_bytes());
    line.extend_from_slice(HASH_SUFFIX);
    (line, hash)
}

/// Splits a stored line into its body without the closing brace, and its hash field's hex.
fn split(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let start = line.len().checked_sub(HASH_FIELD_LEN).filter(|s| *s >= 2)?;
    let (head, field) = line.split_at(start);
    let hex_hash = field.strip_prefix(HASH_PREFIX)?.strip_suffix(HASH_SUFFIX)?;
    Some((head, hex_hash))
}

/// The hash a stored line carries, checked or not (the next record links to it even when this
/// one is damaged); `None` when the line has no hash field.
pub fn carried_hash(line: &[u8]) -> Option<[u8; 32]> {
    let (_, hex_hash) = split(line)?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut hash).ok()?;
    Some(hash)
}

/// Parses a stored line, checking it against its own hash before trusting any field.
pub fn open(line: &[u8]) -> Result<Record, RecordError> {
    let (head, hex_hash) = split(line).ok_or(RecordError::NoHash)?;
    let mut body = Vec::with_capacity(head.len() + 1);
    body.extend_from_slice(head);
    body.push(b'}');
    let hash: [u8; 32] = Sha256::digest(&body).into();
    // Compared as text: an upper-cased hex digit is a changed byte too.
    if hex_hash != hex::encode(hash).as_bytes() {
        return Err(RecordError::HashMismatch);
    }
    let envelope = serde_json::from_slice(&body).map_err(|e| RecordError::Body(e.to_string()))?;
    Ok(Record { envelope, hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(artifact: &str) -> Envelope {
        Envelope {
            seq: 3,
            time: "2026-11-29T12:00:00.000Z".into(),
            prev: hex::encode(GENESIS),
            security: true,
            event: AuditEvent::TrustRefused {
                artifact: artifact.into(),
                reason: "unsigned".into(),
            },
        }
    }

    #[test]
    fn a_sealed_line_opens_to_the_same_envelope() {
        let (line, hash) = seal(&envelope("a.airlock"));
        let record = open(&line).expect("a sealed record opens");
        assert_eq!(record.envelope, envelope("a.airlock"));
        assert_eq!(record.hash, hash);
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let (line, _) = seal(&envelope("a.airlock"));
        for i in 0..line.len() {
            let mut bad = line.clone();
            bad[i] ^= 0x01;
            assert!(open(&bad).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn control_characters_cannot_split_a_line() {
        let (line, _) = seal(&envelope("x\r\n{\"type\":\"fake\"}\u{1b}[2J"));
        assert!(
            !line.iter().any(|b| *b < 0x20),
            "raw control byte in a line"
        );
        let record = open(&line).expect("a sealed record opens");
        assert_eq!(
            record.envelope,
            envelope("x\r\n{\"type\":\"fake\"}\u{1b}[2J")
        );
    }
}
