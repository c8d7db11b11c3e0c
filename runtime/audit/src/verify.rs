//! `airlock audit verify`: walks the chain and checks it against the signed checkpoints.
//!
//! The report names the first broken record: for a flipped byte, a deleted, reordered or
//! inserted record, that is the record where the tampering happened (AL-04). A chain rewritten
//! from some record on verifies link by link; the first signed checkpoint past the rewrite
//! does not match it. A chain cut short is shorter than the count a checkpoint signed.

use std::collections::BTreeMap;

use super::checkpoint::Checkpoint;
use super::record::{self, GENESIS};
use airlock_bundle::keys::PublicKey;

/// Where the chain first breaks, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub seq: u64,
    pub reason: String,
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Records that chain correctly from the first.
    pub verified: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: usize,
    /// Records covered by the newest verified checkpoint.
    pub covered: u64,
    pub broken: Option<Break>,
    /// Problems with the anchors themselves (bad signatures, unreadable lines).
    pub anchor_problems: Vec<String>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.broken.is_none() && self.anchor_problems.is_empty()
    }
}

/// Verifies `lines` (sequence key and stored line, in key order) against `checkpoints`, which
/// must be signed by `key`. `checkpointed` is how many records the database says checkpoints
/// were written for: a checkpoint file missing those is itself tampering.
pub fn verify(
    lines: impl IntoIterator<Item = (u64, Vec<u8>)>,
    checkpoints: &[Result<Checkpoint, usize>],
    key: &PublicKey,
    checkpointed: u64,
) -> Report {
    let mut anchor_problems = Vec::new();
    let mut signed: BTreeMap<u64, &Checkpoint> = BTreeMap::new();
    for (i, checkpoint) in checkpoints.iter().enumerate() {
        match checkpoint {
            Err(line) => anchor_problems.push(format!("checkpoint line {line} is unreadable")),
            Ok(c) if !c.is_signed_by(key) => anchor_problems.push(format!(
                "checkpoint {} (count {}) is not signed by key {}: forged or altered",
                i + 1,
                c.count,
                key.key_id()
            )),
            Ok(c) => {
                signed.insert(c.count, c);
            }
        }
    }
    let covered = signed.keys().next_back().copied().unwrap_or(0);
    if covered < checkpointed {
        anchor_problems.push(format!(
            "the database says checkpoints cover {checkpointed} records, but the newest signed \
             checkpoint covers {covered}: checkpoints were removed"
        ));
    }

    let (verified, mut broken, heads) = walk(lines, &signed);
    if broken.is_none() {
        broken = check_anchors(verified, &signed, &heads);
    }
    Report {
        verified,
        checkpoints: signed.len(),
        covered,
        broken,
        anchor_problems,
    }
}

/// Follows the chain from the first record; returns how many records chain, the first break,
/// and the hashes at the positions checkpoints sign.
fn walk(
    lines: impl IntoIterator<Item = (u64, Vec<u8>)>,
    signed: &BTreeMap<u64, &Checkpoint>,
) -> (u64, Option<Break>, BTreeMap<u64, [u8; 32]>) {
    let mut heads = BTreeMap::new();
    let mut prev = GENESIS;
    let mut expected = 0u64;
    let broken = |seq, reason: String| Some(Break { seq, reason });
    for (key, line) in lines {
        if key != expected {
            let reason = if key > expected {
                format!("record {expected} is missing (deleted)")
            } else {
                format!("record {key} appears out of order")
            };
            return (expected, broken(expected.min(key), reason), heads);
        }
        let record = match record::open(&line) {
            Ok(record) => record,
            Err(e) => return (expected, broken(expected, e.to_string()), heads),
        };
        let seq = record.envelope.seq;
        if seq != expected {
            // A record carrying a lower number than its place means records were inserted
            // from that number on; a higher one means it was moved or one was deleted.
            let reason = format!(
                "position {expected} holds record {seq}: records were inserted, deleted or \
                 reordered"
            );
            return (expected, broken(expected.min(seq), reason), heads);
        }
        if record.envelope.prev != hex::encode(prev) {
            let reason = "it does not link to the record before it (inserted or replaced)";
            return (expected, broken(expected, reason.to_string()), heads);
        }
        prev = record.hash;
        expected += 1;
        if signed.contains_key(&expected) {
            heads.insert(expected, prev);
        }
    }
    (expected, None, heads)
}

/// Checks a chain that links end to end against what the checkpoints signed.
fn check_anchors(
    count: u64,
    signed: &BTreeMap<u64, &Checkpoint>,
    heads: &BTreeMap<u64, [u8; 32]>,
) -> Option<Break> {
    let mut previous = 0;
    for (&covered, checkpoint) in signed {
        if covered > count {
            return Some(Break {
                seq: count,
                reason: format!(
                    "the trail ends after {count} records, but a signed checkpoint covers \
                     {covered}: records were cut from the end"
                ),
            });
        }
        let matches = heads
            .get(&covered)
            .is_some_and(|head| hex::encode(head) == checkpoint.head);
        if !matches {
            return Some(Break {
                seq: previous,
                reason: format!(
                    "records {previous}..{} do not match the checkpoint signed at {}: the chain \
                     was rewritten",
                    covered - 1,
                    checkpoint.time
                ),
            });
        }
        previous = covered;
    }
    None
}
