//! `airlock audit verify`: walks the chain and checks it against the signed checkpoints.
//!
//! The report names the first broken record: for a flipped byte, a deleted, reordered or
//! inserted record, that is the record where the tampering happened (AL-04). A chain rewritten
//! from some record on verifies link by link; the first signed checkpoint past the rewrite
//! does not match it. A chain cut short is shorter than the count a checkpoint signed.
//!
//! The report also names the node that wrote the broken record, as that record says if it
//! still parses, else as the record before it says (docs/audit.md, "Many nodes"). Checkpoints
//! may come from several nodes, in any order in the file: each is checked on its own.

use std::collections::BTreeMap;
use std::fmt;

use super::checkpoint::Checkpoint;
use super::keychain::KeyChain;
use super::node::Node;
use super::record::{self, GENESIS};

/// Where the chain first breaks, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub seq: u64,
    pub reason: String,
    /// Which node wrote the record there, as far as the stored lines tell.
    pub writer: Option<Writer>,
}

/// The node behind a break. Neither is proof (the chain is broken there): it tells the operator
/// which node's logs and disks to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// Named by the record at the break, which still parses (its hash may not match).
    Record(Node),
    /// The record at the break names none that can be read (missing, unparsable, or older than
    /// node names); the record before it names this one.
    Previous(Node),
}

/// `record N, written by node X` or `record N (…; record N-1 before it was written by node X)`.
impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = self.seq;
        match &self.writer {
            Some(Writer::Record(node)) => write!(f, "record {seq}, written by node {node}")?,
            Some(Writer::Previous(node)) => write!(
                f,
                "record {seq} (no node can be read there; record {} before it was written by \
                 node {node})",
                seq.saturating_sub(1)
            )?,
            None => write!(f, "record {seq}")?,
        }
        write!(f, ": {}", self.reason)
    }
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
/// must be signed by a key of `keys` (while it was not retired). `checkpointed` is how many records the database says checkpoints
/// were written for: a checkpoint file missing those is itself tampering.
pub fn verify(
    lines: &[(u64, Vec<u8>)],
    checkpoints: &[Result<Checkpoint, usize>],
    keys: &KeyChain,
    checkpointed: u64,
) -> Report {
    let mut anchor_problems = keys.problems.clone();
    let mut signed: BTreeMap<u64, &Checkpoint> = BTreeMap::new();
    for (i, checkpoint) in checkpoints.iter().enumerate() {
        match checkpoint {
            Err(line) => anchor_problems.push(format!("checkpoint line {line} is unreadable")),
            Ok(c) if !keys.signed(c) => anchor_problems.push(format!(
                "checkpoint {} (count {}) is not signed by the audit key (key {}, or one it \
                 was rotated from while it was current): forged or altered",
                i + 1,
                c.count,
                keys.newest()
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

    let (verified, mut broken, heads) = walk(lines, &signed, 0, GENESIS);
    if broken.is_none() {
        broken = check_anchors(verified, &signed, &heads);
    }
    if let Some(broken) = &mut broken {
        broken.writer = writer(lines, broken.seq);
    }
    Report {
        verified,
        checkpoints: signed.len(),
        covered,
        broken,
        anchor_problems,
    }
}

/// The checkpoints a restore set aside: signed after the backup was taken, over records the
/// original wrote after it, which the backup does not hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Later {
    pub checkpoints: usize,
    /// The most records one of them covers.
    pub newest: u64,
}

/// [`verify`] for a trail restored from a backup whose seal verified ([`crate::seal`]): the
/// seal says the backup ends where `lines` end, so the checkpoints covering more were signed
/// after it and are set aside (and counted); against the rest, the trail must hold exactly as
/// [`verify`] demands of any.
pub fn verify_restored(
    lines: &[(u64, Vec<u8>)],
    checkpoints: &[Result<Checkpoint, usize>],
    keys: &KeyChain,
    checkpointed: u64,
) -> (Report, Later) {
    let ends = lines.len() as u64;
    let mut later = Later::default();
    let earlier: Vec<Result<Checkpoint, usize>> = checkpoints
        .iter()
        .filter(|checkpoint| match checkpoint {
            Ok(c) if c.count > ends && keys.signed(c) => {
                later.checkpoints += 1;
                later.newest = later.newest.max(c.count);
                false
            }
            _ => true,
        })
        .cloned()
        .collect();
    (verify(lines, &earlier, keys, checkpointed), later)
}

/// What `airlock serve` checks before it takes a request (docs/deploy.md, "A damaged store"):
/// the chain holds the `count` records the newest checkpoint signed, the last of them hashes to
/// the `head` it signed (hex), and every record after it (`lines`, from record `count - 1` on,
/// in key order) opens and links to the one before. A database cut short or damaged since that
/// checkpoint is found in time proportional to what was written since; `audit verify` checks
/// everything.
pub fn verify_since(count: u64, head: &str, lines: &[(u64, Vec<u8>)]) -> Option<Break> {
    let at = |seq, reason: String| {
        Some(Break {
            seq,
            reason,
            writer: None,
        })
    };
    let broken = match count.checked_sub(1) {
        None => walk(lines, &BTreeMap::new(), 0, GENESIS).1,
        Some(anchor) => match lines.first() {
            Some((seq, line)) if *seq == anchor => match record::open(line) {
                Ok(record) if hex::encode(record.hash) == head => {
                    walk(&lines[1..], &BTreeMap::new(), count, record.hash).1
                }
                Ok(_) => at(
                    anchor,
                    format!(
                        "it does not hash to the head the checkpoint over {count} records \
                         signed: the chain was rewritten"
                    ),
                ),
                Err(e) => at(anchor, e.to_string()),
            },
            _ => at(
                anchor,
                format!(
                    "the trail ends before record {anchor}, but a signed checkpoint covers \
                     {count} records: records were cut from the end"
                ),
            ),
        },
    };
    broken.map(|mut broken| {
        broken.writer = writer(lines, broken.seq);
        broken
    })
}

/// Follows the chain from record `first`, which must link to `prev`; returns how many records
/// chain, the first break, and the hashes at the positions checkpoints sign.
fn walk(
    lines: &[(u64, Vec<u8>)],
    signed: &BTreeMap<u64, &Checkpoint>,
    first: u64,
    prev: [u8; 32],
) -> (u64, Option<Break>, BTreeMap<u64, [u8; 32]>) {
    let mut heads = BTreeMap::new();
    let mut prev = prev;
    let mut expected = first;
    let broken = |seq, reason: String| {
        Some(Break {
            seq,
            reason,
            writer: None,
        })
    };
    for &(key, ref line) in lines {
        if key != expected {
            let reason = if key > expected {
                format!("record {expected} is missing (deleted)")
            } else {
                format!("record {key} appears out of order")
            };
            return (expected, broken(expected.min(key), reason), heads);
        }
        let record = match record::open(line) {
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
                writer: None,
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
                writer: None,
            });
        }
        previous = covered;
    }
    None
}

/// The node behind the break at `seq`: the one the line stored there names, else the one the
/// line before it names.
fn writer(lines: &[(u64, Vec<u8>)], seq: u64) -> Option<Writer> {
    let named = |seq| {
        lines
            .iter()
            .find(|(key, _)| *key == seq)
            .and_then(|(_, line)| record::claimed_node(line))
    };
    named(seq)
        .map(Writer::Record)
        .or_else(|| seq.checked_sub(1).and_then(named).map(Writer::Previous))
}
