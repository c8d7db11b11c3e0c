use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use airlock_host_api::credentials::vault::MasterKey;
use airlock_host_api::credentials::{CredentialType, Secret};
use airlock_host_api::kv::KvQuota;
use airlock_runtime::bundle::{PublicKey, SigningKey};
use airlock_runtime::ids::{InstallationId, TenantId};

use super::*;
use crate::testing::holds;
use crate::{
    AuditAppend, AuditLog, Credentials, Installations, KvNamespaces, Storage, Tenants, Trust,
};

const CHAIN: &str = "0123456789abcdef0123456789abcdef";

fn ids(tenant: &str) -> (TenantId, InstallationId) {
    (
        tenant.parse().expect("tenant"),
        "crm".parse().expect("installation"),
    )
}

fn bearer(value: &str) -> Secret {
    Secret::new(CredentialType::Bearer, value.into()).expect("valid")
}

/// A store under `root/data` (its master key beside it, at `root/master.key`) holding a
/// tenant with a credential and a kv value, another without secrets, a trusted key, a bundle
/// and a trail of one checkpointed record.
fn populated(root: &Path) -> Store {
    let store = Store::open(&root.join("data"), Some(&root.join("master.key"))).expect("store");
    let (acme, crm) = ids("acme");
    store.create_tenant(&acme).expect("acme");
    store.create_tenant(&ids("globex").0).expect("globex");
    store
        .set_credential(
            &acme,
            &crm,
            "token",
            vec![],
            &bearer("tok-1"),
            CredentialType::Bearer,
        )
        .expect("credential");
    let quota = KvQuota {
        max_bytes: 1024,
        max_keys: 10,
        max_value_bytes: 100,
    };
    store
        .kv(&acme, &crm)
        .set("cursor", b"kv-value", &quota)
        .expect("kv");
    let key = PublicKey::from_verifying_key(SigningKey::from_bytes(&[1; 32]).verifying_key());
    store
        .add_trusted_key(&key, "Acme", 100)
        .expect("trust")
        .expect("added");
    store.put_bundle(b"bundle bytes").expect("bundle");
    store.audit_chain(CHAIN).expect("chain");
    let record = AuditAppend {
        seq: 0,
        line: b"record 0",
        index: &[],
    };
    store.append_audit(&[record]).expect("record");
    store.set_audit_checkpointed(1).expect("checkpointed");
    store
}

fn seal(digest: &str, created: &str) -> String {
    format!("sealed {digest} at {created}")
}

#[test]
fn a_backup_restores_everything_but_the_master_key_and_the_chain_id() {
    let root = tempfile::tempdir().expect("tempdir");
    let store = populated(root.path());
    let file = root.path().join("nightly.airlock-backup");
    let manifest = store.backup(&file, seal).expect("backup");
    assert_eq!(manifest.seal, seal(&manifest.digest, &manifest.created));
    assert_eq!((manifest.format, manifest.store_format), (FORMAT, 2));
    // acme's key file, the trust file and the bundle.
    assert_eq!(manifest.files, 3);
    let meta = fs::metadata(&file).expect("backup file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let bytes = fs::read(&file).expect("read");
    let master = fs::read(root.path().join("master.key")).expect("master key");
    assert!(
        !holds(&bytes, master.trim_ascii()),
        "the master key is in the backup"
    );
    assert!(matches!(
        store.backup(&file, seal),
        Err(BackupError::Exists { .. })
    ));

    let target = root.path().join("restored");
    let staged = stage(&file, &target).expect("stage");
    assert!(!target.exists(), "nothing is in place before the commit");
    assert_eq!(staged.manifest(), &manifest);
    assert_eq!(
        staged.trail(),
        &RestoredTrail {
            chain: Some(CHAIN.into()),
            checkpointed: 1
        }
    );
    assert_eq!(staged.commit().expect("commit"), target);
    let mode = fs::metadata(&target)
        .expect("restored")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    let restored = Store::open(&target, Some(&root.path().join("master.key"))).expect("open");
    assert_eq!(restored.check_data_keys().expect("keys open"), 1);
    let (acme, crm) = ids("acme");
    let tenants: Vec<String> = restored
        .tenants()
        .expect("tenants")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(tenants, ["acme", "globex"]);
    let token = restored
        .secrets(&acme, &crm)
        .get("token", CredentialType::Bearer)
        .expect("read")
        .expect("kept");
    assert_eq!(token.expose(), "tok-1");
    assert_eq!(
        restored.kv(&acme, &crm).get("cursor"),
        Ok(Some(b"kv-value".to_vec()))
    );
    assert_eq!(
        restored.trusted_keys().expect("trust"),
        store.trusted_keys().expect("trust")
    );
    let digest = crate::installations::bundle_digest(b"bundle bytes");
    assert_eq!(
        restored.bundle(&digest).expect("bundle"),
        Some(b"bundle bytes".to_vec())
    );
    assert_eq!(
        restored.audit_record(0).expect("record").as_deref(),
        Some(&b"record 0"[..])
    );
    // The chain id and checkpoint count stay with the original: a new chain starts here.
    assert_eq!(restored.audit_checkpointed().expect("count"), 0);
    let fresh = "fedcba9876543210fedcba9876543210";
    assert_eq!(restored.audit_chain(fresh).expect("chain"), fresh);
}

#[test]
fn a_damaged_or_cut_backup_and_an_occupied_target_are_refused_leaving_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let store = populated(root.path());
    let file = root.path().join("backup");
    store.backup(&file, seal).expect("backup");
    let bytes = fs::read(&file).expect("read");
    let target = root.path().join("restored");
    let leftovers = || {
        fs::read_dir(root.path())
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".airlock-"))
            .count()
    };

    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    let damaged = root.path().join("damaged");
    fs::write(&damaged, &flipped).expect("write");
    match stage(&damaged, &target).map(|_| ()) {
        Err(BackupError::Damaged { .. } | BackupError::Frames { .. }) => {}
        other => panic!("a flipped byte: {other:?}"),
    }
    let cut = root.path().join("cut");
    fs::write(&cut, &bytes[..bytes.len() - 40]).expect("write");
    match stage(&cut, &target).map(|_| ()) {
        Err(BackupError::Frames {
            problem: FrameError::Truncated,
            ..
        }) => {}
        other => panic!("a cut file: {other:?}"),
    }
    assert!(!target.exists());
    assert_eq!(leftovers(), 0, "a refused restore leaves no temp dir");

    fs::create_dir(&target).expect("target");
    fs::write(target.join("db"), b"someone's data").expect("occupant");
    assert!(matches!(
        stage(&file, &target).map(|_| ()),
        Err(BackupError::Occupied { .. })
    ));
    assert_eq!(
        fs::read(target.join("db")).expect("kept"),
        b"someone's data"
    );
    // Filled between the stage and the commit: the commit is refused, and nothing is left.
    fs::remove_dir_all(&target).expect("clear");
    fs::create_dir(&target).expect("empty target");
    let staged = stage(&file, &target).expect("an empty directory is a target");
    fs::write(target.join("late"), b"x").expect("occupant");
    assert!(matches!(staged.commit(), Err(BackupError::Occupied { .. })));
    assert_eq!(leftovers(), 0);
}

#[test]
fn the_restored_keys_open_only_with_the_master_key_that_exists() {
    let root = tempfile::tempdir().expect("tempdir");
    let store = populated(root.path());
    let file = root.path().join("backup");
    store.backup(&file, seal).expect("backup");
    let target = root.path().join("restored");
    let staged = stage(&file, &target).expect("stage");

    let missing = root.path().join("no-such.key");
    let store = Store::open(staged.path(), Some(&missing)).expect("open");
    assert!(matches!(
        store.check_data_keys(),
        Err(StoreError::MasterKey(_))
    ));
    assert!(!missing.exists(), "no master key is made for a restore");
    drop(store);

    let other = root.path().join("other.key");
    MasterKey::generate(&other).expect("another key");
    let store = Store::open(staged.path(), Some(&other)).expect("open");
    assert!(matches!(
        store.check_data_keys(),
        Err(StoreError::Decrypt { .. })
    ));
}

/// A change is in a backup whole or not at all: a tenant's key file and its sealed records
/// come back together, while tenants are created, given secrets and deleted under it.
#[test]
fn key_files_and_records_agree_in_a_backup_taken_under_writes() {
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        &root.path().join("data"),
        Some(&root.path().join("master.key")),
    )
    .expect("store");
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !done.load(Ordering::SeqCst) {
                let (tenant, crm) = ids(&format!("t{i}"));
                store.create_tenant(&tenant).expect("create");
                let kind = CredentialType::Bearer;
                store
                    .set_credential(&tenant, &crm, "token", vec![], &bearer("tok"), kind)
                    .expect("credential");
                if i > 0 {
                    store
                        .delete_tenant(&ids(&format!("t{}", i - 1)).0)
                        .expect("delete");
                }
                i += 1;
            }
            i
        })
    };
    let mut files = Vec::new();
    for n in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let file = root.path().join(format!("backup-{n}"));
        store.backup(&file, seal).expect("backup");
        files.push(file);
    }
    done.store(true, Ordering::SeqCst);
    assert!(
        writer.join().expect("writer") > 2,
        "the writer made changes"
    );

    for (n, file) in files.iter().enumerate() {
        let staged = stage(file, &root.path().join(format!("restored-{n}"))).expect("stage");
        let restored =
            Store::open(staged.path(), Some(&root.path().join("master.key"))).expect("open");
        restored.check_data_keys().expect("every key opens");
        let keyed: Vec<String> = restored
            .key_files()
            .expect("keys")
            .into_iter()
            .map(|(name, _)| name.trim_end_matches(".key").to_string())
            .collect();
        for info in restored.tenants().expect("tenants") {
            let (tenant, crm) = ids(&info.id);
            let sealed = !restored
                .list_credentials(&tenant, &crm)
                .expect("list")
                .is_empty();
            assert_eq!(
                sealed,
                keyed.contains(&info.id),
                "backup {n}: tenant {} has a credential without its key or a key without it",
                info.id
            );
        }
        for tenant in &keyed {
            assert!(
                restored.tenant_exists(&ids(tenant).0).expect("exists"),
                "backup {n}: the key of deleted tenant {tenant} came back"
            );
        }
    }
}
