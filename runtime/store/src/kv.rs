//! Guests' key-value namespaces: one per (tenant, installation), usage (key count and bytes)
//! kept beside them and updated in the same transaction as every write.
//!
//! Key names are data (`contact:jane@acme.com`), so neither they nor the values are on disk in
//! clear: a record is filed under a keyed hash of its name ([`DataKey::index`], under the
//! tenant's data key) and holds the name and the value, each sealed with that key. The value
//! is bound to its tenant, installation and name; the name to its tenant, installation and
//! index. `list` opens the namespace's names (at most the quota's key count) and sorts them.

use std::sync::Arc;

use airlock_host_api::credentials::vault::{DataKey, INDEX_LEN, KvAad, NameAad, Sealed};
use airlock_host_api::kv::{KvBackend, KvFailure, KvQuota};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::keys::DATA_KEY_VERSION;
use super::{Store, StoreError};
use crate::records::*;
use crate::traits::*;
use airlock_runtime::ids::{InstallationId, TenantId};

pub(super) const KV: &str = "kv";
pub(super) const KV_USAGE: &str = "kv-usage";
/// The domain of kv key names, for their index and their seal.
const NAME_KIND: &str = "kv-key";

impl KvUsage {
    fn encode(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.keys.to_be_bytes());
        out[8..].copy_from_slice(&self.bytes.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Self {
        let word = |range: std::ops::Range<usize>| {
            bytes
                .get(range)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes)
        };
        Self {
            keys: word(0..8),
            bytes: word(8..16),
        }
    }
}

/// One kv record as stored, under the keyed index of its name.
#[derive(Serialize, Deserialize)]
struct Record {
    name: Sealed,
    value: Sealed,
}

impl Record {
    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes).map_err(|_| corrupt())
    }

    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self).map_err(|_| corrupt())
    }

    /// The value's plaintext size (XChaCha20-Poly1305 adds a 16-byte tag).
    fn value_len(&self) -> u64 {
        self.value.ciphertext.len().saturating_sub(16) as u64
    }
}

/// One installation's namespace in the store: the only [`KvBackend`] guests get.
pub struct StoredKv {
    store: Store,
    tenant: TenantId,
    installation: InstallationId,
}

impl StoredKv {
    pub fn new(store: Store, tenant: TenantId, installation: InstallationId) -> Arc<Self> {
        Arc::new(Self {
            store,
            tenant,
            installation,
        })
    }

    fn prefix(&self) -> Vec<u8> {
        format!("{}\0{}\0", self.tenant, self.installation).into_bytes()
    }

    /// The keyed index `key` is filed under.
    fn index(&self, data_key: &DataKey, key: &str) -> [u8; INDEX_LEN] {
        data_key.index(
            NAME_KIND,
            &[self.installation.as_str(), key],
            DATA_KEY_VERSION,
        )
    }

    fn record_key(&self, index: &[u8]) -> Vec<u8> {
        let mut out = self.prefix();
        out.extend_from_slice(index);
        out
    }

    fn usage_key(&self) -> Vec<u8> {
        format!("{}\0{}", self.tenant, self.installation).into_bytes()
    }

    fn aad<'a>(&'a self, key: &'a str) -> KvAad<'a> {
        KvAad {
            tenant: self.tenant.as_str(),
            installation: self.installation.as_str(),
            key,
            key_version: DATA_KEY_VERSION,
        }
    }

    fn name_aad<'a>(&'a self, index: &'a str) -> NameAad<'a> {
        NameAad {
            kind: NAME_KIND,
            tenant: self.tenant.as_str(),
            installation: self.installation.as_str(),
            index,
            key_version: DATA_KEY_VERSION,
        }
    }

    /// Where `key` is filed, and its record holding `value` (already sealed).
    fn seal(&self, data_key: &DataKey, key: &str, value: Sealed) -> (Vec<u8>, Record) {
        let index = self.index(data_key, key);
        let name = data_key.seal(&self.name_aad(&hex::encode(index)), key.as_bytes());
        (self.record_key(&index), Record { name, value })
    }

    /// The namespace's usage now.
    pub fn usage(&self) -> Result<KvUsage, StoreError> {
        Ok(self
            .store
            .tree(KV_USAGE)?
            .get(self.usage_key())?
            .map_or_else(KvUsage::default, |b| KvUsage::decode(&b)))
    }

    fn data_key(&self, create: bool) -> Result<Option<DataKey>, KvFailure> {
        self.store
            .tenant_key(&self.tenant, create)
            .map_err(unavailable)
    }
}

fn corrupt() -> StoreError {
    StoreError::Corrupt {
        what: "kv record".to_string(),
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(bytes).map_err(|_| corrupt())
}

fn decrypt() -> StoreError {
    StoreError::Decrypt {
        what: "kv record".to_string(),
    }
}

fn unavailable(e: StoreError) -> KvFailure {
    tracing::error!(error = %e, "kv store failed");
    KvFailure::Unavailable("the kv store cannot be read or written".to_string())
}

impl KvBackend for StoredKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvFailure> {
        // No data key: nothing of the tenant was ever stored.
        let Some(data_key) = self.data_key(false)? else {
            return Ok(None);
        };
        let tree = self.store.tree(KV).map_err(unavailable)?;
        let Some(bytes) = tree
            .get(self.record_key(&self.index(&data_key, key)))
            .map_err(|e| unavailable(e.into()))?
        else {
            return Ok(None);
        };
        let record = Record::decode(&bytes).map_err(unavailable)?;
        let plain = data_key
            .open(&self.aad(key), &record.value)
            .map_err(|_| unavailable(decrypt()))?;
        Ok(Some(plain.to_vec()))
    }

    fn set(&self, key: &str, value: &[u8], quota: &KvQuota) -> Result<(), KvFailure> {
        let _pass = self.store.writing();
        let data_key = self.data_key(true)?.ok_or_else(|| unavailable(corrupt()))?;
        let (record_key, record) = self.seal(&data_key, key, data_key.seal(&self.aad(key), value));
        let sealed = record.encode().map_err(unavailable)?;
        let (kv, usage) = (
            self.store.tree(KV).map_err(unavailable)?,
            self.store.tree(KV_USAGE).map_err(unavailable)?,
        );
        let usage_key = self.usage_key();
        let size = (key.len() + value.len()) as u64;
        let result = (&kv, &usage).transaction(|(kv, usage)| {
            let mut now = usage
                .get(&usage_key)?
                .map_or_else(KvUsage::default, |b| KvUsage::decode(&b));
            match kv.get(&record_key)? {
                Some(old) => {
                    let old = Record::decode(&old)
                        .map_err(ConflictableTransactionError::Abort)?
                        .value_len();
                    now.bytes = now.bytes.saturating_sub(key.len() as u64 + old);
                }
                None => now.keys += 1,
            }
            now.bytes += size;
            if now.keys > quota.max_keys {
                return Err(ConflictableTransactionError::Abort(StoreError::Exists {
                    what: format!("quota: {} keys, the most is {}", now.keys, quota.max_keys),
                }));
            }
            if now.bytes > quota.max_bytes {
                return Err(ConflictableTransactionError::Abort(StoreError::Exists {
                    what: format!(
                        "quota: this write makes {} bytes, the most is {}",
                        now.bytes, quota.max_bytes
                    ),
                }));
            }
            kv.insert(record_key.as_slice(), sealed.as_slice())?;
            usage.insert(usage_key.as_slice(), &now.encode())?;
            Ok(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(StoreError::Exists { what })) => Err(KvFailure::Quota(
                what.trim_start_matches("quota: ").to_string(),
            )),
            Err(TransactionError::Abort(e)) => Err(unavailable(e)),
            Err(TransactionError::Storage(e)) => Err(unavailable(e.into())),
        }
    }

    fn delete(&self, key: &str) -> Result<bool, KvFailure> {
        let _pass = self.store.writing();
        let Some(data_key) = self.data_key(false)? else {
            return Ok(false);
        };
        let (kv, usage) = (
            self.store.tree(KV).map_err(unavailable)?,
            self.store.tree(KV_USAGE).map_err(unavailable)?,
        );
        let record_key = self.record_key(&self.index(&data_key, key));
        let usage_key = self.usage_key();
        let result = (&kv, &usage).transaction(|(kv, usage)| {
            let Some(old) = kv.remove(record_key.as_slice())? else {
                return Ok(false);
            };
            let old = Record::decode(&old)
                .map_err(ConflictableTransactionError::Abort)?
                .value_len();
            let mut now = usage
                .get(&usage_key)?
                .map_or_else(KvUsage::default, |b| KvUsage::decode(&b));
            now.keys = now.keys.saturating_sub(1);
            now.bytes = now.bytes.saturating_sub(key.len() as u64 + old);
            usage.insert(usage_key.as_slice(), &now.encode())?;
            Ok(true)
        });
        result.map_err(|e| match e {
            TransactionError::Abort(e) => unavailable(e),
            TransactionError::Storage(e) => unavailable(e.into()),
        })
    }

    fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, KvFailure> {
        let Some(data_key) = self.data_key(false)? else {
            return Ok(Vec::new());
        };
        let tree = self.store.tree(KV).map_err(unavailable)?;
        let namespace = self.prefix();
        let mut keys = Vec::new();
        for entry in tree.scan_prefix(&namespace) {
            let (full, bytes) = entry.map_err(|e| unavailable(e.into()))?;
            let index = hex::encode(&full[namespace.len()..]);
            let record = Record::decode(&bytes).map_err(unavailable)?;
            let name = data_key
                .open(&self.name_aad(&index), &record.name)
                .map_err(|_| unavailable(decrypt()))?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| unavailable(corrupt()))?;
            if name.starts_with(prefix) && after.is_none_or(|a| name.as_str() > a) {
                keys.push(name);
            }
        }
        // Byte order, as the names' UTF-8 sorts.
        keys.sort_unstable();
        keys.truncate(limit);
        Ok(keys)
    }
}

impl KvNamespaces for Store {
    fn kv(&self, tenant: &TenantId, installation: &InstallationId) -> Arc<dyn KvBackend> {
        StoredKv::new(self.clone(), tenant.clone(), installation.clone())
    }

    fn kv_usage(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<KvUsage, StoreError> {
        StoredKv::new(self.clone(), tenant.clone(), installation.clone()).usage()
    }
}

impl Store {
    /// Files the records of a format-1 kv tree (keyed by their names in clear) under keyed
    /// indexes with their names sealed, into this store. Values keep their seal: its binding
    /// (tenant, installation, name) is unchanged.
    pub(super) fn migrate_kv(&self, old: &sled::Tree) -> Result<(), StoreError> {
        let tree = self.tree(KV)?;
        let mut keys = super::keys::KeyCache::new(self);
        for entry in old.iter() {
            let (key, bytes) = entry?;
            let mut parts = key.splitn(3, |b| *b == 0);
            let (Some(tenant), Some(installation), Some(name)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(corrupt());
            };
            let namespace = self.kv_namespace(utf8(tenant)?, utf8(installation)?)?;
            let value: Sealed = serde_json::from_slice(&bytes).map_err(|_| corrupt())?;
            let data_key = keys.get(&namespace.tenant)?;
            let (record_key, record) = namespace.seal(data_key, utf8(name)?, value);
            tree.insert(record_key, record.encode()?)?;
        }
        Ok(())
    }

    fn kv_namespace(&self, tenant: &str, installation: &str) -> Result<StoredKv, StoreError> {
        Ok(StoredKv {
            store: self.clone(),
            tenant: tenant.parse().map_err(|_| corrupt())?,
            installation: installation.parse().map_err(|_| corrupt())?,
        })
    }

    /// Removes every kv value and usage record of `tenant` (with the tenant).
    pub(super) fn delete_kv_of(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let prefix = format!("{tenant}\0");
        for name in [KV, KV_USAGE] {
            let tree = self.tree(name)?;
            for key in tree.scan_prefix(prefix.as_bytes()).keys() {
                tree.remove(key?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{holds, raw_bytes};

    fn namespace(store: &Store, tenant: &str, installation: &str) -> Arc<StoredKv> {
        StoredKv::new(
            store.clone(),
            tenant.parse().expect("tenant"),
            installation.parse().expect("installation"),
        )
    }

    fn data_key(kv: &StoredKv) -> DataKey {
        kv.store
            .tenant_key(&kv.tenant, true)
            .expect("key")
            .expect("created")
    }

    const QUOTA: KvQuota = KvQuota {
        max_bytes: 100,
        max_keys: 3,
        max_value_bytes: 100,
    };

    #[test]
    fn namespaces_are_apart_and_quotas_hold_across_writes() {
        let data = tempfile::TempDir::new().expect("temp dir");
        let store = Store::open(data.path(), None).expect("store");
        let a = namespace(&store, "acme", "sync");
        let b = namespace(&store, "acme", "sync-2");
        let c = namespace(&store, "globex", "sync");
        a.set("cursor", b"canary-kv-0001", &QUOTA).expect("set");
        assert_eq!(a.get("cursor"), Ok(Some(b"canary-kv-0001".to_vec())));
        assert_eq!(b.get("cursor"), Ok(None));
        assert_eq!(c.get("cursor"), Ok(None));
        assert_eq!(a.usage().expect("usage"), KvUsage { keys: 1, bytes: 20 });

        // Replacing a value counts its new size only; the key count is unchanged.
        a.set("cursor", b"x", &QUOTA).expect("replace");
        assert_eq!(a.usage().expect("usage"), KvUsage { keys: 1, bytes: 7 });
        a.set("k2", b"", &QUOTA).expect("set");
        a.set("k3", b"", &QUOTA).expect("set");
        assert!(
            matches!(a.set("k4", b"", &QUOTA), Err(KvFailure::Quota(m)) if m.contains("4 keys"))
        );
        assert!(matches!(
            a.set("k2", &[0; 95], &QUOTA),
            Err(KvFailure::Quota(m)) if m.contains("bytes")
        ));
        // A refused write changed nothing.
        assert_eq!(a.usage().expect("usage"), KvUsage { keys: 3, bytes: 11 });
        assert_eq!(a.get("k2"), Ok(Some(Vec::new())));

        assert_eq!(a.list("k", None, 10), Ok(vec!["k2".into(), "k3".into()]));
        assert_eq!(a.list("", Some("cursor"), 1), Ok(vec!["k2".into()]));
        assert_eq!(a.list("", Some("k3"), 10), Ok(Vec::new()));
        assert_eq!(c.list("", None, 10), Ok(Vec::new()));
        assert_eq!(a.delete("k2"), Ok(true));
        assert_eq!(a.delete("k2"), Ok(false));
        assert_eq!(a.usage().expect("usage"), KvUsage { keys: 2, bytes: 9 });

        // Another tenant's key cannot open a copied record.
        store.db.flush().expect("flush");
        let tree = store.tree(KV).expect("tree");
        let (acme_key, globex_key) = (data_key(&a), data_key(&c));
        let sealed = tree
            .get(a.record_key(&a.index(&acme_key, "cursor")))
            .expect("read")
            .expect("present");
        tree.insert(c.record_key(&c.index(&globex_key, "cursor")), sealed)
            .expect("copy");
        assert!(matches!(c.get("cursor"), Err(KvFailure::Unavailable(_))));
        store
            .delete_kv_of(&"acme".parse().expect("tenant"))
            .expect("deleted");
        assert_eq!(a.get("cursor"), Ok(None));
        assert_eq!(a.usage().expect("usage"), KvUsage::default());
    }

    #[test]
    fn key_names_are_never_on_disk_and_list_opens_them_in_order() {
        let data = tempfile::TempDir::new().expect("temp dir");
        let store = Store::open(data.path(), None).expect("store");
        let a = namespace(&store, "acme", "crm");
        let quota = KvQuota {
            max_bytes: 1 << 20,
            max_keys: 100,
            max_value_bytes: 1024,
        };
        let names = [
            "contact:jane@acme-canary.example",
            "contact:bob@acme-canary.example",
            "cursor-canary-7d1e",
            "contact:zed@acme-canary.example",
        ];
        for name in names {
            a.set(name, b"v", &quota).expect("set");
        }
        assert_eq!(
            a.list("contact:", None, 10),
            Ok(vec![
                "contact:bob@acme-canary.example".into(),
                "contact:jane@acme-canary.example".into(),
                "contact:zed@acme-canary.example".into(),
            ])
        );
        assert_eq!(
            a.list("contact:", Some("contact:bob@acme-canary.example"), 1),
            Ok(vec!["contact:jane@acme-canary.example".into()])
        );
        assert_eq!(
            a.list("", Some(names[3]), 10),
            Ok(vec![names[2].to_string()])
        );
        store.db.flush().expect("flush");
        let raw = raw_bytes(data.path());
        for needle in ["acme-canary", "cursor-canary", "contact:"] {
            assert!(!holds(&raw, needle.as_bytes()), "{needle} is on disk");
        }

        // A sealed name moved beside another record does not open there.
        assert_eq!(a.get(names[0]), Ok(Some(b"v".to_vec())));
        let key = data_key(&a);
        let tree = store.tree(KV).expect("tree");
        let first = Record::decode(
            &tree
                .get(a.record_key(&a.index(&key, names[0])))
                .expect("get")
                .expect("present"),
        )
        .expect("record");
        let second_key = a.record_key(&a.index(&key, names[1]));
        let mut second =
            Record::decode(&tree.get(&second_key).expect("get").expect("present")).expect("record");
        second.name = first.name;
        tree.insert(&second_key, second.encode().expect("encode"))
            .expect("swap");
        assert!(matches!(
            a.list("", None, 10),
            Err(KvFailure::Unavailable(_))
        ));
    }
}
