//! The trusted publisher keys: listed as added, one publisher per key, revocations that stand,
//! a revision that shows every change, and one winner among concurrent adds of a key.

use airlock_runtime::bundle::{PublicKey, SigningKey};
use airlock_runtime::trust::{TrustError, TrustedKey};

use super::{RACERS, Subject, race};
use crate::Storage;

/// Publisher key `n` of the cases.
fn key(n: u8) -> PublicKey {
    PublicKey::from_verifying_key(SigningKey::from_bytes(&[n; 32]).verifying_key())
}

/// The key added (refusals fail the case).
fn added(s: &dyn Storage, key: &PublicKey, publisher: &str, now: u64) -> TrustedKey {
    s.add_trusted_key(key, publisher, now)
        .expect("add")
        .expect("trusted")
}

pub fn trusted_keys_are_listed_as_added(subject: Subject) {
    let s = &*subject.storage;
    assert!(s.trusted_keys().expect("list").is_empty());
    let (one, two) = (key(1), key(2));
    let first = added(s, &one, " Acme Integrations ", 100);
    assert_eq!(
        first,
        TrustedKey {
            key_id: one.key_id().to_string(),
            public_key: one.to_line(),
            publisher: "Acme Integrations".into(),
            added: 100,
            revoked: None,
        }
    );
    let second = added(s, &two, "Beta", 200);
    assert_eq!(s.trusted_keys().expect("list"), vec![first, second]);
    assert_eq!(
        s.add_trusted_key(&key(3), "  ", 300).expect("add"),
        Err(TrustError::EmptyPublisher)
    );
    assert_eq!(s.trusted_keys().expect("list").len(), 2);
}

pub fn a_stored_key_id_is_never_added_again(subject: Subject) {
    let s = &*subject.storage;
    let one = key(1);
    let first = added(s, &one, "Acme", 100);
    assert_eq!(
        s.add_trusted_key(&one, "Other", 200).expect("add"),
        Err(TrustError::AlreadyTrusted(one.key_id().to_string()))
    );
    assert_eq!(
        s.trusted_keys().expect("list"),
        vec![first],
        "one publisher per key"
    );
}

pub fn a_revoke_stands_and_a_revoked_key_never_comes_back(subject: Subject) {
    let s = &*subject.storage;
    let (one, two) = (key(1), key(2));
    assert_eq!(
        s.revoke_trusted_key(one.key_id(), 50).expect("revoke"),
        Err(TrustError::UnknownKey(one.key_id().to_string()))
    );
    added(s, &one, "Acme", 100);
    let kept = added(s, &two, "Beta", 100);
    let revoked = s
        .revoke_trusted_key(one.key_id(), 200)
        .expect("revoke")
        .expect("revoked");
    assert_eq!(
        (revoked.publisher.as_str(), revoked.revoked),
        ("Acme", Some(200))
    );
    let again = s
        .revoke_trusted_key(one.key_id(), 300)
        .expect("revoke")
        .expect("revoked");
    assert_eq!(again, revoked, "the first revocation stands");
    assert_eq!(
        s.add_trusted_key(&one, "Acme", 400).expect("add"),
        Err(TrustError::WasRevoked(one.key_id().to_string()))
    );
    assert_eq!(s.trusted_keys().expect("list"), vec![revoked, kept]);
}

pub fn the_trust_revision_changes_with_every_change(subject: Subject) {
    let s = &*subject.storage;
    let one = key(1);
    let empty = s.trust_revision().expect("revision");
    added(s, &one, "Acme", 100);
    let one_key = s.trust_revision().expect("revision");
    assert_ne!(one_key, empty, "an add shows");
    assert_eq!(
        s.trust_revision().expect("revision"),
        one_key,
        "stable while unchanged"
    );
    assert!(s.add_trusted_key(&one, "Acme", 100).expect("add").is_err());
    assert_eq!(
        s.trust_revision().expect("revision"),
        one_key,
        "a refusal changes nothing"
    );
    // A revocation time as long as `null`, so a revision taken from sizes alone misses it.
    s.revoke_trusted_key(one.key_id(), 1000)
        .expect("revoke")
        .expect("revoked");
    let revoked = s.trust_revision().expect("revision");
    assert!(![empty, one_key].contains(&revoked), "a revoke shows");
}

pub fn a_key_is_added_by_exactly_one_of_concurrent_callers(subject: Subject) {
    let s = &*subject.storage;
    let one = key(1);
    let outcomes = race(|n| {
        s.add_trusted_key(&one, &format!("publisher-{n}"), 100)
            .expect("add")
    });
    let won: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    let refused = TrustError::AlreadyTrusted(one.key_id().to_string());
    assert!(
        outcomes
            .iter()
            .all(|o| o.is_ok() || o == &Err(refused.clone()))
    );
    assert_eq!(s.trusted_keys().expect("list"), vec![won[0].clone()]);
}

pub fn concurrent_adds_of_different_keys_are_all_kept(subject: Subject) {
    let s = &*subject.storage;
    let keys: Vec<_> = (1..=RACERS as u8).map(key).collect();
    race(|n| added(s, &keys[n], "Acme", 100));
    let mut stored: Vec<_> = s
        .trusted_keys()
        .expect("list")
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    let mut expected: Vec<_> = keys.iter().map(|k| k.key_id().to_string()).collect();
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected);
}
