//! The data dir's format, and the migration from format 1.
//!
//! Format 1 kept the wrapped tenant data keys in a tree of the database, and kv key names,
//! installation config and OAuth user ids (of connections, and of consents offered or under
//! way) in clear. Format 2 keeps each wrapped key in a file of its own (see [`super::keys`]),
//! files kv records and per-user connections under keyed hashes with the names sealed, seals
//! the users of consents, and seals installation config. Every other field of a record is
//! carried as it is.
//!
//! Converting records in place would not do: sled is log-structured, and what it replaced or
//! removed stays in old segments of its files. So the migration builds a new database beside
//! the old one (`db.next`) from the old one's records, converted, swaps it in (`db` → `db.old`,
//! `db.next` → `db`) and shreds the old one. The old database is never written to, and each
//! step can be resumed: a crash before the swap leaves `db.next` (destroyed at the next open,
//! which starts over), a crash after it leaves `db.old` (destroyed at the next open).
//! Opening holds an exclusive lock on `DATA/store.lock`, so two processes never migrate at once.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use super::database::Database;
use super::{DB_DIR, Store, StoreError, connections, installations, kv};
use airlock_runtime::fsutil;
use airlock_runtime::ids::TenantId;

/// The format this version writes.
pub(super) const FORMAT: u32 = 2;
const META: &str = "store-meta";
const FORMAT_KEY: &[u8] = b"format";
/// Format 1's tree of wrapped tenant data keys.
const TENANT_KEYS: &str = "tenant-keys";
const OLD_DIR: &str = "db.old";
const NEXT_DIR: &str = "db.next";
const LOCK_FILE: &str = "store.lock";
/// Records copied per batch.
pub(super) const BATCH: usize = 10_000;

/// An exclusive lock on the data dir, held while the store opens (and migrates).
pub(super) struct OpenLock {
    /// Closing the file (dropping the lock) releases it.
    _file: fs::File,
}

impl OpenLock {
    pub(super) fn acquire(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(LOCK_FILE);
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io(std::io::Error::last_os_error()));
        }
        Ok(Self { _file: file })
    }
}

/// Finishes or undoes a migration a crash interrupted (see the module doc).
pub(super) fn recover(data_dir: &Path) -> Result<(), StoreError> {
    let (db, old, next) = (
        data_dir.join(DB_DIR),
        data_dir.join(OLD_DIR),
        data_dir.join(NEXT_DIR),
    );
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    if old.exists() {
        if !db.exists() {
            // Stopped between the two renames: the new database is complete.
            fs::rename(&next, &db).map_err(io(&next))?;
            fsutil::sync_dir(data_dir).map_err(io(data_dir))?;
        }
        fsutil::shred_tree(&old).map_err(io(&old))?;
    } else if next.exists() {
        // Stopped while building: start over.
        fsutil::shred_tree(&next).map_err(io(&next))?;
    }
    Ok(())
}

impl Store {
    /// Brings a store just opened to [`FORMAT`]: a new database is marked, one of format 1
    /// migrated, one of a later format refused.
    pub(super) fn upgrade(self, fresh: bool) -> Result<Self, StoreError> {
        match self.format()? {
            Some(FORMAT) => Ok(self),
            None if fresh => {
                self.mark_format()?;
                Ok(self)
            }
            None => self.migrate(),
            Some(found) => Err(StoreError::Format { found }),
        }
    }

    /// Whether the database is of [`FORMAT`].
    pub(super) fn format_is_current(&self) -> Result<bool, StoreError> {
        Ok(self.format()? == Some(FORMAT))
    }

    fn format(&self) -> Result<Option<u32>, StoreError> {
        // Looked up without creating the tree: a database of format 1 is not written to.
        if !self
            .db()?
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == META.as_bytes())
        {
            return Ok(None);
        }
        let Some(bytes) = self.tree(META)?.get(FORMAT_KEY)? else {
            return Ok(None);
        };
        let bytes = <[u8; 4]>::try_from(bytes.as_ref()).map_err(|_| StoreError::Corrupt {
            what: "data dir format".into(),
        })?;
        Ok(Some(u32::from_be_bytes(bytes)))
    }

    fn mark_format(&self) -> Result<(), StoreError> {
        self.tree(META)?.insert(FORMAT_KEY, &FORMAT.to_be_bytes())?;
        self.db()?.flush()?;
        Ok(())
    }

    /// Migrates a database of format 1 (see the module doc); returns the store reopened.
    fn migrate(self) -> Result<Self, StoreError> {
        let data_dir = self.data_dir.clone();
        let (db, old, next) = (
            data_dir.join(DB_DIR),
            data_dir.join(OLD_DIR),
            data_dir.join(NEXT_DIR),
        );
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        tracing::info!(data_dir = %data_dir.display(), "migrating the data dir to format {FORMAT}");
        let (master, trust_writer, gate) = (
            self.master.clone(),
            self.trust_writer.clone(),
            self.gate.clone(),
        );
        let built = Self {
            database: Arc::new(Database::open(&next)?),
            ..self.clone()
        };
        if let Err(e) = self.copy_into(&built) {
            drop(built);
            // Best effort: the next open destroys it anyway.
            let _ = fsutil::shred_tree(&next);
            return Err(StoreError::Migrate {
                reason: e.to_string(),
            });
        }
        built.mark_format()?;
        drop(built);
        drop(self);
        fs::rename(&db, &old).map_err(io(&db))?;
        fs::rename(&next, &db).map_err(io(&next))?;
        fsutil::sync_dir(&data_dir).map_err(io(&data_dir))?;
        fsutil::shred_tree(&old).map_err(io(&old))?;
        Ok(Self {
            database: Arc::new(Database::open(&db)?),
            data_dir,
            master,
            trust_writer,
            gate,
            members: Arc::default(),
            run_lock: Arc::default(),
        })
    }

    /// Copies every record of this (format 1) store into `to`, converted.
    fn copy_into(&self, to: &Self) -> Result<(), StoreError> {
        let names = self.db()?.tree_names();
        // Keys first: converting the other records needs them.
        if names.iter().any(|n| n.as_ref() == TENANT_KEYS.as_bytes()) {
            for entry in self.tree(TENANT_KEYS)?.iter() {
                let (tenant, wrapped) = entry?;
                let tenant: TenantId = std::str::from_utf8(&tenant)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt {
                        what: "tenant id of a data key".into(),
                    })?;
                to.adopt_tenant_key(&tenant, &wrapped)?;
            }
        }
        for name in names {
            let from = self.db()?.open_tree(&name)?;
            match std::str::from_utf8(&name).unwrap_or("") {
                TENANT_KEYS | META => {}
                kv::KV => to.migrate_kv(&from)?,
                installations::INSTALLATIONS => to.migrate_installations(&from)?,
                connections::CONNECTIONS => to.migrate_connections(&from)?,
                connections::PENDING => to.migrate_consents(&from)?,
                connections::STARTS => to.migrate_offers(&from)?,
                _ => copy_tree(&from, &to.db()?.open_tree(&name)?)?,
            }
        }
        Ok(())
    }
}

/// Copies every record of `from` into `to` as it is.
fn copy_tree(from: &sled::Tree, to: &sled::Tree) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    for entry in from.iter() {
        let (key, value) = entry?;
        batch.insert(key, value);
        pending += 1;
        if pending == BATCH {
            to.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    to.apply_batch(batch)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use airlock_host_api::credentials::vault::{
        ConnectionAad, DataKey, KvAad, MasterKey, WrappedKey,
    };
    use airlock_host_api::kv::KvBackend;
    use serde_json::json;
    use sha2::Digest as _;

    use super::*;
    use crate::kv::StoredKv;
    use crate::records::{ConnectionKey, TakenState};
    use crate::testing::{holds, raw_bytes};
    use crate::traits::{Connections, Consents, Installations};
    use airlock_runtime::ids::{InstallationId, UserId};

    const USER: &str = "jane.canary-9e41@acme.example";
    const KV_NAME: &str = "contact:kv-canary-31f7";
    const CONFIG: &str = r#"{"account": "config-canary-a05c"}"#;

    /// A data dir as format 1 wrote it: wrapped key in a tree, kv names, config and user ids
    /// (of a connection, a consent under way, an offered one) in clear; a connection with its
    /// token origin and sealed provider account, a consent bound to a browser. Returns the
    /// wrapped key.
    fn format_1(data: &Path) -> WrappedKey {
        let master = MasterKey::generate(&data.join(super::super::keys::MASTER_KEY_FILE))
            .expect("master key");
        let key = DataKey::generate();
        let wrapped = master.wrap("acme", &key);
        let db = sled::open(data.join(DB_DIR)).expect("db");
        db.open_tree(TENANT_KEYS)
            .expect("tree")
            .insert("acme", serde_json::to_vec(&wrapped).expect("json"))
            .expect("key");
        let value = key.seal(
            &KvAad {
                tenant: "acme",
                installation: "crm",
                key: KV_NAME,
                key_version: 1,
            },
            b"kv-value",
        );
        db.open_tree(kv::KV)
            .expect("tree")
            .insert(
                format!("acme\0crm\0{KV_NAME}"),
                serde_json::to_vec(&value).expect("json"),
            )
            .expect("kv");
        db.open_tree(kv::KV_USAGE)
            .expect("tree")
            .insert(
                "acme\0crm",
                &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 30],
            )
            .expect("usage");
        let installation = json!({
            "tenant": "acme", "installation": "crm", "integration": "crm-sync",
            "version": "0.1.0", "bundle": "00".repeat(32), "key": "ed25519:k",
            "grant": {"egress": []}, "config": CONFIG, "created": 1, "updated": 1,
        });
        db.open_tree(installations::INSTALLATIONS)
            .expect("tree")
            .insert(
                "acme\0crm",
                serde_json::to_vec(&installation).expect("json"),
            )
            .expect("installation");
        let aad = |purpose| ConnectionAad {
            tenant: "acme",
            installation: "slack",
            credential: "slack",
            user: USER,
            purpose,
            key_version: 1,
        };
        let tokens = key.seal(&aad("tokens"), br#"{"access":"xoxb-jane","refresh":null}"#);
        let account = key.seal(
            &aad("provider-account"),
            br#"{"id":"U024BE7LH","source":"token-response"}"#,
        );
        let connection = json!({
            "status": "connected", "scopes": ["chat:write"], "connected": 1, "updated": 1,
            "expires_at": null, "refreshable": false, "revision": 7, "sealed": tokens,
            "token_origin": "https://slack.com", "account": account,
        });
        db.open_tree(connections::CONNECTIONS)
            .expect("tree")
            .insert(
                format!("acme\0slack\0slack\0{USER}"),
                serde_json::to_vec(&connection).expect("json"),
            )
            .expect("connection");
        let consent = json!({
            "consent": {"tenant": "acme", "installation": "slack", "credential": "slack",
                        "user": USER, "scopes": [], "redirect_uri": "https://a.example/cb",
                        "expires": u64::MAX},
            "verifier": key.seal(&aad("pkce-verifier"), b"verifier-1"),
            "browser": hex::encode(sha2::Sha256::digest(b"nonce-1")),
        });
        db.open_tree(connections::PENDING)
            .expect("tree")
            .insert(
                sha2::Sha256::digest(b"state-1"),
                serde_json::to_vec(&consent).expect("json"),
            )
            .expect("consent");
        db.open_tree(connections::STARTS)
            .expect("tree")
            .insert(
                sha2::Sha256::digest(b"start-1"),
                serde_json::to_vec(&consent["consent"]).expect("json"),
            )
            .expect("offered");
        db.open_tree("audit")
            .expect("tree")
            .insert("0001", "a record")
            .expect("audit");
        db.flush().expect("flush");
        wrapped
    }

    /// The wrapped key's ciphertext as format 1 stored it (in JSON).
    fn needle(wrapped: &WrappedKey) -> String {
        serde_json::to_string(&wrapped.ciphertext).expect("json")
    }

    /// Everything format 1 held opens through the store, and nothing of it is in clear.
    fn assert_migrated(data: &Path, store: &Store, wrapped: &WrappedKey) {
        let acme: TenantId = "acme".parse().expect("tenant");
        let kv = StoredKv::new(store.clone(), acme.clone(), "crm".parse().expect("id"));
        assert_eq!(kv.get(KV_NAME), Ok(Some(b"kv-value".to_vec())));
        assert_eq!(kv.list("contact:", None, 10), Ok(vec![KV_NAME.to_string()]));
        let crm: InstallationId = "crm".parse().expect("id");
        let record = store
            .installation(&acme, &crm)
            .expect("read")
            .expect("kept");
        assert_eq!(record.config.as_deref(), Some(CONFIG));
        let (slack, jane): (InstallationId, UserId) =
            ("slack".parse().expect("id"), USER.parse().expect("user"));
        let key = ConnectionKey {
            tenant: &acme,
            installation: &slack,
            credential: "slack",
            user: Some(&jane),
        };
        let tokens = store.connection(key).expect("read").expect("kept");
        assert_eq!(tokens.revision, 7);
        assert_eq!(tokens.token_origin.as_deref(), Some("https://slack.com"));
        assert_eq!(
            tokens.account.as_ref().map(|a| a.id.as_str()),
            Some("U024BE7LH")
        );
        assert_eq!(
            tokens.access.map(|a| a.expose().to_string()).as_deref(),
            Some("xoxb-jane")
        );
        let listed = store.connections_of(&acme, &slack).expect("list");
        assert_eq!(listed[0].user.as_deref(), Some(USER));
        assert_eq!(listed[0].account, tokens.account);
        assert_eq!(
            store
                .db()
                .expect("db")
                .open_tree("audit")
                .expect("tree")
                .get("0001")
                .expect("get")
                .as_deref(),
            Some(&b"a record"[..])
        );
        assert!(!data.join(OLD_DIR).exists() && !data.join(NEXT_DIR).exists());
        store.db().expect("db").flush().expect("flush");
        let raw = raw_bytes(&data.join(DB_DIR));
        for needle in [USER, "kv-canary", "config-canary", &needle(wrapped)] {
            assert!(
                !holds(&raw, needle.as_bytes()),
                "{needle} is in the database"
            );
        }
        let file = store.tenant_key_path(&acme);
        let on_disk: WrappedKey =
            serde_json::from_slice(&fs::read(file).expect("key file")).expect("json");
        assert_eq!(&on_disk, wrapped);
        assert!(store.tree(TENANT_KEYS).expect("tree").is_empty());
    }

    #[test]
    fn a_format_1_data_dir_is_migrated_and_its_old_files_destroyed() {
        let dir = tempfile::TempDir::new().expect("temp");
        let wrapped = format_1(dir.path());
        // The scan sees what format 1 left in clear, so its silence later means something.
        let before = raw_bytes(&dir.path().join(DB_DIR));
        for needle in [USER, "kv-canary", "config-canary", &needle(&wrapped)] {
            assert!(holds(&before, needle.as_bytes()), "{needle} not found");
        }
        let store = Store::open(dir.path(), None).expect("migrated");
        assert_eq!(store.format().expect("format"), Some(FORMAT));
        assert_migrated(dir.path(), &store, &wrapped);
        let offered = store
            .take_offered_consent("start-1")
            .expect("take")
            .expect("offered");
        assert_eq!(offered.user.as_deref(), Some(USER));
        // Still bound to the browser that started it.
        match store
            .take_consent("state-1", Some("nonce-1"), 0)
            .expect("take")
        {
            TakenState::Valid(consent, verifier) => {
                assert_eq!(consent.user.as_deref(), Some(USER));
                assert_eq!(verifier.as_str(), "verifier-1");
            }
            _ => panic!("the consent survives the migration"),
        }
        drop(store);
        // Opening again migrates nothing.
        let store = Store::open(dir.path(), None).expect("reopen");
        assert_eq!(store.format().expect("format"), Some(FORMAT));
    }

    #[test]
    fn an_interrupted_migration_is_resumed_or_started_over() {
        // Stopped while building `db.next`: it is destroyed and the migration starts over.
        let dir = tempfile::TempDir::new().expect("temp");
        let wrapped = format_1(dir.path());
        fs::create_dir(dir.path().join(NEXT_DIR)).expect("next");
        fs::write(dir.path().join(NEXT_DIR).join("db"), USER).expect("half-built");
        // A key file written by the interrupted run is taken as it is.
        let keys = dir.path().join(super::super::keys::KEYS_DIR);
        fs::create_dir(&keys).expect("keys");
        fs::write(
            keys.join("acme.key"),
            serde_json::to_vec(&wrapped).expect("json"),
        )
        .expect("key file");
        let store = Store::open(dir.path(), None).expect("migrated");
        assert_migrated(dir.path(), &store, &wrapped);
        drop(store);

        // Stopped between the renames: the new database is moved in, the old one destroyed.
        fs::rename(dir.path().join(DB_DIR), dir.path().join(NEXT_DIR)).expect("rename");
        fs::create_dir(dir.path().join(OLD_DIR)).expect("old");
        fs::write(dir.path().join(OLD_DIR).join("db"), USER).expect("old db");
        let store = Store::open(dir.path(), None).expect("resumed");
        assert_migrated(dir.path(), &store, &wrapped);
        drop(store);

        // Two different keys for one tenant: refused, and the data dir is left as it was.
        let dir = tempfile::TempDir::new().expect("temp");
        format_1(dir.path());
        let master = MasterKey::load(&dir.path().join(super::super::keys::MASTER_KEY_FILE))
            .expect("master key");
        let other = master.wrap("acme", &DataKey::generate());
        let keys = dir.path().join(super::super::keys::KEYS_DIR);
        fs::create_dir(&keys).expect("keys");
        fs::write(
            keys.join("acme.key"),
            serde_json::to_vec(&other).expect("json"),
        )
        .expect("other key");
        let refused = Store::open(dir.path(), None)
            .map(|_| ())
            .expect_err("two keys");
        assert!(
            refused
                .to_string()
                .contains("a different data key of tenant acme"),
            "{refused}"
        );
        assert!(!dir.path().join(NEXT_DIR).exists());
        let db = sled::open(dir.path().join(DB_DIR)).expect("db");
        assert_eq!(db.open_tree(TENANT_KEYS).expect("tree").len(), 1);
    }

    #[test]
    fn a_newer_format_is_refused() {
        let dir = tempfile::TempDir::new().expect("temp");
        let store = Store::open(dir.path(), None).expect("store");
        store
            .tree(META)
            .expect("tree")
            .insert(FORMAT_KEY, &3u32.to_be_bytes())
            .expect("format");
        drop(store);
        let refused = Store::open(dir.path(), None)
            .map(|_| ())
            .expect_err("newer");
        assert!(
            matches!(refused, StoreError::Format { found: 3 }),
            "{refused}"
        );
    }
}
