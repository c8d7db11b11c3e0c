//! The master key check and the tenants' data keys, wrapped by the master key, in `data_keys`.
//!
//! Every node must hold the same master key. The first to seal anything stores a check value
//! (a random key wrapped by its master key); a node whose master key cannot open it refuses
//! to seal or open anything, naming the cause, instead of wrapping data keys no other node
//! can open.
//!
//! Deleting a tenant deletes its wrapped key and vacuums the table, so the row's bytes leave
//! the table's pages; what PostgreSQL's write-ahead log and backups keep is docs/deploy.md's
//! "Deletion on PostgreSQL".

use std::sync::Arc;

use airlock_host_api::credentials::vault::{DataKey, MasterKey, WrappedKey};

use super::PgStore;
use crate::StoreError;
use crate::keys::TenantKeys;
use airlock_runtime::ids::TenantId;

/// The `meta` row holding the master key check.
const MASTER_CHECK: &str = "master-key-check";

impl PgStore {
    /// The master key, resolved once per process and checked against the database's.
    pub(crate) fn master(&self) -> Result<Arc<MasterKey>, StoreError> {
        self.inner.master.get(|key| self.check_master(key))
    }

    fn check_master(&self, key: &MasterKey) -> Result<(), StoreError> {
        let fresh = encode(&key.wrap(MASTER_CHECK, &DataKey::generate()))?;
        let stored: Vec<u8> = self.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&MASTER_CHECK, &fresh],
                )
                .await?;
            Ok(client
                .query_one("SELECT value FROM meta WHERE key = $1", &[&MASTER_CHECK])
                .await?
                .get(0))
        })?;
        let wrapped = decode(&stored, "the master key check")?;
        key.unwrap(MASTER_CHECK, &wrapped)
            .map(|_| ())
            .map_err(|_| StoreError::MasterKeyMismatch {
                store: self.shown().to_string(),
            })
    }

    /// Destroys the tenant's wrapped data key: what it sealed can never be opened again.
    pub(crate) fn shred_tenant_key(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let name = tenant.to_string();
        self.run(move |client| async move {
            client
                .execute("DELETE FROM data_keys WHERE tenant = $1", &[&name])
                .await?;
            // Rewrites the table so the deleted row's bytes leave its pages (a plain VACUUM
            // only marks them free). The table holds one small row per tenant.
            client.batch_execute("VACUUM FULL data_keys").await?;
            Ok(())
        })
    }
}

/// Of nodes creating a tenant's key at once, the first stored wins and all use it.
impl TenantKeys for PgStore {
    fn tenant_key(&self, tenant: &TenantId, create: bool) -> Result<Option<DataKey>, StoreError> {
        let master = self.master()?;
        let name = tenant.to_string();
        let mut stored = self.wrapped_key(&name, None)?;
        if stored.is_none() && create {
            let fresh = encode(&master.wrap(tenant.as_str(), &DataKey::generate()))?;
            stored = self.wrapped_key(&name, Some(fresh))?;
        }
        let Some(stored) = stored else {
            return Ok(None);
        };
        let what = format!("data key of tenant {tenant}");
        let wrapped = decode(&stored, &what)?;
        master
            .unwrap(tenant.as_str(), &wrapped)
            .map(Some)
            .map_err(|_| StoreError::Decrypt { what })
    }
}

impl PgStore {
    /// The tenant's wrapped key as stored, after storing `fresh` if it had none.
    fn wrapped_key(
        &self,
        tenant: &str,
        fresh: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let tenant = tenant.to_string();
        self.run(move |client| async move {
            if let Some(fresh) = fresh {
                client
                    .execute(
                        "INSERT INTO data_keys (tenant, wrapped) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                        &[&tenant, &fresh],
                    )
                    .await?;
            }
            Ok(client
                .query_opt(
                    "SELECT wrapped FROM data_keys WHERE tenant = $1",
                    &[&tenant],
                )
                .await?
                .map(|row| row.get(0)))
        })
    }
}

fn encode(wrapped: &WrappedKey) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(wrapped).map_err(|_| StoreError::Corrupt {
        what: "a wrapped key".into(),
    })
}

fn decode(bytes: &[u8], what: &str) -> Result<WrappedKey, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        what: what.to_string(),
    })
}
