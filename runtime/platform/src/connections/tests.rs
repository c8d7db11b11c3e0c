//! The consent steps that need no loaded installation, over a real store and trail: which
//! refusals are left unrecorded for the caller's limiter, which are recorded and with what,
//! and that links and states work once whatever happens.

use std::sync::Arc;

use airlock_audit::record;
use airlock_audit::{AuditDir, AuditTrail};
use airlock_host_api::audit::{AuditEvent, ConnectionChange};
use airlock_host_api::credentials::{ConnectionTokens, CredentialType, OAuthTokens, Secret};
use airlock_host_api::egress::EgressSettings;
use airlock_host_api::egress::ip::AllowRanges;
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::{InstallationId, TenantId, UserId};
use airlock_store::{
    ConnectionKey, Connections as _, Consents as _, PendingConsent, Store, Tenants as _,
};
use tempfile::TempDir;

use super::{Connector, ConsentError, Refusal, Reply};

const PEER: &str = "192.0.2.7";

/// A store with tenant `acme`, its trail and a token cache, in temporary dirs.
struct Fixture {
    _dirs: (TempDir, TempDir),
    store: Store,
    trail: AuditTrail,
    tokens: OAuthTokens,
}

impl Fixture {
    fn new() -> Self {
        let (data, audit) = (TempDir::new().expect("dir"), TempDir::new().expect("dir"));
        let store = Store::open(data.path(), None).expect("store");
        let dir = AuditDir::open(audit.path(), data.path()).expect("audit dir");
        let trail = AuditTrail::open(&store, dir).expect("trail");
        store.create_tenant(&tenant()).expect("tenant");
        let settings = EgressSettings::new(Vec::new(), AllowRanges::none(), Vec::new());
        Self {
            _dirs: (data, audit),
            store,
            trail,
            tokens: OAuthTokens::new(Arc::new(settings.expect("egress settings"))),
        }
    }

    fn connector(&self) -> Connector<'_> {
        Connector {
            store: &self.store,
            trail: &self.trail,
            tokens: &self.tokens,
        }
    }

    /// Every event recorded so far.
    fn recorded(&self) -> Vec<AuditEvent> {
        self.trail
            .lines()
            .map(|line| {
                let (_, line) = line.expect("line");
                record::open(&line).expect("record").envelope.event
            })
            .collect()
    }

    /// A consent of `ada` under way with `state`, for the browser holding `nonce`.
    fn begin(&self, state: &str, nonce: &str, expires: u64) {
        let user = ada();
        let key = ConnectionKey {
            tenant: &tenant(),
            installation: &installation(),
            credential: "crm",
            user: Some(&user),
        };
        let consent = consent(expires);
        self.store
            .begin_consent(key, consent, state, "verifier", nonce)
            .expect("begin");
    }
}

fn tenant() -> TenantId {
    "acme".parse().expect("tenant")
}

fn installation() -> InstallationId {
    "crm".parse().expect("installation")
}

fn ada() -> UserId {
    "ada@example.com".parse().expect("user")
}

fn consent(expires: u64) -> PendingConsent {
    PendingConsent {
        tenant: "acme".into(),
        installation: "crm".into(),
        credential: "crm".into(),
        user: Some("ada@example.com".into()),
        scopes: vec!["read".into()],
        redirect_uri: "https://airlock.example.com/v1/oauth/callback".into(),
        expires,
    }
}

fn refused(tenant: Option<&str>, reason: &str) -> AuditEvent {
    AuditEvent::ConnectionRefused {
        tenant: tenant.map(str::to_string),
        reason: reason.into(),
        peer: PEER.into(),
    }
}

fn reply<'a>(state: &'a str, code: Option<&'a str>, error: Option<&'a str>) -> Reply<'a> {
    Reply {
        state: Some(state),
        code,
        error,
    }
}

#[tokio::test]
async fn an_unknown_link_is_left_for_the_caller_to_limit_then_record() {
    let f = Fixture::new();
    let c = f.connector();
    for id in ["never-offered", "", &"x".repeat(300)] {
        let e = c.open_link(id, PEER).await.err().expect("refused");
        assert!(
            matches!(e, ConsentError::Unknown(Refusal::UnknownStart)),
            "{e:?}"
        );
    }
    assert!(
        f.recorded().is_empty(),
        "nothing recorded before the limiter"
    );
    let e = c.refuse(None, Refusal::UnknownStart, PEER).await;
    assert!(matches!(e, ConsentError::Refused(Refusal::UnknownStart)));
    assert_eq!(f.recorded(), [refused(None, "unknown-start")]);
}

#[tokio::test]
async fn a_link_works_once_and_an_expired_one_is_refused_and_recorded() {
    let f = Fixture::new();
    let c = f.connector();
    f.store
        .offer_consent("fresh", &consent(now_unix() + 600))
        .expect("offer");
    f.store
        .offer_consent("stale", &consent(now_unix() - 1))
        .expect("offer");
    let opened = c.open_link("fresh", PEER).await.expect("opened");
    assert_eq!(opened.tenant(), &tenant());
    assert_eq!(opened.installation(), &installation());
    let again = c.open_link("fresh", PEER).await.err().expect("used");
    assert!(matches!(
        again,
        ConsentError::Unknown(Refusal::UnknownStart)
    ));
    let stale = c.open_link("stale", PEER).await.err().expect("expired");
    assert!(
        matches!(stale, ConsentError::Refused(Refusal::StartExpired)),
        "{stale:?}"
    );
    assert_eq!(f.recorded(), [refused(Some("acme"), "start-expired")]);
}

#[tokio::test]
async fn a_state_is_refused_unless_its_own_browser_brings_it_back_in_time() {
    let f = Fixture::new();
    let c = f.connector();
    f.begin("other", "nonce-1", now_unix() + 600);
    f.begin("late", "nonce-2", now_unix() - 1);
    let code = Some("code");
    let cases = [
        ("other", Some("nonce-x"), "browser-mismatch"),
        ("late", Some("nonce-2"), "state-expired"),
    ];
    for (state, nonce, reason) in cases {
        let e = c.take_state(reply(state, code, None), nonce, PEER).await;
        let e = e.err().expect("refused");
        assert!(
            matches!(&e, ConsentError::Refused(r) if r.reason() == reason),
            "{e:?}"
        );
    }
    // Taken whatever it held: the right browser cannot use it after a refusal.
    let e = c.take_state(reply("other", code, None), Some("nonce-1"), PEER);
    let e = e.await.err().expect("used");
    assert!(matches!(e, ConsentError::Unknown(Refusal::UnknownState)));
    assert_eq!(
        f.recorded(),
        [
            refused(Some("acme"), "browser-mismatch"),
            refused(Some("acme"), "state-expired"),
        ]
    );
}

#[tokio::test]
async fn no_state_is_unknown_and_unrecorded() {
    let f = Fixture::new();
    let c = f.connector();
    let none = Reply {
        code: Some("code"),
        ..Reply::default()
    };
    for reply in [none, reply("", Some("code"), None)] {
        let e = c.take_state(reply, Some("nonce"), PEER).await;
        let e = e.err().expect("refused");
        assert!(matches!(e, ConsentError::Unknown(Refusal::MissingState)));
    }
    assert!(f.recorded().is_empty());
}

#[tokio::test]
async fn the_providers_refusal_and_a_missing_code_are_recorded_with_their_reason() {
    let f = Fixture::new();
    let c = f.connector();
    let expires = now_unix() + 600;
    f.begin("denied", "n1", expires);
    f.begin("odd", "n2", expires);
    f.begin("no-code", "n3", expires);
    let cases = [
        (reply("denied", Some("c"), Some("access_denied")), "n1"),
        (reply("odd", None, Some("<script>")), "n2"),
        (reply("no-code", Some(""), None), "n3"),
    ];
    for (reply, nonce) in cases {
        let e = c.take_state(reply, Some(nonce), PEER).await;
        assert!(matches!(e, Err(ConsentError::Refused(_))));
    }
    assert_eq!(
        f.recorded(),
        [
            refused(Some("acme"), "provider-access-denied"),
            refused(Some("acme"), "provider-error"),
            refused(Some("acme"), "missing-code"),
        ]
    );
}

#[tokio::test]
async fn a_granted_state_names_the_installation_to_load() {
    let f = Fixture::new();
    let c = f.connector();
    f.begin("good", "nonce", now_unix() + 600);
    let granted = c.take_state(reply("good", Some("code"), None), Some("nonce"), PEER);
    let granted = granted.await.expect("granted");
    assert_eq!(granted.tenant(), &tenant());
    assert_eq!(granted.installation(), &installation());
    assert!(
        f.recorded().is_empty(),
        "nothing recorded until it connects"
    );
}

#[tokio::test]
async fn disconnect_removes_the_connection_and_records_the_user_by_reference() {
    let f = Fixture::new();
    let c = f.connector();
    let (tenant, installation, user) = (tenant(), installation(), ada());
    let missing = c
        .disconnect(&tenant, &installation, "crm", Some(&user))
        .await;
    assert!(matches!(missing, Err(ConsentError::NoConnection)));
    assert!(f.recorded().is_empty());
    let key = ConnectionKey {
        tenant: &tenant,
        installation: &installation,
        credential: "crm",
        user: Some(&user),
    };
    let tokens = ConnectionTokens {
        access: Some(Secret::new(CredentialType::Bearer, "t".into()).expect("token")),
        scopes: vec!["read".into()],
        ..ConnectionTokens::default()
    };
    f.store
        .put_connection(key, &tokens, now_unix())
        .expect("put");
    c.disconnect(&tenant, &installation, "crm", Some(&user))
        .await
        .expect("disconnected");
    assert!(f.store.connection(key).expect("read").is_none());
    let reference = f.store.user_ref(&tenant, &user).expect("reference");
    assert_eq!(
        f.recorded(),
        [AuditEvent::ConnectionChanged {
            tenant: "acme".into(),
            installation: "crm".into(),
            credential: "crm".into(),
            user: Some(reference),
            change: ConnectionChange::Disconnected,
            scopes: Vec::new(),
            widened: Vec::new(),
        }]
    );
}
