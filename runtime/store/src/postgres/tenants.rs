//! Tenants, and their deletion: the data key first (crypto-shredding), then every row of the
//! tenant in one transaction.

use std::sync::Arc;

use airlock_host_api::credentials::vault::MasterKey;

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
    "runs",
    "schedules",
];

impl Tenants for PgStore {
    fn rewrap_data_keys(&self, new: &Arc<MasterKey>) -> Result<u64, StoreError> {
        PgStore::rewrap_data_keys(self, new)
    }

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

#[cfg(test)]
mod tests {
    use airlock_host_api::credentials::{CredentialType, Secret};
    use airlock_host_api::kv::KvQuota;

    use super::*;
    use crate::conformance::records::record;
    use crate::postgres::testing::{TestDatabase, rows_as_text, rows_of, shows};
    use crate::traits::{Credentials, Installations, KvNamespaces};

    const CANARIES: [&str; 4] = [
        "canary-secret-51a7",
        "canary-config-9e02",
        "canary-kv-name-77c1",
        "canary-kv-value-0d3b",
    ];

    /// Every table of the schema.
    fn tables(store: &PgStore) -> Vec<String> {
        store
            .run(move |client| async move {
                Ok(client
                    .query(
                        "SELECT table_name::text FROM information_schema.tables \
                         WHERE table_schema = current_schema()",
                        &[],
                    )
                    .await?
                    .iter()
                    .map(|row| row.get(0))
                    .collect())
            })
            .expect("tables")
    }

    #[test]
    fn no_table_holds_a_secret_config_or_kv_in_clear_and_deletion_shreds_the_key() {
        let Some(database) = TestDatabase::create("no_table_holds_a_secret_in_clear") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let store = database.store(&dir.path().join("master.key"));
        let (acme, crm) = (
            "acme".parse().expect("tenant"),
            "crm".parse().expect("installation"),
        );
        store.create_tenant(&acme).expect("tenant");
        let secret = Secret::new(CredentialType::Bearer, CANARIES[0].into()).expect("secret");
        store
            .set_credential(&acme, &crm, "api", vec![], &secret, CredentialType::Bearer)
            .expect("credential");
        let mut installation = record("acme", "crm");
        installation.config = Some(format!(r#"{{"account": "{}"}}"#, CANARIES[1]));
        store.put_installation(&installation).expect("installation");
        let quota = KvQuota {
            max_bytes: 1 << 20,
            max_keys: 10,
            max_value_bytes: 1 << 10,
        };
        store
            .kv(&acme, &crm)
            .set(CANARIES[2], CANARIES[3].as_bytes(), &quota)
            .expect("kv");

        let everything: String = tables(&store)
            .iter()
            .map(|table| rows_as_text(&store, table))
            .collect();
        assert!(shows(&everything, "acme"), "the scan reads the rows");
        for canary in CANARIES {
            assert!(!shows(&everything, canary), "{canary} is in the database");
        }

        assert!(store.delete_tenant(&acme).expect("deleted"));
        assert_eq!(
            rows_of(&store, "data_keys", "acme"),
            0,
            "the key is shredded"
        );
        for table in TENANT_TABLES {
            assert_eq!(
                rows_of(&store, table, "acme"),
                0,
                "{table} keeps acme's rows"
            );
        }
        assert_eq!(store.installation(&acme, &crm).expect("read"), None);
    }
}
