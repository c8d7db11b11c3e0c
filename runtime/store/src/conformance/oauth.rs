//! OAuth connections and the consents that make them.

use airlock_host_api::credentials::{ConnectionTokens, CredentialType, Secret};
use airlock_runtime::ids::UserId;

use super::{Subject, installation, tenant};
use crate::records::{ConnectionKey, ConnectionStatus, PendingConsent, TakenState};

/// Tokens as a consent or a refresh produces them.
pub fn tokens(access: &str) -> ConnectionTokens {
    ConnectionTokens {
        access: Some(Secret::new(CredentialType::Bearer, access.into()).expect("token")),
        expires_at: Some(10_000),
        refresh: Some(format!("refresh-{access}").into()),
        scopes: vec!["read".into()],
        token_origin: Some("https://auth.example.com:443".into()),
        ..ConnectionTokens::default()
    }
}

/// A consent of `acme`'s `crm` for `user`, valid until `expires`.
pub fn consent(user: Option<&str>, expires: u64) -> PendingConsent {
    PendingConsent {
        tenant: "acme".into(),
        installation: "crm".into(),
        credential: "crm-oauth".into(),
        user: user.map(str::to_string),
        scopes: vec!["read".into()],
        redirect_uri: "https://airlock.example.com/v1/oauth/callback".into(),
        expires,
    }
}

fn access(tokens: &ConnectionTokens) -> Option<&str> {
    tokens.access.as_ref().map(Secret::expose)
}

pub fn connections_round_trip_and_replace_only_the_revision_read(subject: Subject) {
    let s = subject.storage;
    let (acme, crm) = (tenant("acme"), installation("crm"));
    s.create_tenant(&acme).expect("tenant");
    let ada: UserId = "ada@example.com".parse().expect("user");
    let key = ConnectionKey {
        tenant: &acme,
        installation: &crm,
        credential: "crm-oauth",
        user: Some(&ada),
    };
    let shared = ConnectionKey { user: None, ..key };
    assert!(s.connection(key).expect("get").is_none());
    s.put_connection(key, &tokens("a1"), 100).expect("put");
    s.put_connection(shared, &tokens("t1"), 100).expect("put");
    let read = s.connection(key).expect("get").expect("stored");
    assert_eq!(access(&read), Some("a1"));
    assert_eq!(
        read.refresh.as_deref().map(String::as_str),
        Some("refresh-a1")
    );
    assert!(
        s.replace_connection(key, read.revision, &tokens("a2"), 200)
            .expect("replace")
    );
    assert!(
        !s.replace_connection(key, read.revision, &tokens("stale"), 300)
            .expect("replace"),
        "a revision already replaced is not written over"
    );
    let now = s.connection(key).expect("get").expect("stored");
    assert_eq!(access(&now), Some("a2"));
    assert!(
        !s.mark_needs_reconsent(key, read.revision, 300)
            .expect("mark"),
        "an old revision's refusal does not mark the new tokens"
    );
    assert!(
        s.mark_needs_reconsent(key, now.revision, 300)
            .expect("mark")
    );
    let listed = s.connections_of(&acme, &crm).expect("list");
    assert_eq!(listed.len(), 2);
    let ada_ref = s.user_ref(&acme, &ada).expect("reference");
    let ada_info = listed
        .iter()
        .find(|c| c.user_ref.as_deref() == Some(ada_ref.as_str()))
        .expect("listed under the user's reference");
    assert_eq!(ada_info.status, ConnectionStatus::NeedsReconsent);
    assert!(s.delete_connection(key).expect("delete"));
    assert!(!s.delete_connection(key).expect("again"));
    assert!(
        !s.replace_connection(key, now.revision, &tokens("late"), 400)
            .expect("replace"),
        "a refresh in flight never brings a removed connection back"
    );
    assert!(s.connection(key).expect("get").is_none());
    assert!(
        s.connection(shared).expect("get").is_some(),
        "the other stays"
    );
}

pub fn consents_are_taken_once_by_the_browser_that_started_them(subject: Subject) {
    let s = subject.storage;
    let (acme, crm) = (tenant("acme"), installation("crm"));
    s.create_tenant(&acme).expect("tenant");
    let ada: UserId = "ada@example.com".parse().expect("user");
    let key = ConnectionKey {
        tenant: &acme,
        installation: &crm,
        credential: "crm-oauth",
        user: Some(&ada),
    };
    s.begin_consent(
        key,
        consent(Some("ada@example.com"), 700),
        "state-1",
        "verifier-1",
        "nonce-1",
    )
    .expect("begin");
    s.begin_consent(
        key,
        consent(Some("ada@example.com"), 700),
        "state-2",
        "verifier-2",
        "nonce-2",
    )
    .expect("begin");
    s.begin_consent(key, consent(None, 150), "state-3", "verifier-3", "nonce-3")
        .expect("begin");
    match s
        .take_consent("state-1", Some("nonce-1"), 200)
        .expect("take")
    {
        TakenState::Valid(taken, verifier) => {
            assert_eq!(
                taken,
                consent(Some("ada@example.com"), 700),
                "whole, user opened"
            );
            assert_eq!(verifier.as_str(), "verifier-1");
        }
        _ => panic!("the consent under way was not found valid"),
    }
    assert!(matches!(
        s.take_consent("state-1", Some("nonce-1"), 200)
            .expect("again"),
        TakenState::Unknown
    ));
    assert!(matches!(
        s.take_consent("state-2", Some("nonce-1"), 200)
            .expect("take"),
        TakenState::OtherBrowser(_)
    ));
    assert!(
        matches!(
            s.take_consent("state-2", Some("nonce-2"), 200)
                .expect("take"),
            TakenState::Unknown
        ),
        "a refused take still used the state up"
    );
    assert!(matches!(
        s.take_consent("state-3", Some("nonce-3"), 200)
            .expect("take"),
        TakenState::Expired(_)
    ));
    assert!(matches!(
        s.take_consent("never-issued", None, 200).expect("take"),
        TakenState::Unknown
    ));
}

pub fn offered_consents_are_taken_once_and_expired_ones_purged(subject: Subject) {
    let s = subject.storage;
    s.create_tenant(&tenant("acme")).expect("tenant");
    s.offer_consent("start-1", &consent(Some("ada@example.com"), 700))
        .expect("offer");
    s.offer_consent("start-2", &consent(None, 150))
        .expect("offer");
    assert_eq!(
        s.take_offered_consent("start-1").expect("take"),
        Some(consent(Some("ada@example.com"), 700))
    );
    assert_eq!(s.take_offered_consent("start-1").expect("again"), None);
    assert_eq!(s.purge_consents(200).expect("purge"), 1, "start-2 expired");
    assert_eq!(s.take_offered_consent("start-2").expect("take"), None);
}

pub fn an_installations_consents_are_deleted_and_no_one_elses(subject: Subject) {
    let s = subject.storage;
    let (acme, crm, erp) = (tenant("acme"), installation("crm"), installation("erp"));
    s.create_tenant(&acme).expect("tenant");
    let for_erp = PendingConsent {
        installation: "erp".into(),
        ..consent(None, 700)
    };
    s.offer_consent("start-crm", &consent(None, 700))
        .expect("offer");
    s.offer_consent("start-erp", &for_erp).expect("offer");
    let key = ConnectionKey {
        tenant: &acme,
        installation: &crm,
        credential: "crm-oauth",
        user: None,
    };
    s.begin_consent(key, consent(None, 700), "state-crm", "verifier", "nonce")
        .expect("begin");
    assert_eq!(s.delete_consents(&acme, &crm).expect("delete"), 2);
    assert_eq!(s.take_offered_consent("start-crm").expect("take"), None);
    assert!(matches!(
        s.take_consent("state-crm", Some("nonce"), 200)
            .expect("take"),
        TakenState::Unknown
    ));
    assert_eq!(
        s.take_offered_consent("start-erp").expect("take"),
        Some(for_erp),
        "another installation's consent stays"
    );
    assert_eq!(s.delete_consents(&acme, &erp).expect("delete"), 0);
}
