//! Connections and consents against a real store in a temp dir.

use super::consents::*;
use super::*;
use crate::testing::{holds, raw_bytes};

/// Where `key`'s connection is filed.
fn id(store: &Store, key: ConnectionKey<'_>) -> Vec<u8> {
    key.id(&store
        .tenant_key(key.tenant, true)
        .expect("key")
        .expect("created"))
}

#[test]
fn user_ids_are_sealed_and_listed_with_their_reference() {
    const CANARY: &str = "jane.canary-5c2e@acme.example";
    let dir = tempfile::TempDir::new().expect("temp");
    let store = Store::open(dir.path(), None).expect("store");
    let tenant: TenantId = "acme".parse().expect("tenant");
    store.create_tenant(&tenant).expect("tenant");
    let installation: InstallationId = "slack".parse().expect("installation");
    let jane: UserId = CANARY.parse().expect("user");
    let key = ConnectionKey {
        tenant: &tenant,
        installation: &installation,
        credential: "slack",
        user: Some(&jane),
    };
    let consent = PendingConsent {
        tenant: "acme".into(),
        installation: "slack".into(),
        credential: "slack".into(),
        user: Some(CANARY.into()),
        scopes: vec![],
        redirect_uri: "https://airlock.example/v1/oauth/callback".into(),
        expires: 700,
    };
    store
        .begin_consent(key, consent.clone(), "state-1", "verifier-1", "nonce-1")
        .expect("begin");
    store
        .begin_consent(key, consent.clone(), "state-2", "verifier-2", "nonce-2")
        .expect("begin");
    store.offer_consent("start-1", &consent).expect("offer");
    store.offer_consent("start-2", &consent).expect("offer");
    let tokens = ConnectionTokens {
        access: Some(Secret::new(CredentialType::Bearer, "xoxb-jane".into()).expect("token")),
        ..ConnectionTokens::default()
    };
    store.put_connection(key, &tokens, 100).expect("put");
    store.db().expect("db").flush().expect("flush");
    let raw = raw_bytes(dir.path());
    assert!(!holds(&raw, CANARY.as_bytes()), "the user id is on disk");

    // Listing opens the id and gives its reference, the one the audit trail records.
    let listed = store.connections_of(&tenant, &installation).expect("list");
    assert_eq!(listed[0].user.as_deref(), Some(CANARY));
    let reference = store.user_ref(&tenant, &jane).expect("reference");
    assert!(
        reference.starts_with("u-") && reference.len() == 34,
        "{reference}"
    );
    assert_eq!(listed[0].user_ref.as_deref(), Some(reference.as_str()));
    assert_ne!(
        store
            .user_ref(&tenant, &"bob".parse().expect("user"))
            .expect("reference"),
        reference
    );
    // A consent comes back whole, offered or under way, whatever its state found.
    assert_eq!(
        store.take_offered_consent("start-1").expect("take"),
        Some(consent.clone())
    );
    match store
        .take_consent("state-1", Some("nonce-1"), 100)
        .expect("take")
    {
        TakenState::Valid(taken, _) => assert_eq!(taken, consent),
        _ => panic!("state-1 is valid"),
    }
    for (state, cookie, now) in [("state-4", "someone-elses", 100), ("state-5", "nonce", 700)] {
        store
            .begin_consent(key, consent.clone(), state, "v", "nonce")
            .expect("begin");
        match store.take_consent(state, Some(cookie), now).expect("take") {
            TakenState::OtherBrowser(taken) | TakenState::Expired(taken) => {
                assert_eq!(taken, consent);
            }
            _ => panic!("{state} is refused"),
        }
    }
    // An offered consent's sealed user moved to another offer does not open there.
    store.offer_consent("start-3", &consent).expect("offer");
    let starts = store.tree(STARTS).expect("tree");
    let mut third: serde_json::Value = serde_json::from_slice(
        &starts
            .get(state_key("start-3"))
            .expect("get")
            .expect("offered"),
    )
    .expect("json");
    let second: serde_json::Value = serde_json::from_slice(
        &starts
            .get(state_key("start-2"))
            .expect("get")
            .expect("offered"),
    )
    .expect("json");
    third["user"] = second["user"].clone();
    starts
        .insert(
            state_key("start-3"),
            serde_json::to_vec(&third).expect("json"),
        )
        .expect("swap");
    assert!(matches!(
        store.take_offered_consent("start-3"),
        Err(StoreError::Decrypt { .. })
    ));
    // A consent's sealed user moved to another consent does not open there.
    let pending = store.tree(PENDING).expect("tree");
    let mut other: serde_json::Value = serde_json::from_slice(
        &pending
            .get(state_key("state-2"))
            .expect("get")
            .expect("pending"),
    )
    .expect("json");
    store
        .begin_consent(key, consent.clone(), "state-3", "verifier-3", "nonce-3")
        .expect("begin");
    let third: serde_json::Value = serde_json::from_slice(
        &pending
            .get(state_key("state-3"))
            .expect("get")
            .expect("pending"),
    )
    .expect("json");
    other["verifier"] = third["verifier"].clone();
    other["browser"] = third["browser"].clone();
    pending
        .insert(
            state_key("state-3"),
            serde_json::to_vec(&other).expect("json"),
        )
        .expect("swap");
    assert!(matches!(
        store.take_consent("state-3", Some("nonce-3"), 100),
        Err(StoreError::Decrypt { .. })
    ));
    // Nor does a connection's sealed user under another user's reference.
    let bob: UserId = "bob".parse().expect("user");
    let bobs = ConnectionKey {
        user: Some(&bob),
        ..key
    };
    store.put_connection(bobs, &tokens, 100).expect("put");
    let tree = store.tree(CONNECTIONS).expect("tree");
    let mut record =
        decode(&tree.get(id(&store, bobs)).expect("get").expect("bob's")).expect("record");
    record.user = decode(&tree.get(id(&store, key)).expect("get").expect("jane's"))
        .expect("record")
        .user;
    tree.insert(id(&store, bobs), serde_json::to_vec(&record).expect("json"))
        .expect("swap");
    assert!(matches!(
        store.connections_of(&tenant, &installation),
        Err(StoreError::Decrypt { .. })
    ));
}

#[test]
fn a_consent_is_taken_once_expires_and_its_tokens_open_only_in_place() {
    let dir = tempfile::TempDir::new().expect("temp");
    let store = Store::open(dir.path(), None).expect("store");
    let tenant: TenantId = "acme".parse().expect("tenant");
    store.create_tenant(&tenant).expect("tenant");
    let installation: InstallationId = "slack".parse().expect("installation");
    let alice: UserId = "alice".parse().expect("user");
    let key = ConnectionKey {
        tenant: &tenant,
        installation: &installation,
        credential: "slack",
        user: Some(&alice),
    };
    let consent = |expires| PendingConsent {
        tenant: "acme".into(),
        installation: "slack".into(),
        credential: "slack".into(),
        user: Some("alice".into()),
        scopes: vec!["chat:write".into()],
        redirect_uri: "https://airlock.example/v1/oauth/callback".into(),
        expires,
    };
    store
        .begin_consent(key, consent(700), "state-1", "verifier-1", "nonce-1")
        .expect("begin");
    store
        .begin_consent(key, consent(700), "state-2", "verifier-2", "nonce-2")
        .expect("begin");
    match store
        .take_consent("state-1", Some("nonce-1"), 100)
        .expect("take")
    {
        TakenState::Valid(c, verifier) => {
            assert_eq!(c, consent(700));
            assert_eq!(verifier.as_str(), "verifier-1");
        }
        _ => panic!("state-1 is valid"),
    }
    assert!(matches!(
        store.take_consent("state-1", Some("nonce-1"), 100),
        Ok(TakenState::Unknown)
    ));
    assert!(matches!(
        store.take_consent("state-2", Some("nonce-2"), 700),
        Ok(TakenState::Expired(_))
    ));
    store
        .begin_consent(key, consent(50), "state-3", "v", "n")
        .expect("begin");
    assert_eq!(store.purge_consents(100).expect("purge"), 1);
    // The state itself is not stored, only its hash (nor the nonce).
    let raw: Vec<u8> = store
        .tree(PENDING)
        .expect("tree")
        .iter()
        .flat_map(|e| {
            let (k, v) = e.expect("entry");
            [k.to_vec(), v.to_vec()].concat()
        })
        .collect();
    assert!(!String::from_utf8_lossy(&raw).contains("state-"));
    assert!(!String::from_utf8_lossy(&raw).contains("nonce-"));

    let tokens = ConnectionTokens {
        access: Some(Secret::new(CredentialType::Bearer, "xoxb-alice".into()).expect("token")),
        refresh: Some(Zeroizing::new("xoxe-alice".into())),
        expires_at: Some(1000),
        scopes: vec!["chat:write".into()],
        needs_reauth: false,
        revision: 0,
        token_origin: Some("https://slack.com".into()),
        account: None,
    };
    store.put_connection(key, &tokens, 100).expect("put");
    let read = store.connection(key).expect("read").expect("connected");
    assert_eq!(
        read.access.map(|a| a.expose().to_string()).as_deref(),
        Some("xoxb-alice")
    );
    // Bob has none, and Alice's record copied under Bob's name does not open.
    let bob: UserId = "bob".parse().expect("user");
    let bobs = ConnectionKey {
        user: Some(&bob),
        ..key
    };
    assert!(store.connection(bobs).expect("read").is_none());
    let tree = store.tree(CONNECTIONS).expect("tree");
    let bytes = tree.get(id(&store, key)).expect("get").expect("record");
    tree.insert(id(&store, bobs), bytes).expect("copy");
    assert!(matches!(
        store.connection(bobs),
        Err(StoreError::Decrypt { .. })
    ));
    tree.remove(id(&store, bobs)).expect("remove");

    let revision = store.connection(key).expect("read").expect("kept").revision;
    assert!(
        !store
            .mark_needs_reconsent(key, revision ^ 1, 200)
            .expect("stale")
    );
    assert!(
        store
            .mark_needs_reconsent(key, revision, 200)
            .expect("mark")
    );
    let listed = store.connections_of(&tenant, &installation).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, ConnectionStatus::NeedsReconsent);
    assert_eq!(listed[0].user.as_deref(), Some("alice"));
    assert!(store.delete_tenant(&tenant).expect("deleted"));
    assert!(store.tree(CONNECTIONS).expect("tree").is_empty());
}

#[test]
fn a_consent_starts_once_and_comes_back_only_to_the_browser_that_started_it() {
    let dir = tempfile::TempDir::new().expect("temp");
    let store = Store::open(dir.path(), None).expect("store");
    let tenant: TenantId = "acme".parse().expect("tenant");
    store.create_tenant(&tenant).expect("tenant");
    let installation: InstallationId = "slack".parse().expect("installation");
    let key = ConnectionKey {
        tenant: &tenant,
        installation: &installation,
        credential: "slack",
        user: None,
    };
    let consent = PendingConsent {
        tenant: "acme".into(),
        installation: "slack".into(),
        credential: "slack".into(),
        user: None,
        scopes: vec!["chat:write".into()],
        redirect_uri: "https://airlock.example/v1/oauth/callback".into(),
        expires: 700,
    };
    // The link works once, and its id is not stored.
    store.offer_consent("start-1", &consent).expect("offer");
    let raw: Vec<u8> = store
        .tree(STARTS)
        .expect("tree")
        .iter()
        .flat_map(|e| e.expect("entry").0.to_vec())
        .collect();
    assert!(!String::from_utf8_lossy(&raw).contains("start-1"));
    assert_eq!(
        store.take_offered_consent("start-1").expect("take"),
        Some(consent.clone())
    );
    assert_eq!(store.take_offered_consent("start-1").expect("take"), None);
    // Without the starting browser's cookie, or with another one: refused, and the state
    // is spent all the same.
    for (n, cookie) in [None, Some("someone-elses"), Some("")]
        .into_iter()
        .enumerate()
    {
        let state = format!("state-{n}");
        store
            .begin_consent(key, consent.clone(), &state, "v", "nonce")
            .expect("begin");
        assert!(matches!(
            store.take_consent(&state, cookie, 100),
            Ok(TakenState::OtherBrowser(_))
        ));
        assert!(matches!(
            store.take_consent(&state, Some("nonce"), 100),
            Ok(TakenState::Unknown)
        ));
    }
    // Offered and started consents go with their tenant.
    store.offer_consent("start-2", &consent).expect("offer");
    store
        .begin_consent(key, consent.clone(), "state-9", "v", "nonce")
        .expect("begin");
    assert_eq!(store.purge_consents(100).expect("purge"), 0);
    assert_eq!(store.purge_consents(700).expect("purge"), 2);

    // The provider account is sealed in place and listed.
    let account = ProviderAccount {
        id: "U024BE7LH".into(),
        workspace: Some("T9TK3CUKW".into()),
        source: airlock_host_api::credentials::AccountSource::TokenResponse,
    };
    let tokens = ConnectionTokens {
        access: Some(Secret::new(CredentialType::Bearer, "xoxb-1".into()).expect("token")),
        account: Some(account.clone()),
        token_origin: Some("https://slack.com".into()),
        ..ConnectionTokens::default()
    };
    store.put_connection(key, &tokens, 100).expect("put");
    let raw = store
        .tree(CONNECTIONS)
        .expect("tree")
        .get(id(&store, key))
        .expect("get")
        .expect("record");
    assert!(!String::from_utf8_lossy(&raw).contains("U024BE7LH"));
    let listed = store.connections_of(&tenant, &installation).expect("list");
    assert_eq!(listed[0].account.as_ref(), Some(&account));
    let read = store.connection(key).expect("read").expect("connected");
    assert_eq!(read.token_origin.as_deref(), Some("https://slack.com"));
    // A refresh keeps the account it read.
    assert!(
        store
            .replace_connection(key, read.revision, &read, 200)
            .expect("refresh")
    );
    let listed = store.connections_of(&tenant, &installation).expect("list");
    assert_eq!(listed[0].account.as_ref(), Some(&account));
}

#[test]
fn a_refresh_replaces_only_the_connection_it_read() {
    let dir = tempfile::TempDir::new().expect("temp");
    let store = Store::open(dir.path(), None).expect("store");
    let tenant: TenantId = "acme".parse().expect("tenant");
    store.create_tenant(&tenant).expect("tenant");
    let installation: InstallationId = "slack".parse().expect("installation");
    let key = ConnectionKey {
        tenant: &tenant,
        installation: &installation,
        credential: "slack",
        user: None,
    };
    let tokens = |access: &str| ConnectionTokens {
        access: Some(Secret::new(CredentialType::Bearer, access.into()).expect("token")),
        refresh: Some(Zeroizing::new(format!("refresh-{access}"))),
        ..ConnectionTokens::default()
    };
    let access = |store: &Store| {
        store
            .connection(key)
            .expect("read")
            .and_then(|t| t.access)
            .map(|a| a.expose().to_string())
    };
    store
        .put_connection(key, &tokens("first"), 10)
        .expect("put");
    let read = store.connection(key).expect("read").expect("connected");
    assert!(
        store
            .replace_connection(key, read.revision, &tokens("refreshed"), 20)
            .expect("refresh")
    );
    assert_eq!(access(&store).as_deref(), Some("refreshed"));
    // A second refresh from the same read lost the race: the first one's tokens stay.
    assert!(
        !store
            .replace_connection(key, read.revision, &tokens("stale"), 30)
            .expect("refresh")
    );
    assert_eq!(access(&store).as_deref(), Some("refreshed"));
    // A refresh in flight while the connection is removed does not bring it back.
    let read = store.connection(key).expect("read").expect("connected");
    assert!(store.delete_connection(key).expect("delete"));
    assert!(
        !store
            .replace_connection(key, read.revision, &tokens("zombie"), 40)
            .expect("refresh")
    );
    assert!(
        !store
            .mark_needs_reconsent(key, read.revision, 40)
            .expect("mark")
    );
    assert_eq!(access(&store), None);
}
