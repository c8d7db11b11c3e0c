//! The trusted publisher keys, shared by every node: a change takes the table's lock, applies
//! [`TrustStore`]'s rules to the keys as stored and bumps the revision nodes poll, all in one
//! transaction, so changes made through different nodes never cross.

use super::PgStore;
use crate::StoreError;
use crate::traits::Trust;
use airlock_runtime::bundle::PublicKey;
use airlock_runtime::trust::{TrustError, TrustStore, TrustedKey};

/// The `counters` row the revision is kept in.
const REVISION: &str = "trust-revision";

fn decode(bytes: &[u8]) -> Result<TrustedKey, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        what: "trusted key".into(),
    })
}

impl PgStore {
    /// Makes `change` to the keys as stored now, one writer at a time; nothing is written
    /// when the change is refused.
    fn change_trust(
        &self,
        change: impl FnOnce(&mut TrustStore) -> Result<&TrustedKey, TrustError> + Send + 'static,
    ) -> Result<Result<TrustedKey, TrustError>, StoreError> {
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            // Readers go on; writers of the keys take turns.
            tx.batch_execute("LOCK TABLE trusted_keys IN SHARE ROW EXCLUSIVE MODE")
                .await?;
            let rows = tx
                .query("SELECT record FROM trusted_keys ORDER BY position", &[])
                .await?;
            let keys = rows
                .iter()
                .map(|row| decode(row.get(0)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut trust = TrustStore::from_keys(keys);
            let changed = match change(&mut trust) {
                Ok(key) => key.clone(),
                Err(refused) => return Ok(Err(refused)),
            };
            let record = serde_json::to_vec(&changed).map_err(|_| StoreError::Corrupt {
                what: format!("trusted key {}", changed.key_id),
            })?;
            tx.execute(
                "INSERT INTO trusted_keys (id, record) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET record = $2",
                &[&changed.key_id, &record],
            )
            .await?;
            tx.execute(
                "INSERT INTO counters (name, value) VALUES ($1, 1) \
                 ON CONFLICT (name) DO UPDATE SET value = counters.value + 1",
                &[&REVISION],
            )
            .await?;
            tx.commit().await?;
            Ok(Ok(changed))
        })
    }
}

impl Trust for PgStore {
    fn trusted_keys(&self) -> Result<Vec<TrustedKey>, StoreError> {
        let rows: Vec<Vec<u8>> = self.run(move |client| async move {
            Ok(client
                .query("SELECT record FROM trusted_keys ORDER BY position", &[])
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect())
        })?;
        rows.iter().map(|bytes| decode(bytes)).collect()
    }

    fn add_trusted_key(
        &self,
        key: &PublicKey,
        publisher: &str,
        now: u64,
    ) -> Result<Result<TrustedKey, TrustError>, StoreError> {
        let (key, publisher) = (key.clone(), publisher.to_string());
        self.change_trust(move |trust| trust.add(&key, &publisher, now))
    }

    fn revoke_trusted_key(
        &self,
        key_id: &str,
        now: u64,
    ) -> Result<Result<TrustedKey, TrustError>, StoreError> {
        let key_id = key_id.to_string();
        self.change_trust(move |trust| trust.revoke(&key_id, now))
    }

    fn trust_revision(&self) -> Result<u64, StoreError> {
        self.run(move |client| async move {
            Ok(client
                .query_opt("SELECT value FROM counters WHERE name = $1", &[&REVISION])
                .await?
                .map_or(0, |row| super::unsigned(row.get(0))))
        })
    }
}
