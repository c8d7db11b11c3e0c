//! The guarantees under concurrent callers: first writer wins, compare-and-set, and the kv
//! quota checked in the same transaction as the write.

use airlock_host_api::kv::{KvFailure, KvQuota};
use airlock_policy::apikey::{KeyRefusal, Scope, generate};
use airlock_policy::webhook::{Scheme, WebhookSecret};
use airlock_runtime::ids::EndpointId;

use super::oauth::{consent, tokens};
use super::{RACERS, Subject, installation, race, tenant};
use crate::records::NewEndpoint;
use crate::records::{ConnectionKey, TakenState};

fn winners(results: &[bool]) -> usize {
    results.iter().filter(|won| **won).count()
}

pub fn a_delivery_id_is_first_for_exactly_one_caller(subject: Subject) {
    let s = subject.storage;
    let (acme, crm) = (tenant("acme"), installation("crm"));
    s.create_tenant(&acme).expect("tenant");
    let id = EndpointId::generate();
    let secret = WebhookSecret::for_scheme(Scheme::Github, None).expect("secret");
    let new = NewEndpoint {
        id: &id,
        tenant: &acme,
        installation: &crm,
        action: "sync",
        scheme: Scheme::Github,
    };
    s.create_webhook(new, &secret, 100).expect("create");
    let firsts = race(|_| {
        s.first_delivery(&id, "delivery-1", 600, 100)
            .expect("first")
    });
    assert_eq!(winners(&firsts), 1, "one run per delivery: {firsts:?}");
}

pub fn an_offered_consent_is_taken_by_exactly_one_caller(subject: Subject) {
    let s = subject.storage;
    s.create_tenant(&tenant("acme")).expect("tenant");
    s.offer_consent("start-1", &consent(None, 700))
        .expect("offer");
    let taken = race(|_| s.take_offered_consent("start-1").expect("take").is_some());
    assert_eq!(winners(&taken), 1, "{taken:?}");
}

pub fn a_consent_state_is_taken_by_exactly_one_caller(subject: Subject) {
    let s = subject.storage;
    let (acme, crm) = (tenant("acme"), installation("crm"));
    s.create_tenant(&acme).expect("tenant");
    let key = ConnectionKey {
        tenant: &acme,
        installation: &crm,
        credential: "crm-oauth",
        user: None,
    };
    s.begin_consent(key, consent(None, 700), "state-1", "verifier", "nonce")
        .expect("begin");
    let valid = race(|_| {
        matches!(
            s.take_consent("state-1", Some("nonce"), 200).expect("take"),
            TakenState::Valid(..)
        )
    });
    assert_eq!(winners(&valid), 1, "a state works once: {valid:?}");
}

pub fn a_connection_revision_is_replaced_at_most_once(subject: Subject) {
    let s = subject.storage;
    let (acme, crm) = (tenant("acme"), installation("crm"));
    s.create_tenant(&acme).expect("tenant");
    let key = ConnectionKey {
        tenant: &acme,
        installation: &crm,
        credential: "crm-oauth",
        user: None,
    };
    s.put_connection(key, &tokens("a1"), 100).expect("put");
    let read = s.connection(key).expect("get").expect("stored");
    let replaced = race(|n| {
        s.replace_connection(key, read.revision, &tokens(&format!("r{n}")), 200)
            .expect("replace")
    });
    assert_eq!(winners(&replaced), 1, "{replaced:?}");
}

pub fn a_use_in_flight_never_undoes_a_revoke(subject: Subject) {
    let s = subject.storage;
    let new = generate(Some("acme".into()), vec![Scope::Invoke], 0, None);
    s.put_api_key(&new.record).expect("put");
    race(|n| {
        if n == 0 {
            std::thread::yield_now();
            assert!(s.revoke_api_key(&new.record.id, 5).expect("revoke"));
        } else {
            // Each use a minute apart, so each one writes `last_used`.
            for minute in 1..40 {
                let _ = s.authenticate(&new.key, minute * 60).expect("check");
            }
        }
    });
    let stored = s.api_key(&new.record.id).expect("get").expect("kept");
    assert_eq!(stored.revoked, Some(5), "the revoke stands");
    assert_eq!(
        s.authenticate(&new.key, 10_000).expect("check"),
        Err(KeyRefusal::Revoked)
    );
}

pub fn concurrent_kv_writers_never_pass_the_quota_together(subject: Subject) {
    let s = subject.storage;
    let (acme, crm) = (tenant("acme"), installation("crm"));
    s.create_tenant(&acme).expect("tenant");
    let quota = KvQuota {
        max_bytes: 1 << 20,
        max_keys: 3,
        max_value_bytes: 1 << 10,
    };
    let kv = s.kv(&acme, &crm);
    let written = race(|n| match kv.set(&format!("key-{n}"), b"value", &quota) {
        Ok(()) => true,
        Err(KvFailure::Quota(_)) => false,
        Err(other) => panic!("unexpected kv failure: {other}"),
    });
    assert_eq!(winners(&written), 3, "{written:?}");
    assert_eq!(s.kv_usage(&acme, &crm).expect("usage").keys, 3);
    assert_eq!(written.len(), RACERS);
}
