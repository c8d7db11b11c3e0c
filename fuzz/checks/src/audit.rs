//! airlock-audit's parsers: stored record lines and the chain they form.

use std::sync::OnceLock;

use airlock_audit::KeyChain;
use airlock_audit::record::{self, Envelope, GENESIS};
use airlock_audit::verify::verify;
use airlock_bundle::{PublicKey, SigningKey};
use airlock_host_api::audit::AuditEvent;

/// A stored line: a damaged or forged one is refused, never a panic. The bytes are also
/// sealed as a record body so the parser behind the hash check is reached: what opens seals
/// back to the same record, and a flipped byte of the sealed line is always refused.
pub fn record(data: &[u8]) {
    let _ = record::open(data);
    if data.last() != Some(&b'}') {
        return;
    }
    let (line, _) = record::seal_body(data.to_vec());
    let Ok(opened) = record::open(&line) else {
        return;
    };
    let (resealed, hash) = record::seal(&opened.envelope);
    assert_eq!(
        record::open(&resealed).expect("a sealed envelope opens"),
        record::Record {
            envelope: opened.envelope,
            hash
        }
    );
    let sum = data
        .iter()
        .fold(0usize, |sum, b| sum.wrapping_add(usize::from(*b)));
    let mut flipped = line.clone();
    flipped[sum % line.len()] ^= 0x20;
    assert!(record::open(&flipped).is_err(), "a flipped byte is refused");
}

/// Records in a chain, as the store keeps them: (sequence key, line).
const RECORDS: u64 = 5;

fn stored() -> &'static Vec<(u64, Vec<u8>)> {
    static STORED: OnceLock<Vec<(u64, Vec<u8>)>> = OnceLock::new();
    STORED.get_or_init(|| {
        let mut prev = GENESIS;
        (0..RECORDS)
            .map(|seq| {
                let (line, hash) = record::seal(&Envelope {
                    seq,
                    time: format!("2026-12-06T07:00:0{seq}.000Z"),
                    prev: hex::encode(prev),
                    security: true,
                    node: None,
                    event: AuditEvent::TrustRefused {
                        artifact: format!("bundle-{seq}.airlock"),
                        reason: "unsigned".into(),
                    },
                });
                prev = hash;
                (seq, line)
            })
            .collect()
    })
}

/// Chain verification, with a tamper the fuzzer picks (first six bytes: what, which records,
/// where, how), then any remaining bytes appended as one more stored line: every tamper is
/// found, and nothing panics. Dropping the newest records is a checkpoint's to find, not the
/// chain's, so it is not a tamper here.
pub fn chain(data: &[u8]) {
    let [what, i, j, lo, hi, mask, rest @ ..] = data else {
        return;
    };
    let mut lines = stored().clone();
    let (i, j) = (usize::from(*i) % lines.len(), usize::from(*j) % lines.len());
    let tampered = match what % 4 {
        0 if *mask != 0 => {
            let line = &mut lines[i].1;
            let at = usize::from(u16::from_le_bytes([*lo, *hi])) % line.len();
            line[at] ^= mask;
            true
        }
        1 => {
            lines.remove(i % (lines.len() - 1));
            true
        }
        2 if i != j => {
            let (a, b) = (lines[i].1.clone(), lines[j].1.clone());
            lines[i].1 = b;
            lines[j].1 = a;
            true
        }
        3 => {
            let copy = lines[i].1.clone();
            lines.push((RECORDS, copy));
            true
        }
        _ => false,
    };
    if !rest.is_empty() {
        let next = lines.len() as u64;
        lines.push((next, rest.to_vec()));
    }
    let key = PublicKey::from_verifying_key(SigningKey::from_bytes(&[9; 32]).verifying_key());
    let report = verify(&lines, &[], &KeyChain::single(key), 0);
    assert!(!tampered || !report.is_ok(), "a tampered chain verified");
}
