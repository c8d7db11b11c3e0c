//! Credential records, sealed as on sled, and the source the egress broker reads them from.

use std::sync::Arc;

use airlock_host_api::credentials::{CredentialType, Secret, SecretSource};

use super::PgStore;
use crate::StoreError;
use crate::credentials::{CredentialRecords, Record, StoredSecrets, decode, reseal};
use crate::records::{CredentialInfo, SetOutcome};
use crate::traits::{Credentials, Storage};
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::{InstallationId, TenantId};

impl CredentialRecords for PgStore {
    fn credential_record(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = (
            tenant.to_string(),
            installation.to_string(),
            name.to_string(),
        );
        self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "SELECT record FROM credentials \
                     WHERE tenant = $1 AND installation = $2 AND name = $3",
                    &[&key.0, &key.1, &key.2],
                )
                .await?
                .map(|row| row.get(0)))
        })
    }
}

impl Credentials for PgStore {
    fn set_credential(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
        origins: Vec<String>,
        secret: &Secret,
        credential_type: CredentialType,
    ) -> Result<SetOutcome, StoreError> {
        let previous = self
            .credential_record(tenant, installation, name)?
            .map(|bytes| decode(&bytes, name))
            .transpose()?;
        let bytes = Record::seal(
            self,
            (tenant, installation, name),
            origins,
            secret,
            credential_type,
            previous.as_ref(),
            now_unix(),
        )?;
        let key = (
            tenant.to_string(),
            installation.to_string(),
            name.to_string(),
        );
        self.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO credentials (tenant, installation, name, record) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant, installation, name) DO UPDATE SET record = $4",
                    &[&key.0, &key.1, &key.2, &bytes],
                )
                .await?;
            Ok(())
        })?;
        Ok(if previous.is_some() {
            SetOutcome::Rotated
        } else {
            SetOutcome::Created
        })
    }

    fn reseal_credential(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
        secret: &Secret,
    ) -> Result<(), StoreError> {
        reseal(self, tenant, installation, name, secret)
    }

    fn list_credentials(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<Vec<CredentialInfo>, StoreError> {
        let key = (tenant.to_string(), installation.to_string());
        let rows: Vec<(String, Vec<u8>)> = self.run(move |client| async move {
            Ok(client
                .query(
                    "SELECT name, record FROM credentials \
                     WHERE tenant = $1 AND installation = $2 ORDER BY name",
                    &[&key.0, &key.1],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect())
        })?;
        rows.into_iter()
            .map(|(name, bytes)| Ok(decode(&bytes, &name)?.info(name)))
            .collect()
    }

    fn delete_credential(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
    ) -> Result<bool, StoreError> {
        let key = (
            tenant.to_string(),
            installation.to_string(),
            name.to_string(),
        );
        self.run(move |client| async move {
            Ok(client
                .execute(
                    "DELETE FROM credentials WHERE tenant = $1 AND installation = $2 AND name = $3",
                    &[&key.0, &key.1, &key.2],
                )
                .await?
                == 1)
        })
    }
}

impl Storage for PgStore {
    fn secrets(&self, tenant: &TenantId, installation: &InstallationId) -> Arc<dyn SecretSource> {
        Arc::new(StoredSecrets::new(
            self.clone(),
            tenant.clone(),
            installation.clone(),
        ))
    }

    fn schema_current(&self) -> Result<bool, StoreError> {
        Ok(self.schema_status()?.current())
    }
}
