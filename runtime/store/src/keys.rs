//! The master key and the per-tenant data keys it wraps.
//!
//! A tenant's data key is created the first time something of that tenant is sealed, and kept
//! wrapped in a file of its own, `DATA/keys/<tenant>.key` (0600, in a 0700 directory), never in
//! the database: sled is log-structured, and a value removed from it stays readable in old
//! segments until they are rewritten, so a wrapped key deleted there could be read back and,
//! with the master key, open everything the tenant ever sealed. A file can be destroyed:
//! deleting a tenant overwrites its key file with zeros, syncs, unlinks it and syncs the
//! directory (crypto-shredding; what the device underneath may keep is
//! docs/security-model.md's "Deletion" section).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use airlock_host_api::credentials::vault::{DataKey, MasterKey, VaultError, WrappedKey};

use super::{Store, StoreError};
use airlock_runtime::fsutil::{self, Confined};
use airlock_runtime::ids::TenantId;

/// Default master key file name inside the data dir (outside the database itself).
pub const MASTER_KEY_FILE: &str = "master.key";
/// What a rotation appends to the key file's name for the new key it stages beside it.
pub const STAGED_SUFFIX: &str = ".next";

/// Where the master key that replaces the one at `path` is staged during a rotation.
pub fn staged_key_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(STAGED_SUFFIX);
    PathBuf::from(name)
}
/// The directory of the data dir that holds the wrapped tenant data keys.
pub const KEYS_DIR: &str = "keys";
/// A wrapped key file is about 200 bytes of JSON; anything much larger is not one.
pub(super) const MAX_KEY_FILE_LEN: u64 = 4096;

/// Version of the data key that seals values (one per tenant for now; rotation bumps it).
pub(super) const DATA_KEY_VERSION: u32 = 1;

/// The master key, resolved the first time a store needs it and kept for the process: from
/// `AIRLOCK_MASTER_KEY`, else the key file (created 0600 if there is none).
pub(crate) struct MasterSlot {
    path: PathBuf,
    key: Mutex<Option<Arc<MasterKey>>>,
}

impl MasterSlot {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            key: Mutex::default(),
        }
    }

    /// The key, resolved once (made the first time a secret is stored); `check` runs on a
    /// newly resolved key before it is kept (the PostgreSQL store compares it with the one the
    /// database's data keys are wrapped by).
    pub(crate) fn get(
        &self,
        check: impl FnOnce(&MasterKey) -> Result<(), StoreError>,
    ) -> Result<Arc<MasterKey>, StoreError> {
        self.get_with(
            |path| MasterKey::resolve(path).map(|(key, _source)| key),
            check,
        )
    }

    /// The key, resolved once by `resolve` from the key file's path (a restore never makes
    /// one), then checked as for [`Self::get`].
    pub(crate) fn get_with(
        &self,
        resolve: impl FnOnce(&Path) -> Result<MasterKey, VaultError>,
        check: impl FnOnce(&MasterKey) -> Result<(), StoreError>,
    ) -> Result<Arc<MasterKey>, StoreError> {
        let mut slot = self.key.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = slot.as_ref() {
            return Ok(key.clone());
        }
        let key = resolve(&self.path)?;
        check(&key)?;
        let key = Arc::new(key);
        *slot = Some(key.clone());
        Ok(key)
    }

    /// The key read again, when the one held no longer opens what the store holds (the master
    /// key was rotated while this process ran): the staged key beside the key file, then the
    /// key file, the first that `check` accepts kept in place of the old one. `None` when
    /// neither is there and accepted (a key from `AIRLOCK_MASTER_KEY` is never replaced).
    pub(crate) fn reload(
        &self,
        check: impl Fn(&MasterKey) -> Result<(), StoreError>,
    ) -> Result<Option<Arc<MasterKey>>, StoreError> {
        if MasterKey::in_environment() {
            return Ok(None);
        }
        for path in [staged_key_path(&self.path), self.path.clone()] {
            let Ok(key) = MasterKey::load(&path) else {
                continue;
            };
            match check(&key) {
                Ok(()) => {
                    let key = Arc::new(key);
                    *self.key.lock().unwrap_or_else(PoisonError::into_inner) = Some(key.clone());
                    return Ok(Some(key));
                }
                Err(StoreError::MasterKeyMismatch { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// The tenants' data keys, however a backend keeps them: what the sealing both backends share
/// needs.
pub(crate) trait TenantKeys {
    /// The tenant's data key; created (and stored wrapped) when `create` and there is none.
    fn tenant_key(&self, tenant: &TenantId, create: bool) -> Result<Option<DataKey>, StoreError>;

    /// The key to seal a new value of `tenant` with, created if the tenant has none yet.
    fn sealing_key(&self, tenant: &TenantId) -> Result<DataKey, StoreError> {
        self.tenant_key(tenant, true)?
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("data key of tenant {tenant}"),
            })
    }
}

impl TenantKeys for Store {
    fn tenant_key(&self, tenant: &TenantId, create: bool) -> Result<Option<DataKey>, StoreError> {
        Store::tenant_key(self, tenant, create)
    }
}

impl Store {
    /// The master key, resolved once per process.
    pub(crate) fn master(&self) -> Result<Arc<MasterKey>, StoreError> {
        self.master.get(|_| Ok(()))
    }

    /// Where `tenant`'s wrapped data key is kept.
    pub fn tenant_key_path(&self, tenant: &TenantId) -> PathBuf {
        self.data_dir.join(KEYS_DIR).join(key_file(tenant))
    }

    /// The keys directory as a capability (tenant ids are file-name safe, and the handle
    /// keeps any name inside it regardless); created (0700) when `create`, else `None` if
    /// there is none yet.
    pub(super) fn keys_dir(&self, create: bool) -> Result<Option<Confined>, StoreError> {
        let path = self.data_dir.join(KEYS_DIR);
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        match Confined::open(&path).map_err(io)? {
            Some(dir) => Ok(Some(dir)),
            None if create => {
                let dir = Confined::create(&path, 0o700).map_err(io)?;
                fsutil::sync_dir(&self.data_dir).map_err(|source| StoreError::Io {
                    path: self.data_dir.clone(),
                    source,
                })?;
                Ok(Some(dir))
            }
            None => Ok(None),
        }
    }

    /// Destroys the tenant's wrapped data key: what it sealed can never be opened again.
    pub(crate) fn shred_tenant_key(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let Some(dir) = self.keys_dir(false)? else {
            return Ok(());
        };
        let name = key_file(tenant);
        dir.shred(&name).map_err(|source| StoreError::Io {
            path: dir.path_of(&name),
            source,
        })?;
        Ok(())
    }

    /// The tenant's data key; created (and stored wrapped) when `create` and there is none.
    pub(crate) fn tenant_key(
        &self,
        tenant: &TenantId,
        create: bool,
    ) -> Result<Option<DataKey>, StoreError> {
        if let Some(dir) = self.keys_dir(false)?
            && let Some(wrapped) = read_wrapped(&dir, tenant)?
        {
            return self.unwrap_key(tenant, &wrapped).map(Some);
        }
        if !create {
            return Ok(None);
        }
        let master = self.master()?;
        let key = DataKey::generate();
        let bytes = encode(&master.wrap(tenant.as_str(), &key), tenant)?;
        match self.write_key_file(tenant, &bytes) {
            Ok(()) => Ok(Some(key)),
            // Two writers racing: the first key stored wins and both use it.
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                let dir = self.keys_dir(false)?.ok_or_else(|| corrupt(tenant))?;
                let wrapped = read_wrapped(&dir, tenant)?.ok_or_else(|| corrupt(tenant))?;
                self.unwrap_key(tenant, &wrapped).map(Some)
            }
            Err(e) => Err(e),
        }
    }

    /// Takes over a wrapped key found in a database of format 1 (which kept them in a tree):
    /// written as the tenant's key file, or checked against the one a previous, interrupted
    /// migration wrote.
    pub(super) fn adopt_tenant_key(
        &self,
        tenant: &TenantId,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        match self.write_key_file(tenant, bytes) {
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                let dir = self.keys_dir(false)?.ok_or_else(|| corrupt(tenant))?;
                let on_disk = read_wrapped(&dir, tenant)?;
                let in_db: WrappedKey =
                    serde_json::from_slice(bytes).map_err(|_| corrupt(tenant))?;
                if on_disk.as_ref() == Some(&in_db) {
                    Ok(())
                } else {
                    Err(StoreError::Exists {
                        what: format!(
                            "a different data key of tenant {tenant} than the database's ({})",
                            self.tenant_key_path(tenant).display()
                        ),
                    })
                }
            }
            other => other,
        }
    }

    /// Every tenant's key file as stored (name and bytes), for a backup.
    pub(super) fn key_files(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let Some(dir) = self.keys_dir(false)? else {
            return Ok(Vec::new());
        };
        let io = |name: &str| {
            let path = dir.path_of(name);
            move |source| StoreError::Io { path, source }
        };
        let mut files = Vec::new();
        for name in dir.file_names().map_err(io(""))? {
            // A key being written is not a key yet (and the gate keeps writers out).
            if tenant_of_key_file(&name).is_none() {
                continue;
            }
            if let Some(bytes) = dir.read(&name, MAX_KEY_FILE_LEN).map_err(io(&name))? {
                files.push((name, bytes));
            }
        }
        files.sort();
        Ok(files)
    }

    /// Unwraps every tenant's data key with the master key, which must exist already (never
    /// made here: a new one could open nothing). A restore checks this before it puts anything
    /// in place. Returns how many keys opened.
    pub fn check_data_keys(&self) -> Result<usize, StoreError> {
        let mut opened = 0;
        for (name, _) in self.key_files()? {
            let tenant = tenant_of_key_file(&name).ok_or_else(|| StoreError::Corrupt {
                what: format!("key file {name}"),
            })?;
            self.master
                .get_with(MasterKey::resolve_existing, |_| Ok(()))?;
            self.tenant_key(&tenant, false)?;
            opened += 1;
        }
        Ok(opened)
    }

    /// Re-wraps every tenant's key file under `new`, each file replaced atomically and the old
    /// one's bytes overwritten; a file
    /// `new` already opens (a rotation interrupted and run again) is left as it is. Returns
    /// how many were re-wrapped. The caller holds the store: no other process seals meanwhile.
    pub(crate) fn rewrap_key_files(&self, new: &Arc<MasterKey>) -> Result<u64, StoreError> {
        let _pass = self.writing();
        let Some(dir) = self.keys_dir(false)? else {
            return Ok(0);
        };
        let mut rewrapped = 0;
        for (name, _) in self.key_files()? {
            let tenant = tenant_of_key_file(&name).ok_or_else(|| StoreError::Corrupt {
                what: format!("key file {name}"),
            })?;
            let wrapped = read_wrapped(&dir, &tenant)?.ok_or_else(|| corrupt(&tenant))?;
            if new.unwrap(tenant.as_str(), &wrapped).is_ok() {
                continue;
            }
            let key = self.unwrap_key(&tenant, &wrapped)?;
            let bytes = encode(&new.wrap(tenant.as_str(), &key), &tenant)?;
            // The old wrapping is destroyed: with the retired master key it would open the key.
            dir.replace_shredding(&name, &bytes)
                .map_err(|source| StoreError::Io {
                    path: dir.path_of(&name),
                    source,
                })?;
            rewrapped += 1;
        }
        Ok(rewrapped)
    }

    /// Destroys what a crash left of key files being written (temp files never renamed into
    /// place). Called when the store opens, under its lock, so no writer is running.
    pub(super) fn sweep_key_dir(&self) -> Result<(), StoreError> {
        let Some(dir) = self.keys_dir(false)? else {
            return Ok(());
        };
        let io = |name: &str| {
            let path = dir.path_of(name);
            move |source| StoreError::Io { path, source }
        };
        for name in dir.file_names().map_err(io(""))? {
            if name.starts_with(".tmp") {
                dir.shred(&name).map_err(io(&name))?;
            }
        }
        Ok(())
    }

    fn unwrap_key(&self, tenant: &TenantId, wrapped: &WrappedKey) -> Result<DataKey, StoreError> {
        self.master()?
            .unwrap(tenant.as_str(), wrapped)
            .map_err(|_| StoreError::Decrypt {
                what: format!("data key of tenant {tenant}"),
            })
    }

    /// Writes `tenant`'s new key file (never over an existing one), creating `keys/` (0700)
    /// if needed.
    fn write_key_file(&self, tenant: &TenantId, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = self.keys_dir(true)?.ok_or_else(|| corrupt(tenant))?;
        let name = key_file(tenant);
        dir.write_private_new_atomic(&name, bytes)
            .map_err(|source| StoreError::Io {
                path: dir.path_of(&name),
                source,
            })
    }
}

fn key_file(tenant: &TenantId) -> String {
    format!("{tenant}.key")
}

/// The tenant whose key file is named `name`; `None` for any other name.
pub(super) fn tenant_of_key_file(name: &str) -> Option<TenantId> {
    name.strip_suffix(".key")?.parse().ok()
}

/// `tenant`'s wrapped key in `dir`; `None` if there is no file. Anything but a small JSON
/// file there is a damaged key, refused.
fn read_wrapped(dir: &Confined, tenant: &TenantId) -> Result<Option<WrappedKey>, StoreError> {
    let name = key_file(tenant);
    let bytes = match dir.read(&name, MAX_KEY_FILE_LEN) {
        Ok(None) => return Ok(None),
        Ok(Some(bytes)) => bytes,
        Err(e) if matches!(e.kind(), io::ErrorKind::Other | io::ErrorKind::IsADirectory) => {
            return Err(corrupt(tenant));
        }
        Err(source) => {
            return Err(StoreError::Io {
                path: dir.path_of(&name),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|_| corrupt(tenant))
}

fn encode(wrapped: &WrappedKey, tenant: &TenantId) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(wrapped).map_err(|_| corrupt(tenant))
}

fn corrupt(tenant: &TenantId) -> StoreError {
    StoreError::Corrupt {
        what: format!("data key of tenant {tenant}"),
    }
}

/// The data keys of the tenants a migration meets, each unwrapped once (records come sorted
/// by tenant).
pub(super) struct KeyCache<'a> {
    store: &'a Store,
    last: Option<(TenantId, DataKey)>,
}

impl<'a> KeyCache<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store, last: None }
    }

    /// `tenant`'s data key, created if it has none.
    pub(super) fn get(&mut self, tenant: &TenantId) -> Result<&DataKey, StoreError> {
        if self.last.as_ref().is_none_or(|(t, _)| t != tenant) {
            let key = self
                .store
                .tenant_key(tenant, true)?
                .ok_or_else(|| StoreError::Corrupt {
                    what: format!("data key of tenant {tenant}"),
                })?;
            self.last = Some((tenant.clone(), key));
        }
        match &self.last {
            Some((_, key)) => Ok(key),
            None => Err(StoreError::Corrupt {
                what: format!("data key of tenant {tenant}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{holds, raw_bytes};
    use std::fs;

    #[test]
    fn a_tenant_key_lives_in_its_own_file_and_shredding_leaves_no_copy() {
        let dir = tempfile::TempDir::new().expect("temp");
        let store = Store::open(dir.path(), None).expect("store");
        let acme: TenantId = "acme".parse().expect("tenant");
        assert!(store.tenant_key(&acme, false).expect("read").is_none());
        let key = store.tenant_key(&acme, true).expect("create").expect("key");
        let path = store.tenant_key_path(&acme);
        let meta = fs::metadata(&path).expect("key file");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
        let keys_dir = fs::metadata(dir.path().join(KEYS_DIR)).expect("keys dir");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&keys_dir.permissions()) & 0o777,
            0o700
        );
        // The same key comes back, from the file; none of it is in the database.
        let aad = airlock_host_api::credentials::vault::ConfigAad {
            tenant: "acme",
            installation: "one",
            key_version: DATA_KEY_VERSION,
        };
        let sealed = key.seal(&aad, b"x");
        let again = store.tenant_key(&acme, true).expect("read").expect("key");
        assert_eq!(&again.open(&aad, &sealed).expect("open")[..], b"x");
        let wrapped: WrappedKey =
            serde_json::from_slice(&fs::read(&path).expect("read")).expect("wrapped");
        let needle = serde_json::to_string(&wrapped.ciphertext).expect("json");
        store.db().expect("db").flush().expect("flush");
        let db = raw_bytes(&dir.path().join(super::super::DB_DIR));
        assert!(!holds(&db, needle.as_bytes()) && !holds(&db, &wrapped.ciphertext));
        assert!(holds(&raw_bytes(dir.path()), needle.as_bytes()));

        // Shredding leaves no copy anywhere in the data dir, and a new key opens nothing old.
        store.shred_tenant_key(&acme).expect("shred");
        assert!(!path.exists());
        assert!(!holds(&raw_bytes(dir.path()), needle.as_bytes()));
        let fresh = store.tenant_key(&acme, true).expect("create").expect("key");
        assert!(fresh.open(&aad, &sealed).is_err());
        // Shredding twice is not an error.
        store.shred_tenant_key(&acme).expect("shred");
        store.shred_tenant_key(&acme).expect("shred again");
    }

    #[test]
    fn a_damaged_key_file_fails_closed_and_stray_temp_files_are_swept() {
        let dir = tempfile::TempDir::new().expect("temp");
        let store = Store::open(dir.path(), None).expect("store");
        let acme: TenantId = "acme".parse().expect("tenant");
        store.tenant_key(&acme, true).expect("create");
        let path = store.tenant_key_path(&acme);
        fs::write(&path, b"{not json").expect("damage");
        assert!(matches!(
            store.tenant_key(&acme, true),
            Err(StoreError::Corrupt { .. })
        ));
        let stray = dir.path().join(KEYS_DIR).join(".tmpXYZ");
        fs::write(&stray, b"half a key").expect("stray");
        drop(store);
        let _store = Store::open(dir.path(), None).expect("reopen");
        assert!(!stray.exists());
        assert!(path.exists());
    }
}
