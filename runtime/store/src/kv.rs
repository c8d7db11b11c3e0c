//! Guests' key-value namespaces: one per (tenant, installation), usage (key count and bytes)
//! kept beside them and updated in the same transaction as every write.
//!
//! Key names are data (`contact:jane@acme.com`), so neither they nor the values are stored in
//! clear: a record is filed under a keyed hash of its name ([`DataKey::index`], under the
//! tenant's data key) and holds the name and the value, each sealed with that key. The value
//! is bound to its tenant, installation and name; the name to its tenant, installation and
//! index. `list` opens the namespace's names (at most the quota's key count) and sorts them.
//!
//! The sealing, the quota arithmetic and the [`KvBackend`] are shared; a backend supplies
//! [`KvRecords`]: records by index, and one transaction for a write and its usage.

use std::sync::Arc;

use airlock_host_api::credentials::vault::{DataKey, INDEX_LEN, KvAad, NameAad, Sealed};
use airlock_host_api::kv::{KvBackend, KvFailure, KvQuota};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::keys::{DATA_KEY_VERSION, TenantKeys};
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
pub(crate) struct Record {
    name: Sealed,
    value: Sealed,
}

impl Record {
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes).map_err(|_| corrupt())
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self).map_err(|_| corrupt())
    }

    /// The value's plaintext size (XChaCha20-Poly1305 adds a 16-byte tag).
    fn value_len(&self) -> u64 {
        self.value.ciphertext.len().saturating_sub(16) as u64
    }
}

/// One installation's namespace: what its records are sealed to.
#[derive(Clone)]
pub(crate) struct Namespace {
    pub(crate) tenant: TenantId,
    pub(crate) installation: InstallationId,
}

impl Namespace {
    /// The keyed index `key` is filed under.
    fn index(&self, data_key: &DataKey, key: &str) -> [u8; INDEX_LEN] {
        data_key.index(
            NAME_KIND,
            &[self.installation.as_str(), key],
            DATA_KEY_VERSION,
        )
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

    /// The index `key` is filed under, and its record holding `value` (already sealed).
    fn seal(&self, data_key: &DataKey, key: &str, value: Sealed) -> ([u8; INDEX_LEN], Record) {
        let index = self.index(data_key, key);
        let name = data_key.seal(&self.name_aad(&hex::encode(index)), key.as_bytes());
        (index, Record { name, value })
    }

    /// The name of the record filed under `index`.
    fn open_name(
        &self,
        data_key: &DataKey,
        index: &[u8],
        record: &Record,
    ) -> Result<String, StoreError> {
        let name = data_key
            .open(&self.name_aad(&hex::encode(index)), &record.name)
            .map_err(|_| decrypt())?;
        String::from_utf8(name.to_vec()).map_err(|_| corrupt())
    }
}

/// A write's effect on the namespace's usage, checked against the quota in the write's
/// transaction (by [`Self::apply`], whichever backend runs it).
#[derive(Clone, Copy)]
pub(crate) struct Change {
    key_len: u64,
    /// The new value's length and the quota, for a set; `None` for a delete.
    set: Option<(u64, KvQuota)>,
}

impl Change {
    /// The usage after the change, given the record it replaces or removes; `Ok(None)` when
    /// there is nothing to change (a delete of an absent key), `Err` with the quota's refusal.
    pub(crate) fn apply(
        &self,
        mut usage: KvUsage,
        old: Option<&[u8]>,
    ) -> Result<Result<Option<KvUsage>, String>, StoreError> {
        let old = old.map(Record::decode).transpose()?;
        match (self.set, old) {
            (None, None) => Ok(Ok(None)),
            (None, Some(old)) => {
                usage.keys = usage.keys.saturating_sub(1);
                usage.bytes = usage.bytes.saturating_sub(self.key_len + old.value_len());
                Ok(Ok(Some(usage)))
            }
            (Some((value_len, quota)), old) => {
                match old {
                    Some(old) => {
                        usage.bytes = usage.bytes.saturating_sub(self.key_len + old.value_len());
                    }
                    None => usage.keys += 1,
                }
                usage.bytes += self.key_len + value_len;
                if usage.keys > quota.max_keys {
                    return Ok(Err(format!(
                        "{} keys, the most is {}",
                        usage.keys, quota.max_keys
                    )));
                }
                if usage.bytes > quota.max_bytes {
                    return Ok(Err(format!(
                        "this write makes {} bytes, the most is {}",
                        usage.bytes, quota.max_bytes
                    )));
                }
                Ok(Ok(Some(usage)))
            }
        }
    }
}

/// A record as a backend lists it: the index it is filed under, and its bytes.
pub(crate) type IndexedRecord = (Vec<u8>, Vec<u8>);

/// A backend's kv records: what [`StoredKv`] needs of it.
pub(crate) trait KvRecords: TenantKeys + Send + Sync + 'static {
    /// The record filed under `index`.
    fn kv_record(&self, ns: &Namespace, index: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every record of the namespace, with its index.
    fn kv_records(&self, ns: &Namespace) -> Result<Vec<IndexedRecord>, StoreError>;

    /// The namespace's usage now.
    fn kv_usage_of(&self, ns: &Namespace) -> Result<KvUsage, StoreError>;

    /// In one transaction: reads the usage and the record under `index`, applies `change`
    /// and, unless it refuses or has nothing to do, writes `record` there (removes it when
    /// `None`) and the new usage. Whether anything was written, or the quota's refusal.
    fn kv_write(
        &self,
        ns: &Namespace,
        index: &[u8],
        record: Option<Vec<u8>>,
        change: Change,
    ) -> Result<Result<bool, String>, StoreError>;
}

/// One installation's namespace in a store: the only [`KvBackend`] guests get.
pub(crate) struct StoredKv<S> {
    store: S,
    ns: Namespace,
}

impl<S: KvRecords> StoredKv<S> {
    pub(crate) fn new(store: S, tenant: TenantId, installation: InstallationId) -> Arc<Self> {
        Arc::new(Self {
            store,
            ns: Namespace {
                tenant,
                installation,
            },
        })
    }

    /// The namespace's usage now.
    pub(crate) fn usage(&self) -> Result<KvUsage, StoreError> {
        self.store.kv_usage_of(&self.ns)
    }

    fn data_key(&self, create: bool) -> Result<Option<DataKey>, KvFailure> {
        self.store
            .tenant_key(&self.ns.tenant, create)
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

impl<S: KvRecords> KvBackend for StoredKv<S> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvFailure> {
        // No data key: nothing of the tenant was ever stored.
        let Some(data_key) = self.data_key(false)? else {
            return Ok(None);
        };
        let index = self.ns.index(&data_key, key);
        let Some(bytes) = self
            .store
            .kv_record(&self.ns, &index)
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let record = Record::decode(&bytes).map_err(unavailable)?;
        let plain = data_key
            .open(&self.ns.aad(key), &record.value)
            .map_err(|_| unavailable(decrypt()))?;
        Ok(Some(plain.to_vec()))
    }

    fn set(&self, key: &str, value: &[u8], quota: &KvQuota) -> Result<(), KvFailure> {
        let data_key = self.data_key(true)?.ok_or_else(|| unavailable(corrupt()))?;
        let sealed = data_key.seal(&self.ns.aad(key), value);
        let (index, record) = self.ns.seal(&data_key, key, sealed);
        let change = Change {
            key_len: key.len() as u64,
            set: Some((value.len() as u64, *quota)),
        };
        let record = record.encode().map_err(unavailable)?;
        match self.store.kv_write(&self.ns, &index, Some(record), change) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(refusal)) => Err(KvFailure::Quota(refusal)),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn delete(&self, key: &str) -> Result<bool, KvFailure> {
        let Some(data_key) = self.data_key(false)? else {
            return Ok(false);
        };
        let index = self.ns.index(&data_key, key);
        let change = Change {
            key_len: key.len() as u64,
            set: None,
        };
        match self.store.kv_write(&self.ns, &index, None, change) {
            Ok(Ok(removed)) => Ok(removed),
            Ok(Err(refusal)) => Err(KvFailure::Quota(refusal)),
            Err(e) => Err(unavailable(e)),
        }
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
        let mut keys = Vec::new();
        for (index, bytes) in self.store.kv_records(&self.ns).map_err(unavailable)? {
            let record = Record::decode(&bytes).map_err(unavailable)?;
            let name = self
                .ns
                .open_name(&data_key, &index, &record)
                .map_err(unavailable)?;
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

/// On sled: records in the `kv` tree under (tenant, installation, index), usage in `kv-usage`.
fn sled_prefix(ns: &Namespace) -> Vec<u8> {
    format!("{}\0{}\0", ns.tenant, ns.installation).into_bytes()
}

fn sled_key(ns: &Namespace, index: &[u8]) -> Vec<u8> {
    let mut out = sled_prefix(ns);
    out.extend_from_slice(index);
    out
}

fn sled_usage_key(ns: &Namespace) -> Vec<u8> {
    format!("{}\0{}", ns.tenant, ns.installation).into_bytes()
}

impl KvRecords for Store {
    fn kv_record(&self, ns: &Namespace, index: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(KV)?.get(sled_key(ns, index))?.map(|b| b.to_vec()))
    }

    fn kv_records(&self, ns: &Namespace) -> Result<Vec<IndexedRecord>, StoreError> {
        let prefix = sled_prefix(ns);
        self.tree(KV)?
            .scan_prefix(&prefix)
            .map(|entry| {
                let (key, bytes) = entry?;
                Ok((key[prefix.len()..].to_vec(), bytes.to_vec()))
            })
            .collect()
    }

    fn kv_usage_of(&self, ns: &Namespace) -> Result<KvUsage, StoreError> {
        Ok(self
            .tree(KV_USAGE)?
            .get(sled_usage_key(ns))?
            .map_or_else(KvUsage::default, |b| KvUsage::decode(&b)))
    }

    fn kv_write(
        &self,
        ns: &Namespace,
        index: &[u8],
        record: Option<Vec<u8>>,
        change: Change,
    ) -> Result<Result<bool, String>, StoreError> {
        let _pass = self.writing();
        let (kv, usage) = (self.tree(KV)?, self.tree(KV_USAGE)?);
        let (record_key, usage_key) = (sled_key(ns, index), sled_usage_key(ns));
        let result = (&kv, &usage).transaction(|(kv, usage)| {
            let now = usage
                .get(&usage_key)?
                .map_or_else(KvUsage::default, |b| KvUsage::decode(&b));
            let old = kv.get(&record_key)?;
            let next = match change.apply(now, old.as_deref()) {
                Ok(Ok(Some(next))) => next,
                Ok(Ok(None)) => return Ok(Ok(false)),
                Ok(Err(refusal)) => return Ok(Err(refusal)),
                Err(e) => return Err(ConflictableTransactionError::Abort(e)),
            };
            match &record {
                Some(record) => kv.insert(record_key.as_slice(), record.as_slice())?,
                None => kv.remove(record_key.as_slice())?,
            };
            usage.insert(usage_key.as_slice(), &next.encode())?;
            Ok(Ok(true))
        });
        result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => e.into(),
        })
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

    fn delete_kv(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<u64, StoreError> {
        let _pass = self.writing();
        let ns = Namespace {
            tenant: tenant.clone(),
            installation: installation.clone(),
        };
        let (kv, usage) = (self.tree(KV)?, self.tree(KV_USAGE)?);
        let mut deleted = 0;
        for key in kv.scan_prefix(sled_prefix(&ns)).keys() {
            kv.remove(key?)?;
            deleted += 1;
        }
        usage.remove(sled_usage_key(&ns))?;
        self.db()?.flush()?;
        Ok(deleted)
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
            let ns = Namespace {
                tenant: utf8(tenant)?.parse().map_err(|_| corrupt())?,
                installation: utf8(installation)?.parse().map_err(|_| corrupt())?,
            };
            let value: Sealed = serde_json::from_slice(&bytes).map_err(|_| corrupt())?;
            let data_key = keys.get(&ns.tenant)?;
            let (index, record) = ns.seal(data_key, utf8(name)?, value);
            tree.insert(sled_key(&ns, &index), record.encode()?)?;
        }
        Ok(())
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

    fn namespace(store: &Store, tenant: &str, installation: &str) -> Arc<StoredKv<Store>> {
        StoredKv::new(
            store.clone(),
            tenant.parse().expect("tenant"),
            installation.parse().expect("installation"),
        )
    }

    fn data_key(kv: &StoredKv<Store>) -> DataKey {
        kv.store
            .tenant_key(&kv.ns.tenant, true)
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
        store.db().expect("db").flush().expect("flush");
        let tree = store.tree(KV).expect("tree");
        let (acme_key, globex_key) = (data_key(&a), data_key(&c));
        let sealed = tree
            .get(sled_key(&a.ns, &a.ns.index(&acme_key, "cursor")))
            .expect("read")
            .expect("present");
        tree.insert(sled_key(&c.ns, &c.ns.index(&globex_key, "cursor")), sealed)
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
        store.db().expect("db").flush().expect("flush");
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
                .get(sled_key(&a.ns, &a.ns.index(&key, names[0])))
                .expect("get")
                .expect("present"),
        )
        .expect("record");
        let second_key = sled_key(&a.ns, &a.ns.index(&key, names[1]));
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
