//! Guests' kv namespaces, sealed as on sled. A write and its usage change in one transaction
//! that first locks the namespace's usage row, so writers of one namespace (on any node) take
//! turns and never pass the quota together.

use std::sync::Arc;

use airlock_host_api::kv::KvBackend;

use super::{PgStore, bigint, unsigned};
use crate::StoreError;
use crate::kv::{Change, IndexedRecord, KvRecords, Namespace, StoredKv};
use crate::records::KvUsage;
use crate::traits::KvNamespaces;
use airlock_runtime::ids::{InstallationId, TenantId};

fn names(ns: &Namespace) -> (String, String) {
    (ns.tenant.to_string(), ns.installation.to_string())
}

impl KvRecords for PgStore {
    fn kv_record(&self, ns: &Namespace, index: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let ((tenant, installation), index) = (names(ns), index.to_vec());
        self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "SELECT record FROM kv WHERE tenant = $1 AND installation = $2 AND idx = $3",
                    &[&tenant, &installation, &index],
                )
                .await?
                .map(|row| row.get(0)))
        })
    }

    fn kv_records(&self, ns: &Namespace) -> Result<Vec<IndexedRecord>, StoreError> {
        let (tenant, installation) = names(ns);
        self.run(move |client| async move {
            Ok(client
                .query(
                    "SELECT idx, record FROM kv WHERE tenant = $1 AND installation = $2",
                    &[&tenant, &installation],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect())
        })
    }

    fn kv_usage_of(&self, ns: &Namespace) -> Result<KvUsage, StoreError> {
        let (tenant, installation) = names(ns);
        self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "SELECT keys, bytes FROM kv_usage WHERE tenant = $1 AND installation = $2",
                    &[&tenant, &installation],
                )
                .await?
                .map_or_else(KvUsage::default, |row| KvUsage {
                    keys: unsigned(row.get(0)),
                    bytes: unsigned(row.get(1)),
                }))
        })
    }

    fn kv_write(
        &self,
        ns: &Namespace,
        index: &[u8],
        record: Option<Vec<u8>>,
        change: Change,
    ) -> Result<Result<bool, String>, StoreError> {
        let ((tenant, installation), index) = (names(ns), index.to_vec());
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            // The usage row exists before it is locked, so the first writers lock it too.
            tx.execute(
                "INSERT INTO kv_usage (tenant, installation, keys, bytes) VALUES ($1, $2, 0, 0) \
                 ON CONFLICT DO NOTHING",
                &[&tenant, &installation],
            )
            .await?;
            let row = tx
                .query_one(
                    "SELECT keys, bytes FROM kv_usage \
                     WHERE tenant = $1 AND installation = $2 FOR UPDATE",
                    &[&tenant, &installation],
                )
                .await?;
            let usage = KvUsage {
                keys: unsigned(row.get(0)),
                bytes: unsigned(row.get(1)),
            };
            let old: Option<Vec<u8>> = tx
                .query_opt(
                    "SELECT record FROM kv WHERE tenant = $1 AND installation = $2 AND idx = $3",
                    &[&tenant, &installation, &index],
                )
                .await?
                .map(|row| row.get(0));
            let next = match change.apply(usage, old.as_deref())? {
                Ok(Some(next)) => next,
                Ok(None) => return Ok(Ok(false)),
                Err(refusal) => return Ok(Err(refusal)),
            };
            match record {
                Some(record) => {
                    tx.execute(
                        "INSERT INTO kv (tenant, installation, idx, record) \
                         VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (tenant, installation, idx) DO UPDATE SET record = $4",
                        &[&tenant, &installation, &index, &record],
                    )
                    .await?
                }
                None => {
                    tx.execute(
                        "DELETE FROM kv WHERE tenant = $1 AND installation = $2 AND idx = $3",
                        &[&tenant, &installation, &index],
                    )
                    .await?
                }
            };
            tx.execute(
                "UPDATE kv_usage SET keys = $3, bytes = $4 \
                 WHERE tenant = $1 AND installation = $2",
                &[
                    &tenant,
                    &installation,
                    &bigint(next.keys),
                    &bigint(next.bytes),
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(Ok(true))
        })
    }
}

impl KvNamespaces for PgStore {
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
        let (tenant, installation) = (tenant.to_string(), installation.to_string());
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            let deleted = tx
                .execute(
                    "DELETE FROM kv WHERE tenant = $1 AND installation = $2",
                    &[&tenant, &installation],
                )
                .await?;
            tx.execute(
                "DELETE FROM kv_usage WHERE tenant = $1 AND installation = $2",
                &[&tenant, &installation],
            )
            .await?;
            tx.commit().await?;
            Ok(deleted)
        })
    }
}
