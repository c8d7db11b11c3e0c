//! API key records (hashes only), compared and set by their stored bytes as on sled.

use super::PgStore;
use crate::StoreError;
use crate::api_keys::{KeyRecords, authenticate, decode, encode, revoke, suspend};
use crate::traits::ApiKeys;
use airlock_policy::apikey::{ApiKeyRecord, KeyRefusal, Suspension};
use airlock_runtime::ids::TenantId;

impl KeyRecords for PgStore {
    type Read = Vec<u8>;

    fn read_api_key(&self, id: &str) -> Result<Option<(Vec<u8>, ApiKeyRecord)>, StoreError> {
        let id = id.to_string();
        let stored: Option<Vec<u8>> = self.run(move |client| async move {
            Ok(client
                .query_opt("SELECT record FROM api_keys WHERE id = $1", &[&id])
                .await?
                .map(|row| row.get(0)))
        })?;
        stored
            .map(|bytes| decode(&bytes).map(|record| (bytes, record)))
            .transpose()
    }

    fn replace_api_key(&self, read: &Vec<u8>, record: &ApiKeyRecord) -> Result<bool, StoreError> {
        let (id, read, bytes) = (record.id.clone(), read.clone(), encode(record)?);
        self.run(move |client| async move {
            Ok(client
                .execute(
                    "UPDATE api_keys SET record = $3 WHERE id = $1 AND record = $2",
                    &[&id, &read, &bytes],
                )
                .await?
                == 1)
        })
    }
}

impl ApiKeys for PgStore {
    fn put_api_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let (id, tenant, bytes) = (record.id.clone(), record.tenant.clone(), encode(record)?);
        self.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO api_keys (id, tenant, record) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET tenant = $2, record = $3",
                    &[&id, &tenant, &bytes],
                )
                .await?;
            Ok(())
        })
    }

    fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.read_api_key(id)?.map(|(_, record)| record))
    }

    fn api_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let tenant = tenant.map(TenantId::to_string);
        let rows: Vec<Vec<u8>> = self.run(move |client| async move {
            let rows = match tenant {
                Some(tenant) => {
                    client
                        .query(
                            "SELECT record FROM api_keys WHERE tenant = $1 ORDER BY id",
                            &[&tenant],
                        )
                        .await?
                }
                None => {
                    client
                        .query("SELECT record FROM api_keys ORDER BY id", &[])
                        .await?
                }
            };
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })?;
        rows.iter().map(|bytes| decode(bytes)).collect()
    }

    fn revoke_api_key(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        revoke(self, id, now)
    }

    fn suspend_api_key(
        &self,
        id: &str,
        suspension: Option<Suspension>,
    ) -> Result<Option<bool>, StoreError> {
        suspend(self, id, suspension)
    }

    fn authenticate(
        &self,
        presented: &str,
        now: u64,
    ) -> Result<Result<ApiKeyRecord, KeyRefusal>, StoreError> {
        authenticate(self, presented, now)
    }
}
