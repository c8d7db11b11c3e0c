//! Installations (config sealed as on sled) and the bundles they run, kept in the database
//! so that every node serves what any node installed (each compiles its own cache).

use std::path::PathBuf;

use super::PgStore;
use crate::StoreError;
use crate::installations::{
    bundle_digest, decode, encode, keeping_quarantine, stored_quarantine, with_quarantine,
};
use crate::records::{InstallationRecord, Quarantine};
use crate::traits::Installations;
use airlock_runtime::bundle::trusted::MAX_BUNDLE_BYTES;
use airlock_runtime::ids::{InstallationId, TenantId};

impl Installations for PgStore {
    fn delete_installation(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<bool, StoreError> {
        let (tenant, installation) = (tenant.to_string(), installation.to_string());
        self.run(move |client| async move {
            Ok(client
                .execute(
                    "DELETE FROM installations WHERE tenant = $1 AND id = $2",
                    &[&tenant, &installation],
                )
                .await?
                > 0)
        })
    }

    fn installation(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<Option<InstallationRecord>, StoreError> {
        let (tenant, installation) = (tenant.to_string(), installation.to_string());
        let stored: Option<Vec<u8>> = self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "SELECT record FROM installations WHERE tenant = $1 AND id = $2",
                    &[&tenant, &installation],
                )
                .await?
                .map(|row| row.get(0)))
        })?;
        stored.map(|bytes| decode(self, &bytes)).transpose()
    }

    fn put_installation(&self, record: &InstallationRecord) -> Result<(), StoreError> {
        let (tenant, id) = (record.tenant.clone(), record.installation.clone());
        let fresh = encode(self, record.clone())?;
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            let current: Option<Vec<u8>> = tx
                .query_opt(
                    "SELECT record FROM installations WHERE tenant = $1 AND id = $2 FOR UPDATE",
                    &[&tenant, &id],
                )
                .await?
                .map(|row| row.get(0));
            let bytes = keeping_quarantine(&fresh, current.as_deref())?;
            tx.execute(
                "INSERT INTO installations (tenant, id, record) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, id) DO UPDATE SET record = $3",
                &[&tenant, &id, &bytes],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn set_quarantine(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        quarantine: Option<Quarantine>,
    ) -> Result<Option<(InstallationRecord, bool)>, StoreError> {
        let (tenant, id) = (tenant.to_string(), installation.to_string());
        let stored: Option<(Vec<u8>, bool)> = self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            let Some(current) = tx
                .query_opt(
                    "SELECT record FROM installations WHERE tenant = $1 AND id = $2 FOR UPDATE",
                    &[&tenant, &id],
                )
                .await?
                .map(|row| row.get::<_, Vec<u8>>(0))
            else {
                return Ok(None);
            };
            if stored_quarantine(&current)?.is_some() == quarantine.is_some() {
                return Ok(Some((current, false)));
            }
            let bytes = with_quarantine(&current, quarantine.as_ref())?;
            tx.execute(
                "UPDATE installations SET record = $3 WHERE tenant = $1 AND id = $2",
                &[&tenant, &id, &bytes],
            )
            .await?;
            tx.commit().await?;
            Ok(Some((bytes, true)))
        })?;
        stored
            .map(|(bytes, changed)| Ok((decode(self, &bytes)?, changed)))
            .transpose()
    }

    fn installations(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<InstallationRecord>, StoreError> {
        let tenant = tenant.map(TenantId::to_string);
        let rows: Vec<Vec<u8>> = self.run(move |client| async move {
            let rows = client
                .query(
                    "SELECT record FROM installations WHERE $1::text IS NULL OR tenant = $1 \
                     ORDER BY tenant, id",
                    &[&tenant],
                )
                .await?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })?;
        rows.iter().map(|bytes| decode(self, bytes)).collect()
    }

    fn put_bundle(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let digest = bundle_digest(bytes);
        let (name, bytes) = (digest.clone(), bytes.to_vec());
        self.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO bundles (digest, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&name, &bytes],
                )
                .await?;
            Ok(())
        })?;
        Ok(digest)
    }

    fn bundle(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let name = digest.to_string();
        let cap = super::bigint(MAX_BUNDLE_BYTES);
        // The size is checked before the bytes are sent, so an oversized row never loads.
        let row: Option<(i64, Option<Vec<u8>>)> = self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "SELECT octet_length(bytes)::bigint, \
                     CASE WHEN octet_length(bytes) <= $2::bigint THEN bytes END \
                     FROM bundles WHERE digest = $1",
                    &[&name, &cap],
                )
                .await?
                .map(|row| (row.get(0), row.get(1))))
        })?;
        match row {
            None => Ok(None),
            Some((_, Some(bytes))) => Ok(Some(bytes)),
            Some((len, None)) => Err(StoreError::Corrupt {
                what: format!(
                    "bundle {digest} ({len} bytes, over the {MAX_BUNDLE_BYTES}-byte cap)"
                ),
            }),
        }
    }

    fn bundle_origin(&self, digest: &str) -> PathBuf {
        PathBuf::from(format!("{} (bundle {digest})", self.shown()))
    }
}
