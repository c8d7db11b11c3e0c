//! The audit log's guarantees: records append-only, each written with its index entries or not
//! at all, read in sequence order; index reads by prefix and range; the chain id named once.
//! The bytes are arbitrary here: what they mean is `airlock-audit`'s.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{RACERS, Subject, race};
use crate::StoreError;
use crate::traits::{AuditAppend, AuditLog, IndexEntry};

/// An index key: `prefix` then `n` big-endian, as the trail makes its pointers.
fn key(prefix: &[u8], n: u64) -> Vec<u8> {
    [prefix, &n.to_be_bytes()].concat()
}

fn entry<'a>(key: &'a [u8], value: &'a [u8]) -> IndexEntry<'a> {
    (key, value)
}

/// Appends record `seq` alone.
fn append(
    log: &dyn AuditLog,
    seq: u64,
    line: &[u8],
    index: &[IndexEntry<'_>],
) -> Result<(), StoreError> {
    log.append_audit(&[AuditAppend { seq, line, index }])
}

fn line(seq: u64) -> Vec<u8> {
    format!("record {seq}").into_bytes()
}

/// The records from `first` on, as (seq, line).
fn records(log: &dyn AuditLog, first: u64) -> Vec<(u64, Vec<u8>)> {
    log.audit_records(first)
        .map(|row| row.map(|(seq, line)| (seq, line.to_vec())))
        .collect::<Result<_, _>>()
        .expect("records read")
}

/// The index entries under `prefix` from `from` on, as (key, value).
fn entries(log: &dyn AuditLog, prefix: &[u8], from: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    log.audit_index(prefix, from)
        .map(|row| row.map(|(key, value)| (key.to_vec(), value.to_vec())))
        .collect::<Result<_, _>>()
        .expect("index read")
}

pub fn audit_records_are_never_overwritten(subject: Subject) {
    let s = subject.storage;
    let first = key(b"p", 0);
    append(&*s, 0, b"first", &[entry(&first, b"")]).expect("appended");
    let stray = key(b"q", 0);
    let again = append(&*s, 0, b"second", &[entry(&stray, b"")]);
    assert!(matches!(again, Err(StoreError::Exists { .. })), "{again:?}");
    assert_eq!(
        s.audit_record(0).expect("read").as_deref(),
        Some(&b"first"[..])
    );
    // The refused write left nothing behind, not even its index entries.
    assert_eq!(s.audit_index_entry(&stray).expect("read"), None);
    assert!(s.audit_index_entry(&first).expect("read").is_some());
    append(&*s, 1, b"next", &[]).expect("the next number is free");
    s.flush_audit().expect("flushed");
    assert_eq!(records(&*s, 0).len(), 2);
}

pub fn records_appended_together_are_written_together_or_not_at_all(subject: Subject) {
    let s = subject.storage;
    let keys: Vec<Vec<u8>> = (0..4).map(|seq| key(b"p", seq)).collect();
    let lines: Vec<Vec<u8>> = (0..4).map(line).collect();
    let index: Vec<[IndexEntry<'_>; 1]> = keys.iter().map(|k| [entry(k, b"")]).collect();
    let group = |seqs: &[u64]| -> Vec<AuditAppend<'_>> {
        seqs.iter()
            .map(|&seq| AuditAppend {
                seq,
                line: &lines[seq as usize],
                index: &index[seq as usize],
            })
            .collect()
    };
    s.append_audit(&group(&[0, 1])).expect("appended");
    // Record 1 is taken: neither 2 nor 3 is written, nor any of their entries.
    let refused = s.append_audit(&group(&[2, 1, 3]));
    assert!(
        matches!(refused, Err(StoreError::Exists { .. })),
        "{refused:?}"
    );
    assert_eq!(records(&*s, 0), [(0, line(0)), (1, line(1))]);
    assert_eq!(s.audit_index_entry(&keys[2]).expect("read"), None);
    assert_eq!(s.audit_index_entry(&keys[3]).expect("read"), None);
    s.append_audit(&group(&[2, 3])).expect("appended");
    s.flush_audit().expect("flushed");
    assert_eq!(records(&*s, 0).len(), 4);
    assert_eq!(entries(&*s, b"p", b"p").len(), 4);
}

pub fn a_record_is_never_seen_without_its_index_entries(subject: Subject) {
    // One writer appends records with an entry each; readers look from both sides, and
    // neither may ever see one half of a write.
    const RECORDS: u64 = 400;
    let s = subject.storage;
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Stops the readers even if the writer panics.
            struct Done<'a>(&'a AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Release);
                }
            }
            let _done = Done(&done);
            for seq in 0..RECORDS {
                let pointer = key(b"p", seq);
                let covered = (seq + 1).to_be_bytes();
                let index = [entry(&pointer, b""), entry(b"n", &covered)];
                append(&*s, seq, &line(seq), &index).expect("appended");
            }
        });
        for _ in 0..RACERS.min(4) {
            scope.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    if let Some((seq, _)) = s.last_audit_record().expect("read") {
                        let entry = s.audit_index_entry(&key(b"p", seq)).expect("read");
                        assert!(entry.is_some(), "record {seq} without its index entry");
                    }
                    if let Some(covered) = s.audit_index_entry(b"n").expect("read") {
                        let covered = u64::from_be_bytes(covered[..].try_into().expect("u64"));
                        let record = s.audit_record(covered - 1).expect("read");
                        assert!(record.is_some(), "index entry {covered} without its record");
                    }
                }
            });
        }
    });
    assert_eq!(records(&*s, 0).len() as u64, RECORDS);
}

pub fn audit_records_are_read_in_sequence_order(subject: Subject) {
    let s = subject.storage;
    // Written out of order, across byte boundaries of the number: read back by number.
    let order: Vec<u64> = (0..300)
        .rev()
        .step_by(2)
        .chain((0..300).step_by(2))
        .collect();
    for &seq in &order {
        append(&*s, seq, &line(seq), &[]).expect("appended");
    }
    let all: Vec<(u64, Vec<u8>)> = (0..300).map(|seq| (seq, line(seq))).collect();
    assert_eq!(records(&*s, 0), all);
    assert_eq!(records(&*s, 255), all[255..]);
    assert!(records(&*s, 300).is_empty());
    let last = s.last_audit_record().expect("read").expect("a record");
    assert_eq!((last.0, last.1.to_vec()), (299, line(299)));
    assert_eq!(
        s.audit_record(256).expect("read").as_deref(),
        Some(&line(256)[..])
    );
    assert_eq!(s.audit_record(300).expect("read"), None);
}

pub fn an_empty_audit_log_reads_nothing(subject: Subject) {
    let s = subject.storage;
    assert_eq!(s.last_audit_record().expect("read"), None);
    assert!(records(&*s, 0).is_empty());
    assert!(entries(&*s, b"", b"").is_empty());
    assert_eq!(s.last_audit_index_entry(b"").expect("read"), None);
    assert_eq!(s.audit_checkpointed().expect("read"), 0);
    s.set_audit_checkpointed(1_000).expect("written");
    s.flush_audit().expect("flushed");
    assert_eq!(s.audit_checkpointed().expect("read"), 1_000);
}

pub fn the_checkpoint_count_is_never_lowered(subject: Subject) {
    let s = subject.storage;
    let counts: Vec<u64> = (1..=RACERS as u64).map(|n| n * 100).collect();
    race(|n| s.set_audit_checkpointed(counts[n]).expect("written"));
    let highest = RACERS as u64 * 100;
    assert_eq!(s.audit_checkpointed().expect("read"), highest);
    s.set_audit_checkpointed(50).expect("written");
    s.flush_audit().expect("flushed");
    assert_eq!(s.audit_checkpointed().expect("read"), highest);
}

pub fn the_chain_id_is_named_by_the_first_writer(subject: Subject) {
    let s = subject.storage;
    let candidates: Vec<String> = (0..RACERS).map(|n| format!("{n:032x}")).collect();
    let named = race(|n| s.audit_chain(&candidates[n]).expect("chain id"));
    assert!(candidates.contains(&named[0]), "{named:?}");
    assert!(named.iter().all(|id| *id == named[0]), "{named:?}");
    let later = s.audit_chain(&"f".repeat(32)).expect("chain id");
    assert_eq!(later, named[0]);
}

pub fn index_reads_keep_to_their_prefix_in_key_order(subject: Subject) {
    let s = subject.storage;
    let keys: Vec<Vec<u8>> = [b"a".as_slice(), b"ab", b"b"]
        .iter()
        .flat_map(|prefix| [300, 2, 1].map(|n| key(prefix, n)))
        .collect();
    let batch: Vec<IndexEntry<'_>> = keys.iter().map(|k| entry(k, &k[..1])).collect();
    s.put_audit_index(&batch).expect("indexed");
    let got = |prefix: &[u8], from: &[u8]| -> Vec<Vec<u8>> {
        let read = entries(&*s, prefix, from);
        for (key, value) in &read {
            assert_eq!(value[..], key[..1], "each entry keeps its value");
        }
        read.into_iter().map(|(key, _)| key).collect()
    };
    // By key, bytewise: `ab…` keys sort among `a`'s, and start with `a`.
    let mut under_a: Vec<Vec<u8>> = keys[..6].to_vec();
    under_a.sort();
    assert_eq!(got(b"a", b"a"), under_a);
    assert_eq!(
        got(b"ab", b""),
        [key(b"ab", 1), key(b"ab", 2), key(b"ab", 300)]
    );
    assert_eq!(got(b"b", &key(b"b", 2)), [key(b"b", 2), key(b"b", 300)]);
    assert_eq!(got(b"b", &key(b"b", 301)), Vec::<Vec<u8>>::new());
    assert_eq!(got(b"c", b"c"), Vec::<Vec<u8>>::new());
    let last = s
        .last_audit_index_entry(b"b")
        .expect("read")
        .expect("an entry");
    assert_eq!(last.0.to_vec(), key(b"b", 300));
    assert_eq!(s.last_audit_index_entry(b"c").expect("read"), None);
    assert_eq!(
        s.audit_index_entry(&key(b"ab", 2))
            .expect("read")
            .as_deref(),
        Some(&b"a"[..])
    );
    assert_eq!(s.audit_index_entry(&key(b"ab", 3)).expect("read"), None);
}
