use tempfile::TempDir;

use super::*;
use crate::tenants;
use airlock_host_api::credentials::{CredentialType, Secret};
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_store::{AuditAppend, Credentials as _, Tenants as _};

/// A host's directories: the data dir, the audit dir and the master key, each apart.
struct Host {
    root: TempDir,
}

impl Host {
    fn new() -> Self {
        Self {
            root: TempDir::new().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The store under `data` and its trail, after `tenant` was created with a credential and
    /// a checkpoint signed.
    fn open(&self, data: &str, tenant: &str) -> (Store, AuditTrail) {
        let store = Store::open(&self.path(data), Some(&self.path("master.key"))).expect("store");
        let dir = AuditDir::open(&self.path("audit"), &self.path(data)).expect("audit dir");
        let trail = AuditTrail::open(&store, dir).expect("trail");
        self.tenant(&store, &trail, tenant);
        (store, trail)
    }

    fn tenant(&self, store: &Store, trail: &AuditTrail, tenant: &str) {
        let id: TenantId = tenant.parse().expect("tenant");
        tenants::create(store, trail, &id).expect("created");
        let crm: InstallationId = "crm".parse().expect("installation");
        let secret = Secret::new(CredentialType::Bearer, "tok".into()).expect("secret");
        store
            .set_credential(&id, &crm, "token", vec![], &secret, CredentialType::Bearer)
            .expect("credential");
        trail.checkpoint().expect("checkpoint");
    }

    fn restore(&self, backup: &str, audit: &str, master: &str) -> Result<Restoring, RestoreError> {
        restore(RestoreFrom {
            backup: &self.path(backup),
            target: &self.path("restored"),
            master_key: Some(&self.path(master)),
            audit_dir: &self.path(audit),
            key: None,
            node: "restorer".parse().expect("node"),
        })
    }
}

#[test]
fn a_sealed_backup_is_restored_checked_and_goes_on_as_a_new_chain() {
    let host = Host::new();
    let (store, trail) = host.open("data", "acme");
    take(&store, trail.dir(), &host.path("backup")).expect("backup");
    let records = trail.lines().count() as u64;
    // The original goes on, and signs more than the backup holds.
    host.tenant(&store, &trail, "globex");

    let restoring = host
        .restore("backup", "audit", "master.key")
        .expect("restored");
    assert_eq!((restoring.records, restoring.keys), (records, 1));
    assert_eq!(restoring.continues.as_deref(), Some(trail.chain()));
    assert_eq!(restoring.later.checkpoints, 1);
    assert_ne!(restoring.trail().chain(), trail.chain());
    let restored = restoring.trail();
    let (report, _) = restored.verify_whole(None).expect("verified");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.covered, records);
    assert!(
        !host.path("restored").exists(),
        "in place only once committed"
    );

    let target = restoring.commit().expect("commit");
    let store = Store::open(&target, Some(&host.path("master.key"))).expect("open");
    let tenants: Vec<String> = store
        .tenants()
        .expect("tenants")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(tenants, ["acme"]);
    assert_eq!(store.check_data_keys().expect("keys"), 1);
}

#[test]
fn another_audit_key_a_missing_master_key_or_a_broken_trail_is_refused() {
    let host = Host::new();
    let (store, trail) = host.open("data", "acme");
    take(&store, trail.dir(), &host.path("backup")).expect("backup");

    let other = AuditDir::open(&host.path("other-audit"), &host.path("data")).expect("audit dir");
    other.signer().expect("another audit key");
    assert!(matches!(
        host.restore("backup", "other-audit", "master.key"),
        Err(RestoreError::Unsealed { .. })
    ));
    assert!(matches!(
        host.restore("backup", "audit", "no-such.key"),
        Err(RestoreError::MasterKey { .. })
    ));
    assert!(!host.path("no-such.key").exists());

    // A record that does not open, sealed into a backup like any other.
    let next = trail.lines().count() as u64;
    let broken = AuditAppend {
        seq: next,
        line: b"not a record",
        index: &[],
    };
    store.append_audit(&[broken]).expect("written");
    take(&store, trail.dir(), &host.path("broken")).expect("backup");
    match host.restore("broken", "audit", "master.key") {
        Err(RestoreError::Trail { report, .. }) => {
            assert_eq!(report.broken.map(|b| b.seq), Some(next));
        }
        other => panic!("a broken trail: {:?}", other.map(|r| r.records)),
    }
    assert!(!host.path("restored").exists());
}
