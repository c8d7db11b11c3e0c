//! Each concern's records: written, read back, listed, scoped to their tenant, deleted.

use airlock_host_api::credentials::{CredentialType, Secret};
use airlock_host_api::kv::KvQuota;
use airlock_policy::apikey::{KeyRefusal, Scope, Suspension, generate};
use airlock_policy::grant::Grant;
use airlock_policy::webhook::{Scheme, WebhookSecret};
use airlock_runtime::ids::EndpointId;

use super::{Subject, installation, tenant};
use crate::StoreError;
use crate::records::NewEndpoint;
use crate::records::{InstallationRecord, Quarantine};

/// An installation record of `tenant` for the cases.
pub fn record(tenant: &str, installation: &str) -> InstallationRecord {
    InstallationRecord {
        tenant: tenant.into(),
        installation: installation.into(),
        integration: "acme/crm".into(),
        version: "1.0.0".into(),
        bundle: "00".repeat(32),
        key: "k1".into(),
        grant: Grant::default(),
        config: Some(r#"{"region":"eu"}"#.into()),
        created: 1,
        updated: 1,
        pending: None,
        quarantine: None,
    }
}

pub(super) fn quota() -> KvQuota {
    KvQuota {
        max_bytes: 1 << 20,
        max_keys: 100,
        max_value_bytes: 1 << 16,
    }
}

pub fn a_fresh_store_holds_the_current_schema(subject: Subject) {
    let s = subject.storage;
    assert!(s.schema_current().expect("the backend answers"));
    s.create_tenant(&tenant("acme")).expect("acme");
    assert!(
        s.schema_current().expect("still answers"),
        "writes keep it current"
    );
}

pub fn tenants_are_created_once_listed_and_deleted(subject: Subject) {
    let s = subject.storage;
    let (acme, beta) = (tenant("acme"), tenant("beta"));
    assert!(!s.tenant_exists(&acme).expect("exists"));
    s.create_tenant(&beta).expect("beta");
    let info = s.create_tenant(&acme).expect("acme");
    assert_eq!(info.id, "acme");
    assert!(matches!(
        s.create_tenant(&acme),
        Err(StoreError::Exists { .. })
    ));
    let ids: Vec<String> = s
        .tenants()
        .expect("list")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["acme", "beta"], "listed by id");
    assert!(s.delete_tenant(&acme).expect("delete"));
    assert!(!s.delete_tenant(&acme).expect("again"), "deleted once");
    assert!(!s.tenant_exists(&acme).expect("exists"));
    assert!(s.tenant_exists(&beta).expect("beta stays"));
}

pub fn deleting_a_tenant_removes_everything_it_owns(subject: Subject) {
    let s = subject.storage;
    let (acme, beta, crm) = (tenant("acme"), tenant("beta"), installation("crm"));
    for t in [&acme, &beta] {
        s.create_tenant(t).expect("tenant");
        s.put_installation(&record(t.as_str(), "crm"))
            .expect("installation");
        let token = Secret::new(CredentialType::Bearer, format!("token-{t}")).expect("secret");
        s.set_credential(t, &crm, "api", vec![], &token, CredentialType::Bearer)
            .expect("credential");
        s.put_api_key(&generate(Some(t.to_string()), vec![Scope::Invoke], 1, None).record)
            .expect("api key");
        s.kv(t, &crm).set("k", b"v", &quota()).expect("kv");
    }
    assert!(s.delete_tenant(&acme).expect("delete"));
    assert!(s.installations(Some(&acme)).expect("list").is_empty());
    assert!(s.list_credentials(&acme, &crm).expect("list").is_empty());
    assert!(s.api_keys(Some(&acme)).expect("list").is_empty());
    assert_eq!(s.kv_usage(&acme, &crm).expect("usage").keys, 0);
    // The other tenant keeps all of its own.
    assert_eq!(s.installations(Some(&beta)).expect("list").len(), 1);
    assert_eq!(s.list_credentials(&beta, &crm).expect("list").len(), 1);
    assert_eq!(s.api_keys(Some(&beta)).expect("list").len(), 1);
    assert_eq!(s.kv(&beta, &crm).get("k").expect("kv"), Some(b"v".to_vec()));
}

pub fn api_keys_authenticate_until_revoked(subject: Subject) {
    let s = subject.storage;
    let new = generate(Some("acme".into()), vec![Scope::Invoke], 1_000, None);
    let other = generate(None, vec![], 1_000, None);
    s.put_api_key(&new.record).expect("put");
    s.put_api_key(&other.record).expect("put");
    assert_eq!(
        s.api_key(&new.record.id).expect("get"),
        Some(new.record.clone())
    );
    assert_eq!(s.api_keys(None).expect("all").len(), 2);
    assert_eq!(s.api_keys(Some(&tenant("acme"))).expect("acme's").len(), 1);
    let checked = s
        .authenticate(&new.key, 2_000)
        .expect("check")
        .expect("valid");
    assert_eq!(checked.id, new.record.id);
    let mut forged = new.key.to_string();
    let last = forged.pop().expect("non-empty");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        s.authenticate(&forged, 2_000).expect("check"),
        Err(KeyRefusal::Invalid)
    );
    // Suspended: refused until lifted; suspending again keeps the first suspension.
    let first = Suspension {
        rule: "scope-probing".into(),
        since: 2_500,
    };
    let id = &new.record.id;
    assert_eq!(
        s.suspend_api_key(id, Some(first.clone())).expect("suspend"),
        Some(true)
    );
    let again = Suspension {
        rule: "operator".into(),
        since: 2_600,
    };
    assert_eq!(
        s.suspend_api_key(id, Some(again)).expect("suspend"),
        Some(false)
    );
    let stored = s.api_key(id).expect("get").expect("the key");
    assert_eq!(stored.suspended, Some(first));
    assert_eq!(
        s.authenticate(&new.key, 2_700).expect("check"),
        Err(KeyRefusal::Suspended)
    );
    assert_eq!(s.suspend_api_key(id, None).expect("lift"), Some(true));
    assert_eq!(s.suspend_api_key(id, None).expect("lift"), Some(false));
    assert_eq!(
        s.suspend_api_key("0123456789abcdef", None)
            .expect("unknown"),
        None
    );
    assert!(s.authenticate(&new.key, 2_800).expect("check").is_ok());
    assert!(s.revoke_api_key(&new.record.id, 3_000).expect("revoke"));
    assert_eq!(
        s.authenticate(&new.key, 4_000).expect("check"),
        Err(KeyRefusal::Revoked)
    );
    assert!(
        !s.revoke_api_key("0123456789abcdef", 3_000)
            .expect("unknown")
    );
    assert!(s.authenticate(&other.key, 4_000).expect("check").is_ok());
}

pub fn installations_and_bundles_round_trip(subject: Subject) {
    let s = subject.storage;
    let (acme, crm) = (tenant("acme"), installation("crm"));
    s.create_tenant(&acme).expect("tenant");
    s.create_tenant(&tenant("beta")).expect("tenant");
    assert_eq!(s.installation(&acme, &crm).expect("get"), None);
    let mut stored = record("acme", "crm");
    s.put_installation(&stored).expect("put");
    s.put_installation(&record("beta", "crm")).expect("put");
    assert_eq!(
        s.installation(&acme, &crm).expect("get"),
        Some(stored.clone())
    );
    stored.config = None;
    stored.updated = 2;
    s.put_installation(&stored).expect("replace");
    assert_eq!(
        s.installation(&acme, &crm).expect("get"),
        Some(stored.clone())
    );
    // A quarantine changes nothing else, and a change built from an older read keeps it.
    let quarantine = Quarantine {
        rule: "egress-probing".into(),
        since: 3,
    };
    let (now, changed) = s
        .set_quarantine(&acme, &crm, Some(quarantine.clone()))
        .expect("quarantine")
        .expect("the installation");
    assert!(changed);
    assert_eq!(
        now,
        InstallationRecord {
            quarantine: Some(quarantine.clone()),
            ..stored.clone()
        }
    );
    let later = Quarantine {
        rule: "operator".into(),
        since: 4,
    };
    let again = s.set_quarantine(&acme, &crm, Some(later)).expect("again");
    assert_eq!(
        again.map(|(r, c)| (r.quarantine, c)),
        Some((Some(quarantine.clone()), false))
    );
    stored.updated = 5;
    s.put_installation(&stored)
        .expect("a change from an older read");
    let kept = s
        .installation(&acme, &crm)
        .expect("get")
        .expect("the installation");
    assert_eq!((kept.updated, kept.quarantine), (5, Some(quarantine)));
    let (lifted, changed) = s
        .set_quarantine(&acme, &crm, None)
        .expect("lift")
        .expect("the installation");
    assert!(changed && lifted.quarantine.is_none());
    stored.quarantine = Some(Quarantine {
        rule: "stale".into(),
        since: 1,
    });
    s.put_installation(&stored)
        .expect("a change carrying a lifted quarantine");
    assert_eq!(
        s.installation(&acme, &crm)
            .expect("get")
            .map(|r| r.quarantine),
        Some(None),
        "no change brings back a quarantine"
    );
    assert_eq!(
        s.set_quarantine(&acme, &installation("none"), None)
            .expect("none"),
        None
    );
    stored.quarantine = None;
    assert_eq!(s.installation(&acme, &crm).expect("get"), Some(stored));
    assert_eq!(s.installations(None).expect("all").len(), 2);
    assert_eq!(s.installations(Some(&acme)).expect("acme's").len(), 1);
    let digest = s.put_bundle(b"bundle bytes").expect("bundle");
    assert_eq!(digest.len(), 64, "hex SHA-256");
    assert_eq!(s.put_bundle(b"bundle bytes").expect("again"), digest);
    assert_eq!(
        s.bundle(&digest).expect("read"),
        Some(b"bundle bytes".to_vec())
    );
    assert_eq!(s.bundle(&"0".repeat(64)).expect("read"), None);
}

pub fn credentials_are_listed_without_values_and_read_only_as_their_type(subject: Subject) {
    let s = subject.storage;
    let (acme, crm) = (tenant("acme"), installation("crm"));
    s.create_tenant(&acme).expect("tenant");
    let token = Secret::new(CredentialType::Bearer, "tok-123".into()).expect("secret");
    let origins = vec!["https://api.example.com:443".to_string()];
    s.set_credential(
        &acme,
        &crm,
        "api",
        origins.clone(),
        &token,
        CredentialType::Bearer,
    )
    .expect("set");
    let listed = s.list_credentials(&acme, &crm).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), &listed[0].origins),
        ("api", &origins)
    );
    let secrets = s.secrets(&acme, &crm);
    let read = secrets.get("api", CredentialType::Bearer).expect("get");
    assert_eq!(read.as_ref().map(Secret::expose), Some("tok-123"));
    assert!(
        secrets.get("api", CredentialType::ApiKey).is_err(),
        "a value stored as one type is never read as another"
    );
    let rotated = Secret::new(CredentialType::Bearer, "tok-456".into()).expect("secret");
    s.reseal_credential(&acme, &crm, "api", &rotated)
        .expect("reseal");
    let read = secrets.get("api", CredentialType::Bearer).expect("get");
    assert_eq!(read.as_ref().map(Secret::expose), Some("tok-456"));
    assert!(s.delete_credential(&acme, &crm, "api").expect("delete"));
    assert!(!s.delete_credential(&acme, &crm, "api").expect("again"));
    assert!(
        secrets
            .get("api", CredentialType::Bearer)
            .expect("get")
            .is_none()
    );
}

pub fn webhook_endpoints_belong_to_their_tenant_and_rotate(subject: Subject) {
    let s = subject.storage;
    let (acme, beta, crm) = (tenant("acme"), tenant("beta"), installation("crm"));
    s.create_tenant(&acme).expect("tenant");
    s.create_tenant(&beta).expect("tenant");
    let id = EndpointId::generate();
    let first = WebhookSecret::for_scheme(Scheme::Standard, None).expect("secret");
    let new = NewEndpoint {
        id: &id,
        tenant: &acme,
        installation: &crm,
        action: "sync",
        scheme: Scheme::Standard,
    };
    let info = s.create_webhook(new, &first, 100).expect("create");
    assert_eq!(
        (info.tenant.as_str(), info.action.as_str()),
        ("acme", "sync")
    );
    assert!(s.webhook_exists(&id).expect("exists"));
    assert!(s.webhook(&acme, &id, 100).expect("get").is_some());
    assert!(
        s.webhook(&beta, &id, 100).expect("get").is_none(),
        "not beta's"
    );
    assert_eq!(s.webhooks_of(&acme, 100).expect("list").len(), 1);
    assert!(s.webhooks_of(&beta, 100).expect("list").is_empty());
    assert!(s.webhook_secret_in_use(&acme, &first, 100).expect("in use"));
    let second = WebhookSecret::for_scheme(Scheme::Standard, None).expect("secret");
    assert!(
        s.rotate_webhook(&beta, &id, &second, 60, 200)
            .expect("rotate")
            .is_none()
    );
    s.rotate_webhook(&acme, &id, &second, 60, 200)
        .expect("rotate")
        .expect("acme's");
    let keys = |now| {
        s.webhook_keys(&id, now)
            .expect("keys")
            .expect("exists")
            .1
            .len()
    };
    assert_eq!(keys(230), 2, "the old secret verifies during the overlap");
    assert_eq!(keys(261), 1, "and not after it");
    assert!(!s.delete_webhook(&beta, &id).expect("delete"), "not beta's");
    assert!(s.delete_webhook(&acme, &id).expect("delete"));
    assert!(!s.webhook_exists(&id).expect("exists"));
}

pub fn kv_values_round_trip_and_count_toward_usage(subject: Subject) {
    let s = subject.storage;
    let (acme, crm, erp) = (tenant("acme"), installation("crm"), installation("erp"));
    s.create_tenant(&acme).expect("tenant");
    let kv = s.kv(&acme, &crm);
    kv.set("cursor", b"42", &quota()).expect("set");
    kv.set("page/1", b"a", &quota()).expect("set");
    kv.set("page/2", b"bb", &quota()).expect("set");
    assert_eq!(kv.get("cursor").expect("get"), Some(b"42".to_vec()));
    assert_eq!(s.kv(&acme, &erp).get("cursor").expect("get"), None, "apart");
    let listed = kv.list("page/", None, 10).expect("list");
    assert_eq!(listed, ["page/1", "page/2"]);
    let usage = s.kv_usage(&acme, &crm).expect("usage");
    assert_eq!(usage.keys, 3);
    assert!(kv.delete("cursor").expect("delete"));
    assert!(!kv.delete("cursor").expect("again"));
    assert_eq!(s.kv_usage(&acme, &crm).expect("usage").keys, 2);
}
