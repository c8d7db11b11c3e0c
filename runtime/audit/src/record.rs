//! One record of the chain, as stored and exported: a single line of compact JSON.
//!
//! A record is the JSON body `{"seq":…,"time":…,"prev":…,"security":…,"node":…,"type":…,…}`
//! with `,"hash":"<hex>"}` in place of its closing brace, where `hash` is SHA-256 of the body
//! bytes and `prev` is the previous record's hash (64 zeros for the first). A flipped byte
//! breaks the record's own hash; a deleted, reordered or inserted record breaks the sequence or
//! the link. serde_json escapes every control character, so no value can split a line
//! (CWE-117). `node` is absent from records written before trails named their writer: absent,
//! it is not serialized, so those lines are still the bytes their hash covers.

use airlock_host_api::audit::AuditEvent;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::node::Node;

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
    /// The node that wrote the record; `None` in records older than the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Node>,
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
    seal_body(
        serde_json::to_vec(envelope).expect("audit envelopes are plain data and always serialize"),
    )
}

/// Seals a record body (compact JSON ending in `}`) into its stored line, hash included; the
/// body is taken as it is (the fuzz targets seal bodies no envelope would serialize to).
pub fn seal_body(mut line: Vec<u8>) -> (Vec<u8>, [u8; 32]) {
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

/// The node a line names, read without checking its hash (for saying where a damaged chain
/// breaks); `None` when the line is not JSON with a valid node name.
pub fn claimed_node(line: &[u8]) -> Option<Node> {
    #[derive(Deserialize)]
    struct Claim {
        node: Option<Node>,
    }
    let body = match split(line) {
        Some((head, _)) => [head, b"}"].concat(),
        None => line.to_vec(),
    };
    serde_json::from_slice::<Claim>(&body).ok()?.node
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
            node: Some("node-1".parse().expect("a valid name")),
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
    fn a_line_written_before_the_node_field_verifies_and_reseals_byte_for_byte() {
        const OLD: &str = concat!(
            r#"{"seq":3,"time":"2026-11-29T12:00:00.000Z","prev":"#,
            r#""0000000000000000000000000000000000000000000000000000000000000000","#,
            r#""security":true,"type":"trust-refused","artifact":"a.airlock","reason":"unsigned","#,
            r#""hash":"bc6d442723be889d0d62479b77ec3b45d66cac7138ce3195667fa96a31a75ec5"}"#
        );
        let record = open(OLD.as_bytes()).expect("an old record opens");
        assert_eq!(
            record.envelope,
            Envelope {
                node: None,
                ..envelope("a.airlock")
            }
        );
        assert_eq!(seal(&record.envelope).0, OLD.as_bytes());
        assert_eq!(claimed_node(OLD.as_bytes()), None);
    }

    #[test]
    fn a_damaged_line_still_names_its_node_if_it_parses() {
        let (line, _) = seal(&envelope("a.airlock"));
        let damaged = String::from_utf8(line)
            .expect("UTF-8")
            .replace("a.airlock", "b.airlock");
        assert!(open(damaged.as_bytes()).is_err());
        assert_eq!(
            claimed_node(damaged.as_bytes()).map(|n| n.to_string()),
            Some("node-1".into())
        );
        let bad_name = damaged.replace("node-1", "Node\\n1");
        assert_eq!(claimed_node(bad_name.as_bytes()), None);
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
