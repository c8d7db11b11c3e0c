//! Tenants, and their deletion: the data key first (crypto-shredding), then every row of the
//! tenant in one transaction.

use super::{PgStore, bigint, is_unique_violation, unsigned};
use crate::StoreError;
use crate::records::TenantInfo;
use crate::traits::Tenants;
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::TenantId;

/// The tables holding a tenant's rows, each with a `tenant` column.
const TENANT_TABLES: &[&str] = &[
    "api_keys",
    "kv",
    "kv_usage",
    "credentials",
    "installations",
    "webhooks",
    "oauth_connections",
    "oauth_offers",
    "oauth_pending",
];

impl Tenants for PgStore {
    fn create_tenant(&self, tenant: &TenantId) -> Result<TenantInfo, StoreError> {
        let info = TenantInfo {
            id: tenant.to_string(),
            created: now_unix(),
        };
        let (id, created) = (info.id.clone(), bigint(info.created));
        let what = format!("tenant {tenant}");
        self.run(move |client| async move {
            match client
                .execute(
                    "INSERT INTO tenants (id, created) VALUES ($1, $2)",
                    &[&id, &created],
                )
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Exists { what }),
                Err(e) => Err(e.into()),
            }
        })?;
        Ok(info)
    }

    fn tenant_exists(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        let id = tenant.to_string();
        self.run(move |client| async move {
            Ok(client
                .query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&id])
                .await?
                .is_some())
        })
    }

    fn tenants(&self) -> Result<Vec<TenantInfo>, StoreError> {
        self.run(move |client| async move {
            Ok(client
                .query("SELECT id, created FROM tenants ORDER BY id", &[])
                .await?
                .iter()
                .map(|row| TenantInfo {
                    id: row.get(0),
                    created: unsigned(row.get(1)),
                })
                .collect())
        })
    }

    fn delete_tenant(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        if !self.tenant_exists(tenant)? {
            return Ok(false);
        }
        self.shred_tenant_key(tenant)?;
        let id = tenant.to_string();
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            // Delivery ids name only their endpoint: they go before the tenant's endpoints.
            tx.execute(
                "DELETE FROM webhook_deliveries WHERE endpoint IN \
                 (SELECT id FROM webhooks WHERE tenant = $1)",
                &[&id],
            )
            .await?;
            for table in TENANT_TABLES {
                tx.execute(&format!("DELETE FROM {table} WHERE tenant = $1"), &[&id])
                    .await?;
            }
            tx.execute("DELETE FROM tenants WHERE id = $1", &[&id])
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }
}
