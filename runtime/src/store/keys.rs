//! The master key and the per-tenant data keys it wraps.
//!
//! A tenant's data key is created the first time one of its secrets is stored; deleting the
//! wrapped key makes every secret of that tenant unreadable (crypto-shredding).

use std::sync::{Arc, PoisonError};

use airlock_host_api::credentials::vault::{DataKey, MasterKey, WrappedKey};

use super::{Store, StoreError};
use crate::ids::TenantId;

/// Default master key file name inside the data dir (outside the database itself).
pub const MASTER_KEY_FILE: &str = "master.key";
const TENANT_KEYS: &str = "tenant-keys";

/// Version of the data key that seals values (one per tenant for now; rotation bumps it).
pub(super) const DATA_KEY_VERSION: u32 = 1;

impl Store {
    /// The master key, resolved once per process.
    pub(crate) fn master(&self) -> Result<Arc<MasterKey>, StoreError> {
        let mut slot = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = slot.as_ref() {
            return Ok(key.clone());
        }
        let (key, _source) = MasterKey::resolve(&self.master_path)?;
        let key = Arc::new(key);
        *slot = Some(key.clone());
        Ok(key)
    }

    /// Removes the tenant's wrapped data key: what it sealed can never be opened again.
    pub(crate) fn shred_tenant_key(&self, tenant: &TenantId) -> Result<(), StoreError> {
        self.tree(TENANT_KEYS)?.remove(tenant.as_str())?;
        Ok(())
    }

    /// The tenant's data key; created (and stored wrapped) when `create` and there is none.
    pub(crate) fn tenant_key(
        &self,
        tenant: &TenantId,
        create: bool,
    ) -> Result<Option<DataKey>, StoreError> {
        let tree = self.tree(TENANT_KEYS)?;
        let master = self.master()?;
        let unwrap = |bytes: &[u8]| {
            let wrapped: WrappedKey =
                serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
                    what: format!("data key of tenant {tenant}"),
                })?;
            master
                .unwrap(tenant.as_str(), &wrapped)
                .map_err(|_| StoreError::Decrypt {
                    what: format!("data key of tenant {tenant}"),
                })
        };
        if let Some(bytes) = tree.get(tenant.as_str())? {
            return unwrap(&bytes).map(Some);
        }
        if !create {
            return Ok(None);
        }
        let key = DataKey::generate();
        let wrapped = serde_json::to_vec(&master.wrap(tenant.as_str(), &key)).map_err(|_| {
            StoreError::Corrupt {
                what: format!("data key of tenant {tenant}"),
            }
        })?;
        // Two writers racing: the first key stored wins and both use it.
        match tree.compare_and_swap(tenant.as_str(), None as Option<&[u8]>, Some(wrapped))? {
            Ok(()) => {
                tree.flush()?;
                Ok(Some(key))
            }
            Err(race) => match race.current {
                Some(bytes) => unwrap(&bytes).map(Some),
                None => Err(StoreError::Corrupt {
                    what: format!("data key of tenant {tenant}"),
                }),
            },
        }
    }
}
