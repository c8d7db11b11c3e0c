//! Credential records, sealed as on sled, and the source the egress broker reads them from.

use std::sync::Arc;

use airlock_host_api::credentials::{CredentialType, RefreshTurn, Secret, SecretSource};
use deadpool_postgres::Object;
use sha2::{Digest as _, Sha256};

use super::PgStore;
use crate::StoreError;
use crate::credentials::{CredentialRecords, Record, StoredSecrets, decode, reseal};
use crate::keys::TenantKeys;
use crate::records::{ConnectionKey, CredentialInfo, SetOutcome};
use crate::traits::{Credentials, Storage};
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::{InstallationId, TenantId};

/// How long a node waits for another's refresh of the same connection.
const REFRESH_WAIT_SECONDS: u32 = 60;

/// The advisory lock a connection's refresh takes: a hash of where the connection is filed
/// (its user only by keyed reference, so the lock table never shows a user id).
fn refresh_lock(id: &[u8]) -> i64 {
    let digest = Sha256::digest([b"oauth-refresh\0".as_slice(), id].concat());
    i64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
}

/// A held session advisory lock: the connection that holds it is closed when the turn is
/// dropped, which releases the lock (as a crash of the node would).
struct Turn(Option<Object>);

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(Object::take(client));
        }
    }
}

impl CredentialRecords for PgStore {
    fn refresh_turn(&self, key: ConnectionKey<'_>) -> Result<Option<RefreshTurn>, StoreError> {
        let lock = refresh_lock(&key.id(&self.sealing_key(key.tenant)?));
        let client = self.run(move |client| async move {
            // A node that holds the turn is making one token call, bounded by its timeout;
            // a wait past this one is a fault, reported rather than waited out.
            let locked = client
                .batch_execute(&format!(
                    "SET lock_timeout = '{REFRESH_WAIT_SECONDS}s'; SELECT pg_advisory_lock({lock})"
                ))
                .await;
            match locked {
                Ok(()) => Ok(client),
                Err(e) => {
                    // Its session settings changed: it never goes back to the pool.
                    drop(Object::take(client));
                    Err(e.into())
                }
            }
        })?;
        Ok(Some(Box::new(Turn(Some(client)))))
    }

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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::postgres::testing::TestDatabase;
    use airlock_runtime::ids::UserId;

    #[test]
    fn nodes_take_turns_to_refresh_one_connection_and_not_another() {
        let Some(database) = TestDatabase::create("refresh_turns") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let master = dir.path().join("master.key");
        // Two nodes: two stores, each with its own connections, on one database.
        let (one, two) = (database.store(&master), database.store(&master));
        let (tenant, installation) = (
            "acme".parse().expect("tenant"),
            "crm".parse().expect("installation"),
        );
        let (ada, bob): (UserId, UserId) = (
            "ada@example.com".parse().expect("user"),
            "bob@example.com".parse().expect("user"),
        );
        let key = |user| ConnectionKey {
            tenant: &tenant,
            installation: &installation,
            credential: "crm",
            user,
        };
        let held = one
            .refresh_turn(key(Some(&ada)))
            .expect("turn")
            .expect("a guard");
        // Another user's connection is not held up.
        drop(two.refresh_turn(key(Some(&bob))).expect("turn"));

        let (taken, waited) = mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let turn = two.refresh_turn(key(Some(&ada))).expect("turn");
                taken.send(()).expect("send");
                drop(turn);
            });
            assert!(
                waited.recv_timeout(Duration::from_millis(300)).is_err(),
                "the second node refreshed while the first held the turn"
            );
            drop(held);
            waited
                .recv_timeout(Duration::from_secs(30))
                .expect("the second node gets its turn once the first is done");
        });
    }
}
