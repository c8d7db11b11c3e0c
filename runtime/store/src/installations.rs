//! Installation records: which signed bundle a tenant's installation runs, what the operator
//! granted it, its config, and an upgrade waiting for approval. Bundles are kept whole, by the
//! SHA-256 of their bytes, under `DATA/bundles/`, and verified again every time they are loaded.
//!
//! The config is customer data (account ids, URLs, sometimes more): it is sealed with the
//! tenant's data key, bound to tenant and installation, and opened when the record is read.

use std::path::PathBuf;

use airlock_host_api::credentials::vault::{ConfigAad, Sealed};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::keys::{DATA_KEY_VERSION, TenantKeys};
use super::{Store, StoreError};
use crate::records::*;
use crate::traits::*;
use airlock_runtime::bundle::trusted::MAX_BUNDLE_BYTES;
use airlock_runtime::fsutil::Confined;
use airlock_runtime::ids::{InstallationId, TenantId};

pub(super) const INSTALLATIONS: &str = "installations";
pub(super) const BUNDLES_DIR: &str = "bundles";

/// An installation as stored: the record without its config, and the config sealed.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    record: InstallationRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_config: Option<Sealed>,
}

fn record_key(tenant: &str, installation: &str) -> Vec<u8> {
    format!("{tenant}\0{installation}").into_bytes()
}

impl Store {
    /// Seals the config of format-1 installation records (kept in clear) into this store.
    pub(super) fn migrate_installations(&self, old: &sled::Tree) -> Result<(), StoreError> {
        let tree = self.tree(INSTALLATIONS)?;
        for entry in old.iter() {
            let (_, bytes) = entry?;
            let record: InstallationRecord =
                serde_json::from_slice(&bytes).map_err(|_| StoreError::Corrupt {
                    what: "installation record".to_string(),
                })?;
            let key = record_key(&record.tenant, &record.installation);
            tree.insert(key, encode(self, record)?)?;
        }
        Ok(())
    }
}

/// The record as stored: its config sealed with the tenant's data key, bound by the AAD to the
/// tenant and installation it names.
pub(crate) fn encode(
    keys: &impl TenantKeys,
    mut record: InstallationRecord,
) -> Result<Vec<u8>, StoreError> {
    let tenant: TenantId = record.tenant.parse().map_err(|_| corrupt(&record))?;
    let installation: InstallationId = record.installation.parse().map_err(|_| corrupt(&record))?;
    let sealed_config = match record.config.take() {
        None => None,
        Some(config) => Some(
            keys.sealing_key(&tenant)?
                .seal(&config_aad(&tenant, &installation), config.as_bytes()),
        ),
    };
    let stored = Stored {
        record,
        sealed_config,
    };
    serde_json::to_vec(&stored).map_err(|_| corrupt(&stored.record))
}

/// The quarantine in a stored record, read without opening its config.
pub(crate) fn stored_quarantine(bytes: &[u8]) -> Result<Option<Quarantine>, StoreError> {
    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        quarantine: Option<Quarantine>,
    }
    serde_json::from_slice::<Only>(bytes)
        .map(|only| only.quarantine)
        .map_err(|_| StoreError::Corrupt {
            what: "installation record".to_string(),
        })
}

/// `fresh` as it is to be stored over `current`: a put never sets or lifts a quarantine, so the
/// stored one (if any) is kept and `fresh`'s own is replaced by it. Both backends' puts use this.
pub(crate) fn keeping_quarantine(
    fresh: &[u8],
    current: Option<&[u8]>,
) -> Result<Vec<u8>, StoreError> {
    let kept = current.map(stored_quarantine).transpose()?.flatten();
    with_quarantine(fresh, kept.as_ref())
}

/// A stored record with `quarantine` in place of its own, nothing else changed.
pub(crate) fn with_quarantine(
    bytes: &[u8],
    quarantine: Option<&Quarantine>,
) -> Result<Vec<u8>, StoreError> {
    let corrupt = || StoreError::Corrupt {
        what: "installation record".to_string(),
    };
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|_| corrupt())?;
    match quarantine {
        Some(q) => {
            object.insert(
                "quarantine".into(),
                serde_json::to_value(q).map_err(|_| corrupt())?,
            );
        }
        None => {
            object.remove("quarantine");
        }
    }
    serde_json::to_vec(&object).map_err(|_| corrupt())
}

/// The record [`encode`] stored, its config opened; a clear config, or one sealed for another
/// installation, is refused.
pub(crate) fn decode(
    keys: &impl TenantKeys,
    bytes: &[u8],
) -> Result<InstallationRecord, StoreError> {
    let Stored {
        mut record,
        sealed_config,
    } = serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        what: "installation record".to_string(),
    })?;
    if record.config.is_some() {
        return Err(corrupt(&record));
    }
    let Some(sealed) = sealed_config else {
        return Ok(record);
    };
    let tenant: TenantId = record.tenant.parse().map_err(|_| corrupt(&record))?;
    let installation: InstallationId = record.installation.parse().map_err(|_| corrupt(&record))?;
    let what = || format!("config of installation {installation} of tenant {tenant}");
    let key = keys
        .tenant_key(&tenant, false)?
        .ok_or_else(|| StoreError::Decrypt { what: what() })?;
    let plain = key
        .open(&config_aad(&tenant, &installation), &sealed)
        .map_err(|_| StoreError::Decrypt { what: what() })?;
    record.config = Some(String::from_utf8(plain.to_vec()).map_err(|_| corrupt(&record))?);
    Ok(record)
}

impl Installations for Store {
    fn installation(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<Option<InstallationRecord>, StoreError> {
        self.tree(INSTALLATIONS)?
            .get(record_key(tenant.as_str(), installation.as_str()))?
            .map(|bytes| decode(self, &bytes))
            .transpose()
    }

    fn delete_installation(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<bool, StoreError> {
        let _pass = self.writing();
        let removed = self
            .tree(INSTALLATIONS)?
            .remove(record_key(tenant.as_str(), installation.as_str()))?;
        self.db()?.flush()?;
        Ok(removed.is_some())
    }

    fn put_installation(&self, record: &InstallationRecord) -> Result<(), StoreError> {
        let _pass = self.writing();
        let key = record_key(&record.tenant, &record.installation);
        let tree = self.tree(INSTALLATIONS)?;
        let fresh = encode(self, record.clone())?;
        loop {
            let current = tree.get(&key)?;
            let bytes = keeping_quarantine(&fresh, current.as_deref())?;
            if tree.compare_and_swap(&key, current, Some(bytes))?.is_ok() {
                break;
            }
        }
        self.db()?.flush()?;
        Ok(())
    }

    fn set_quarantine(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        quarantine: Option<Quarantine>,
    ) -> Result<Option<(InstallationRecord, bool)>, StoreError> {
        let _pass = self.writing();
        let key = record_key(tenant.as_str(), installation.as_str());
        let tree = self.tree(INSTALLATIONS)?;
        loop {
            let Some(current) = tree.get(&key)? else {
                return Ok(None);
            };
            if stored_quarantine(&current)?.is_some() == quarantine.is_some() {
                return Ok(Some((decode(self, &current)?, false)));
            }
            let bytes = with_quarantine(&current, quarantine.as_ref())?;
            if tree
                .compare_and_swap(&key, Some(current), Some(bytes.clone()))?
                .is_ok()
            {
                self.db()?.flush()?;
                return Ok(Some((decode(self, &bytes)?, true)));
            }
        }
    }

    fn installations(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<InstallationRecord>, StoreError> {
        let prefix = tenant.map_or_else(Vec::new, |t| format!("{t}\0").into_bytes());
        self.tree(INSTALLATIONS)?
            .scan_prefix(prefix)
            .values()
            .map(|bytes| decode(self, &bytes?))
            .collect()
    }

    fn put_bundle(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let digest = bundle_digest(bytes);
        let (dir, name) = (self.bundles()?, bundle_name(&digest));
        let io = |source| StoreError::Io {
            path: dir.path_of(&name),
            source,
        };
        if !dir.contains(&name).map_err(io)? {
            dir.write_atomic(&name, bytes).map_err(io)?;
        }
        Ok(digest)
    }

    fn bundle(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (dir, name) = (self.bundles()?, bundle_name(digest));
        dir.read(&name, MAX_BUNDLE_BYTES)
            .map_err(|source| StoreError::Io {
                path: dir.path_of(&name),
                source,
            })
    }

    fn bundle_origin(&self, digest: &str) -> PathBuf {
        self.data_dir.join(BUNDLES_DIR).join(bundle_name(digest))
    }
}

impl Store {
    /// The bundles directory, as a capability: a digest that is not one cannot name a file
    /// outside it.
    fn bundles(&self) -> Result<Confined, StoreError> {
        let path = self.data_dir.join(BUNDLES_DIR);
        Confined::create(&path, 0o700).map_err(|source| StoreError::Io { path, source })
    }
}

fn bundle_name(digest: &str) -> String {
    format!("{digest}.airlock")
}

/// Whether `name` is what a bundle is kept under (not a temp file being written).
pub(super) fn is_bundle_name(name: &str) -> bool {
    name.strip_suffix(".airlock")
        .is_some_and(|d| d.len() == 64 && d.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// The name a bundle is kept under: hex SHA-256 of its bytes.
pub fn bundle_digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn config_aad<'a>(tenant: &'a TenantId, installation: &'a InstallationId) -> ConfigAad<'a> {
    ConfigAad {
        tenant: tenant.as_str(),
        installation: installation.as_str(),
        key_version: DATA_KEY_VERSION,
    }
}

fn corrupt(record: &InstallationRecord) -> StoreError {
    StoreError::Corrupt {
        what: format!(
            "installation {} of tenant {}",
            record.installation, record.tenant
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_policy::grant::Grant;

    const CANARY: &str = "canary-config-4b1d";

    fn record(tenant: &str, installation: &str, config: Option<&str>) -> InstallationRecord {
        InstallationRecord {
            tenant: tenant.into(),
            installation: installation.into(),
            integration: "contact-mapper".into(),
            version: "0.1.0".into(),
            bundle: "00".repeat(32),
            key: "ed25519:test".into(),
            grant: Grant::default(),
            config: config.map(str::to_string),
            created: 1,
            updated: 1,
            pending: None,
            quarantine: None,
        }
    }

    #[test]
    fn config_is_sealed_in_place_and_a_moved_or_clear_one_is_refused() {
        let dir = tempfile::TempDir::new().expect("temp");
        let store = Store::open(dir.path(), None).expect("store");
        let config = format!(r#"{{"account": "{CANARY}"}}"#);
        let one = record("acme", "one", Some(&config));
        store.put_installation(&one).expect("put");
        store
            .put_installation(&record("acme", "two", None))
            .expect("put");
        let (acme, one_id, two_id) = (
            "acme".parse().expect("tenant"),
            "one".parse().expect("installation"),
            "two".parse().expect("installation"),
        );
        assert_eq!(
            store.installation(&acme, &one_id).expect("read"),
            Some(one.clone())
        );
        assert_eq!(
            store.installations(Some(&acme)).expect("list")[0].config,
            Some(config.clone())
        );
        let tree = store.tree(INSTALLATIONS).expect("tree");
        let bytes = tree
            .get(record_key("acme", "one"))
            .expect("get")
            .expect("stored");
        assert!(!String::from_utf8_lossy(&bytes).contains(CANARY));

        // The sealed config copied into another installation's record does not open there.
        let mut moved: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        moved["installation"] = "two".into();
        tree.insert(
            record_key("acme", "two"),
            serde_json::to_vec(&moved).expect("json"),
        )
        .expect("move");
        assert!(matches!(
            store.installation(&acme, &two_id),
            Err(StoreError::Decrypt { .. })
        ));
        // A config in clear (format 1) is not taken as it is.
        let clear = serde_json::to_vec(&record("acme", "two", Some("{}"))).expect("json");
        tree.insert(record_key("acme", "two"), clear)
            .expect("clear");
        assert!(matches!(
            store.installation(&acme, &two_id),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
