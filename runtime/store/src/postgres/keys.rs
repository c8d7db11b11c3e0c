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

use deadpool_postgres::{Object, Transaction};
use tokio_postgres::IsolationLevel;

use super::PgStore;
use crate::StoreError;
use crate::keys::TenantKeys;
use airlock_runtime::ids::TenantId;

/// The `meta` row holding the master key check.
const MASTER_CHECK: &str = "master-key-check";

impl PgStore {
    /// The master key, resolved once per process and checked against the database's.
    pub(crate) fn master(&self) -> Result<Arc<MasterKey>, StoreError> {
        match self.inner.master.get(|key| self.check_master(key)) {
            // Rotated, and this node started after the rotation with its staged key beside its
            // key file but before that file was replaced.
            Err(StoreError::MasterKeyMismatch { store }) => self
                .rotated_master()?
                .ok_or(StoreError::MasterKeyMismatch { store }),
            other => other,
        }
    }

    /// The master key after a rotation another process made while this one ran: read again
    /// from its file (or the staged one beside it) and checked; `None` if neither opens the
    /// database's check.
    fn rotated_master(&self) -> Result<Option<Arc<MasterKey>>, StoreError> {
        self.inner.master.reload(|key| self.check_master(key))
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

    /// Re-wraps every tenant's data key and the master key check under `new`, in one
    /// transaction: every node sees all keys wrapped by the old master key or all by the new.
    /// A key `new` already opens (a rotation run again, or from another node) is left as it
    /// is. Returns how many were re-wrapped.
    pub(crate) fn rewrap_data_keys(&self, new: &Arc<MasterKey>) -> Result<u64, StoreError> {
        // Another node may have rotated already: then the old key no longer passes the check,
        // and every key must open with `new`.
        let old = match self.master() {
            Ok(old) => Some(old),
            Err(StoreError::MasterKeyMismatch { .. }) => {
                self.check_master(new)?;
                None
            }
            Err(e) => return Err(e),
        };
        let check = encode(&new.wrap(MASTER_CHECK, &DataKey::generate()))?;
        let new = new.clone();
        let shown = self.shown().to_string();
        let current = old.clone();
        self.run(move |mut client| async move {
            // First: a node creating a data key holds this row shared while it checks that its
            // master key is still the database's (`insert_key`), so none is created under the
            // old key once this transaction starts, and none created before is missed below.
            let (tx, stored) = holding_check(&mut client, "FOR UPDATE").await?;
            // Still the key this rotation started from (or already the new one): another
            // rotation to a third key did not get there first.
            let opened = |key: &MasterKey| opens(stored.as_ref(), key);
            if !(current.as_deref().is_some_and(opened) || opened(&new)) {
                return Err(StoreError::MasterKeyMismatch { store: shown });
            }
            let rows = tx
                .query("SELECT tenant, wrapped FROM data_keys FOR UPDATE", &[])
                .await?;
            let mut rewrapped = 0;
            for row in rows {
                let tenant: String = row.get(0);
                let what = format!("data key of tenant {tenant}");
                let wrapped = decode(row.get(1), &what)?;
                if new.unwrap(&tenant, &wrapped).is_ok() {
                    continue;
                }
                let key = old
                    .as_ref()
                    .and_then(|old| old.unwrap(&tenant, &wrapped).ok())
                    .ok_or(StoreError::Decrypt { what })?;
                let fresh = encode(&new.wrap(&tenant, &key))?;
                tx.execute(
                    "UPDATE data_keys SET wrapped = $2 WHERE tenant = $1",
                    &[&tenant, &fresh],
                )
                .await?;
                rewrapped += 1;
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&MASTER_CHECK, &check],
            )
            .await?;
            tx.commit().await?;
            Ok(rewrapped)
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
        let mut master = self.master()?;
        let name = tenant.to_string();
        let mut stored = self.wrapped_key(&name)?;
        if stored.is_none() && create {
            let key = DataKey::generate();
            if !self.insert_key(&name, &master, &key)? {
                // Rotated since this node read its key: wrap under the new one, or refuse.
                master = self
                    .rotated_master()?
                    .ok_or_else(|| StoreError::MasterKeyMismatch {
                        store: self.shown().to_string(),
                    })?;
                if !self.insert_key(&name, &master, &key)? {
                    return Err(StoreError::MasterKeyMismatch {
                        store: self.shown().to_string(),
                    });
                }
            }
            stored = self.wrapped_key(&name)?;
        }
        let Some(stored) = stored else {
            return Ok(None);
        };
        let what = format!("data key of tenant {tenant}");
        let wrapped = decode(&stored, &what)?;
        if let Ok(key) = master.unwrap(tenant.as_str(), &wrapped) {
            return Ok(Some(key));
        }
        // Rotated by another process since this one resolved its key?
        self.rotated_master()?
            .and_then(|master| master.unwrap(tenant.as_str(), &wrapped).ok())
            .map(Some)
            .ok_or(StoreError::Decrypt { what })
    }
}

impl PgStore {
    /// The tenant's wrapped key as stored.
    fn wrapped_key(&self, tenant: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tenant = tenant.to_string();
        self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "SELECT wrapped FROM data_keys WHERE tenant = $1",
                    &[&tenant],
                )
                .await?
                .map(|row| row.get(0)))
        })
    }

    /// Stores `key` wrapped by `master` as the tenant's, unless it has one (the first stored
    /// wins), in a transaction that holds the master key check shared and finds it opens with
    /// `master`: `false`, storing nothing, when it does not (the key was rotated).
    fn insert_key(
        &self,
        tenant: &str,
        master: &Arc<MasterKey>,
        key: &DataKey,
    ) -> Result<bool, StoreError> {
        let tenant = tenant.to_string();
        let fresh = encode(&master.wrap(&tenant, key))?;
        let master = master.clone();
        self.run(move |mut client| async move {
            let (tx, stored) = holding_check(&mut client, "FOR SHARE").await?;
            let current = opens(stored.as_ref(), &master);
            if !current {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO data_keys (tenant, wrapped) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&tenant, &fresh],
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }
}

/// A read-committed transaction (whatever the database's default: each later statement must
/// see what was committed while it waited) holding the master key check with `lock`, and the
/// check as stored.
async fn holding_check<'a>(
    client: &'a mut Object,
    lock: &str,
) -> Result<(Transaction<'a>, Option<WrappedKey>), StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await?;
    let stored: Option<Vec<u8>> = tx
        .query_opt(
            &format!("SELECT value FROM meta WHERE key = $1 {lock}"),
            &[&MASTER_CHECK],
        )
        .await?
        .map(|row| row.get(0));
    let check = stored
        .as_deref()
        .map(|bytes| decode(bytes, "the master key check"))
        .transpose()?;
    Ok((tx, check))
}

/// Whether `key` opens the master key check.
fn opens(check: Option<&WrappedKey>, key: &MasterKey) -> bool {
    check.is_some_and(|check| key.unwrap(MASTER_CHECK, check).is_ok())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::staged_key_path;
    use crate::postgres::testing::TestDatabase;

    #[test]
    fn a_rotation_rewraps_in_one_go_and_a_running_node_picks_up_the_staged_key() {
        let Some(database) = TestDatabase::create("a_rotation_rewraps_in_one_go") else {
            return;
        };
        let (one, two) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let key_one = one.path().join("master.key");
        let key_two = two.path().join("master.key");
        let rotating = database.store(&key_one);
        let acme: TenantId = "acme".parse().expect("tenant");
        let globex: TenantId = "globex".parse().expect("tenant");
        let before =
            [&acme, &globex].map(|t| rotating.tenant_key(t, true).expect("key").expect("made"));
        // A second node with the same master key, running before and after the rotation.
        std::fs::copy(&key_one, &key_two).expect("the same key on node two");
        let running = database.store(&key_two);
        running.tenant_key(&acme, false).expect("opens before");

        let staged = staged_key_path(&key_one);
        let new = Arc::new(MasterKey::generate(&staged).expect("staged key"));
        assert_eq!(rotating.rewrap_data_keys(&new).expect("rotated"), 2);
        // Run again (or from another node), nothing is left to re-wrap.
        assert_eq!(rotating.rewrap_data_keys(&new).expect("again"), 0);

        // A node started with the old key alone is refused, naming the cause.
        let stale = tempfile::tempdir().expect("dir");
        let stale_key = stale.path().join("master.key");
        std::fs::copy(&key_two, &stale_key).expect("old key");
        assert!(matches!(
            database.store(&stale_key).tenant_key(&acme, false),
            Err(StoreError::MasterKeyMismatch { .. })
        ));
        // The running node holds the old key: without the staged one beside its file it cannot
        // open the keys; once it is there, it reads it and carries on.
        assert!(matches!(
            running.tenant_key(&acme, false),
            Err(StoreError::Decrypt { .. })
        ));
        // Nor does it make a new tenant's key under the old master key.
        let initech: TenantId = "initech".parse().expect("tenant");
        assert!(matches!(
            running.tenant_key(&initech, true),
            Err(StoreError::MasterKeyMismatch { .. })
        ));
        std::fs::copy(&staged, staged_key_path(&key_two)).expect("staged on node two");
        let made = running
            .tenant_key(&initech, true)
            .expect("made")
            .expect("a key");
        let three = tempfile::tempdir().expect("dir");
        std::fs::copy(&staged, three.path().join("master.key")).expect("the new key alone");
        let opened = database
            .store(&three.path().join("master.key"))
            .tenant_key(&initech, false)
            .expect("opens under the new key")
            .expect("a key");
        let aad = airlock_host_api::credentials::vault::ConfigAad {
            tenant: "initech",
            installation: "one",
            key_version: 1,
        };
        assert_eq!(
            &opened
                .open(&aad, &made.seal(&aad, b"y"))
                .expect("the same key")[..],
            b"y"
        );
        for (tenant, key) in [&acme, &globex].into_iter().zip(&before) {
            let opened = running
                .tenant_key(tenant, false)
                .expect("opens")
                .expect("key");
            let aad = airlock_host_api::credentials::vault::ConfigAad {
                tenant: tenant.as_str(),
                installation: "one",
                key_version: 1,
            };
            let sealed = key.seal(&aad, b"x");
            assert_eq!(
                &opened.open(&aad, &sealed).expect("the same data key")[..],
                b"x"
            );
        }
    }
}
