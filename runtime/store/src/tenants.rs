//! Tenants: who installations, credentials and keys belong to.
//!
//! Deleting a tenant destroys its wrapped data key first (crypto-shredding: its key file is
//! overwritten and unlinked, so everything it sealed is unreadable from that moment, including
//! copies left in old database segments), then removes its records.

use std::sync::Arc;

use airlock_host_api::credentials::vault::MasterKey;

use super::{Store, StoreError};
use crate::records::*;
use crate::traits::*;
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::TenantId;

const TENANTS: &str = "tenants";

impl Tenants for Store {
    fn rewrap_data_keys(&self, new: &Arc<MasterKey>) -> Result<u64, StoreError> {
        self.rewrap_key_files(new)
    }

    fn create_tenant(&self, tenant: &TenantId) -> Result<TenantInfo, StoreError> {
        let _pass = self.writing();
        let info = TenantInfo {
            id: tenant.to_string(),
            created: now_unix(),
        };
        let bytes = serde_json::to_vec(&info).map_err(|_| StoreError::Corrupt {
            what: format!("tenant {tenant}"),
        })?;
        self.tree(TENANTS)?
            .compare_and_swap(tenant.as_str(), None as Option<&[u8]>, Some(bytes))?
            .map_err(|_| StoreError::Exists {
                what: format!("tenant {tenant}"),
            })?;
        self.db()?.flush()?;
        Ok(info)
    }

    fn tenant_exists(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        Ok(self.tree(TENANTS)?.contains_key(tenant.as_str())?)
    }

    fn tenants(&self) -> Result<Vec<TenantInfo>, StoreError> {
        self.tree(TENANTS)?
            .iter()
            .map(|entry| {
                let (key, bytes) = entry?;
                serde_json::from_slice(&bytes).map_err(|_| StoreError::Corrupt {
                    what: format!("tenant {}", String::from_utf8_lossy(&key)),
                })
            })
            .collect()
    }

    fn delete_tenant(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        let _pass = self.writing();
        if !self.tenant_exists(tenant)? {
            return Ok(false);
        }
        self.shred_tenant_key(tenant)?;
        self.delete_api_keys_of(tenant)?;
        self.db()?.flush()?;
        self.delete_kv_of(tenant)?;
        self.delete_webhooks_of(tenant)?;
        self.delete_connections_of(tenant)?;
        self.delete_runs_of(tenant, None)?;
        self.delete_schedules_of(tenant, None)?;
        let prefix = format!("{tenant}\0");
        for tree in [
            super::credentials::CREDENTIALS,
            super::installations::INSTALLATIONS,
        ] {
            let tree = self.tree(tree)?;
            for key in tree.scan_prefix(prefix.as_bytes()).keys() {
                tree.remove(key?)?;
            }
        }
        self.tree(TENANTS)?.remove(tenant.as_str())?;
        self.db()?.flush()?;
        Ok(true)
    }
}
