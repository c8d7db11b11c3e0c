//! Guests' key-value namespaces: one per (tenant, installation), values sealed with the
//! tenant's data key and bound to their namespace and key, usage (key count and bytes) kept
//! beside them and updated in the same transaction as every write.

use std::sync::Arc;

use airlock_host_api::credentials::vault::{KvAad, Sealed};
use airlock_host_api::kv::{KvBackend, KvFailure, KvQuota};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::keys::DATA_KEY_VERSION;
use super::{Store, StoreError};
use crate::ids::{InstallationId, TenantId};

pub(super) const KV: &str = "kv";
pub(super) const KV_USAGE: &str = "kv-usage";

/// A namespace's usage: keys, and bytes of keys and values (plaintext sizes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvUsage {
    pub keys: u64,
    pub bytes: u64,
}

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

    fn record_key(&self, key: &str) -> Vec<u8> {
        let mut out = self.prefix();
        out.extend_from_slice(key.as_bytes());
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

    /// The namespace's usage now.
    pub fn usage(&self) -> Result<KvUsage, StoreError> {
        Ok(self
            .store
            .tree(KV_USAGE)?
            .get(self.usage_key())?
            .map_or_else(KvUsage::default, |b| KvUsage::decode(&b)))
    }

    fn sealed_len(&self, bytes: &[u8]) -> Result<u64, StoreError> {
        let sealed: Sealed = serde_json::from_slice(bytes).map_err(|_| corrupt())?;
        // XChaCha20-Poly1305 adds a 16-byte tag.
        Ok(sealed.ciphertext.len().saturating_sub(16) as u64)
    }
}

fn corrupt() -> StoreError {
    StoreError::Corrupt {
        what: "kv value".to_string(),
    }
}

fn unavailable(e: StoreError) -> KvFailure {
    tracing::error!(error = %e, "kv store failed");
    KvFailure::Unavailable("the kv store cannot be read or written".to_string())
}

impl KvBackend for StoredKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvFailure> {
        let tree = self.store.tree(KV).map_err(unavailable)?;
        let Some(bytes) = tree
            .get(self.record_key(key))
            .map_err(|e| unavailable(e.into()))?
        else {
            return Ok(None);
        };
        let sealed: Sealed = serde_json::from_slice(&bytes).map_err(|_| unavailable(corrupt()))?;
        let data_key = self
            .store
            .tenant_key(&self.tenant, false)
            .map_err(unavailable)?
            .ok_or_else(|| unavailable(corrupt()))?;
        let plain = data_key.open(&self.aad(key), &sealed).map_err(|_| {
            unavailable(StoreError::Decrypt {
                what: "kv value".to_string(),
            })
        })?;
        Ok(Some(plain.to_vec()))
    }

    fn set(&self, key: &str, value: &[u8], quota: &KvQuota) -> Result<(), KvFailure> {
        let data_key = self
            .store
            .tenant_key(&self.tenant, true)
            .map_err(unavailable)?
            .ok_or_else(|| unavailable(corrupt()))?;
        let sealed = serde_json::to_vec(&data_key.seal(&self.aad(key), value))
            .map_err(|_| unavailable(corrupt()))?;
        let (kv, usage) = (
            self.store.tree(KV).map_err(unavailable)?,
            self.store.tree(KV_USAGE).map_err(unavailable)?,
        );
        let record_key = self.record_key(key);
        let usage_key = self.usage_key();
        let size = (key.len() + value.len()) as u64;
        let result = (&kv, &usage).transaction(|(kv, usage)| {
            let mut now = usage
                .get(&usage_key)?
                .map_or_else(KvUsage::default, |b| KvUsage::decode(&b));
            match kv.get(&record_key)? {
                Some(old) => {
                    let old = self
                        .sealed_len(&old)
                        .map_err(ConflictableTransactionError::Abort)?;
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
        let (kv, usage) = (
            self.store.tree(KV).map_err(unavailable)?,
            self.store.tree(KV_USAGE).map_err(unavailable)?,
        );
        let record_key = self.record_key(key);
        let usage_key = self.usage_key();
        let result = (&kv, &usage).transaction(|(kv, usage)| {
            let Some(old) = kv.remove(record_key.as_slice())? else {
                return Ok(false);
            };
            let old = self
                .sealed_len(&old)
                .map_err(ConflictableTransactionError::Abort)?;
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
        let tree = self.store.tree(KV).map_err(unavailable)?;
        let namespace = self.prefix();
        let mut start = namespace.clone();
        start.extend_from_slice(prefix.as_bytes());
        let mut scan = tree.scan_prefix(&start);
        let mut keys = Vec::new();
        if let Some(after) = after {
            let mut from = namespace.clone();
            from.extend_from_slice(after.as_bytes());
            // Strictly after: skip `after` itself.
            from.push(0);
            scan = tree.range(from.max(start.clone())..);
        }
        for entry in scan.keys() {
            let full = entry.map_err(|e| unavailable(e.into()))?;
            if !full.starts_with(&start) {
                break;
            }
            if keys.len() == limit {
                break;
            }
            let key = String::from_utf8(full[namespace.len()..].to_vec())
                .map_err(|_| unavailable(corrupt()))?;
            keys.push(key);
        }
        Ok(keys)
    }
}

impl Store {
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

    fn namespace(store: &Store, tenant: &str, installation: &str) -> Arc<StoredKv> {
        StoredKv::new(
            store.clone(),
            tenant.parse().expect("tenant"),
            installation.parse().expect("installation"),
        )
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

        // No plaintext on disk; another tenant's key cannot open a copied record.
        store.db().flush().expect("flush");
        let tree = store.tree(KV).expect("tree");
        let sealed = tree
            .get(a.record_key("cursor"))
            .expect("read")
            .expect("present");
        tree.insert(c.record_key("cursor"), sealed).expect("copy");
        assert!(matches!(c.get("cursor"), Err(KvFailure::Unavailable(_))));
        store
            .delete_kv_of(&"acme".parse().expect("tenant"))
            .expect("deleted");
        assert_eq!(a.get("cursor"), Ok(None));
        assert_eq!(a.usage().expect("usage"), KvUsage::default());
    }
}
