//! OAuth connections and the consents under way: sled's records, sealed the same way (see
//! [`crate::connections`]), in rows keyed as sled keys them. A connection is replaced only
//! over the revision read (a conditional update); a consent is taken by deleting its row, so
//! of concurrent takes exactly one gets it.

use airlock_host_api::credentials::ConnectionTokens;
use airlock_host_api::credentials::vault::DataKey;

use super::{PgStore, bigint};
use crate::StoreError;
use crate::connections::consents::{
    consent_of, is_of, offer_record, open_offer, open_pending, pending_record, state_key,
};
use crate::connections::{
    Record, decode, encode, listing, needing_reconsent, open_tokens, replacing, sealer, user_ref,
};
use crate::keys::TenantKeys;
use crate::records::{ConnectionInfo, ConnectionKey, PendingConsent, TakenState};
use crate::traits::{Connections, Consents};
use airlock_runtime::ids::{InstallationId, TenantId, UserId};

/// Where a connection is filed: its row's key, a user only by their keyed reference.
#[derive(Clone)]
struct Filed {
    tenant: String,
    installation: String,
    credential: String,
    user: String,
}

impl Filed {
    fn new(key: ConnectionKey<'_>, data_key: &DataKey) -> Self {
        Self {
            tenant: key.tenant.to_string(),
            installation: key.installation.to_string(),
            credential: key.credential.to_string(),
            user: key.filed_user(data_key),
        }
    }
}

const WHERE_FILED: &str =
    "WHERE tenant = $1 AND installation = $2 AND credential = $3 AND user_ref = $4";

/// A revision as the `revision` column keeps it: the same 64 bits. Revisions are random, so
/// [`bigint`]'s saturation would make half of them equal.
fn revision_column(revision: u64) -> i64 {
    i64::from_be_bytes(revision.to_be_bytes())
}

impl PgStore {
    /// The connection's record as stored, with its revision column.
    fn connection_row(&self, filed: &Filed) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        let at = filed.clone();
        self.run(move |client| async move {
            Ok(client
                .query_opt(
                    &format!("SELECT record, revision FROM oauth_connections {WHERE_FILED}"),
                    &[&at.tenant, &at.installation, &at.credential, &at.user],
                )
                .await?
                .map(|row| (row.get(0), row.get(1))))
        })
    }

    /// Writes what `change` makes of the current record; `None` writes nothing (false). The
    /// write is conditional on the revision read (or on there being no row), retried when
    /// another write came between: compare-and-set, as sled's compare-and-swap.
    fn update_connection(
        &self,
        filed: &Filed,
        change: impl Fn(Option<Record>) -> Result<Option<Record>, StoreError>,
    ) -> Result<bool, StoreError> {
        loop {
            let (previous, read) = match self.connection_row(filed)? {
                Some((bytes, revision)) => (Some(decode(&bytes)?), Some(revision)),
                None => (None, None),
            };
            let Some(next) = change(previous)? else {
                return Ok(false);
            };
            let (bytes, revision) = (encode(&next)?, revision_column(next.revision()));
            let at = filed.clone();
            let written = self.run(move |client| async move {
                let count = match read {
                    None => {
                        client
                            .execute(
                                "INSERT INTO oauth_connections \
                                 (tenant, installation, credential, user_ref, revision, record) \
                                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                                &[
                                    &at.tenant,
                                    &at.installation,
                                    &at.credential,
                                    &at.user,
                                    &revision,
                                    &bytes,
                                ],
                            )
                            .await?
                    }
                    Some(read) => {
                        client
                            .execute(
                                &format!(
                                    "UPDATE oauth_connections SET revision = $5, record = $6 \
                                     {WHERE_FILED} AND revision = $7"
                                ),
                                &[
                                    &at.tenant,
                                    &at.installation,
                                    &at.credential,
                                    &at.user,
                                    &revision,
                                    &bytes,
                                    &read,
                                ],
                            )
                            .await?
                    }
                };
                Ok(count == 1)
            })?;
            if written {
                return Ok(true);
            }
        }
    }
}

impl Connections for PgStore {
    fn user_ref(&self, tenant: &TenantId, user: &UserId) -> Result<String, StoreError> {
        Ok(user_ref(&self.sealing_key(tenant)?, user))
    }

    fn put_connection(
        &self,
        key: ConnectionKey<'_>,
        tokens: &ConnectionTokens,
        now: u64,
    ) -> Result<(), StoreError> {
        let data_key = self.sealing_key(key.tenant)?;
        let seal = sealer(key, &data_key, tokens)?;
        self.update_connection(&Filed::new(key, &data_key), |previous| {
            Ok(Some(seal(previous, now)?))
        })?;
        Ok(())
    }

    fn replace_connection(
        &self,
        key: ConnectionKey<'_>,
        replaces: u64,
        tokens: &ConnectionTokens,
        now: u64,
    ) -> Result<bool, StoreError> {
        let data_key = self.sealing_key(key.tenant)?;
        let seal = sealer(key, &data_key, tokens)?;
        self.update_connection(&Filed::new(key, &data_key), |previous| {
            replacing(previous, replaces, &seal, now)
        })
    }

    fn connection(&self, key: ConnectionKey<'_>) -> Result<Option<ConnectionTokens>, StoreError> {
        let Some(data_key) = self.tenant_key(key.tenant, false)? else {
            return Ok(None);
        };
        let Some((bytes, _)) = self.connection_row(&Filed::new(key, &data_key))? else {
            return Ok(None);
        };
        open_tokens(&data_key, key, decode(&bytes)?).map(Some)
    }

    fn mark_needs_reconsent(
        &self,
        key: ConnectionKey<'_>,
        replaces: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let Some(data_key) = self.tenant_key(key.tenant, false)? else {
            return Ok(false);
        };
        self.update_connection(&Filed::new(key, &data_key), |previous| {
            Ok(needing_reconsent(previous, replaces, now))
        })
    }

    fn connections_of(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<Vec<ConnectionInfo>, StoreError> {
        let Some(data_key) = self.tenant_key(tenant, false)? else {
            return Ok(Vec::new());
        };
        let (t, i) = (tenant.to_string(), installation.to_string());
        let rows: Vec<(String, String, Vec<u8>)> = self.run(move |client| async move {
            Ok(client
                .query(
                    "SELECT credential, user_ref, record FROM oauth_connections \
                     WHERE tenant = $1 AND installation = $2",
                    &[&t, &i],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect())
        })?;
        let rows = rows
            .into_iter()
            .map(|(credential, user, bytes)| Ok((credential, user, decode(&bytes)?)));
        listing(&data_key, tenant, installation, rows)
    }

    fn delete_connection(&self, key: ConnectionKey<'_>) -> Result<bool, StoreError> {
        let Some(data_key) = self.tenant_key(key.tenant, false)? else {
            return Ok(false);
        };
        let at = Filed::new(key, &data_key);
        self.run(move |client| async move {
            let deleted = client
                .execute(
                    &format!("DELETE FROM oauth_connections {WHERE_FILED}"),
                    &[&at.tenant, &at.installation, &at.credential, &at.user],
                )
                .await?;
            Ok(deleted == 1)
        })
    }
}

impl Consents for PgStore {
    fn offer_consent(&self, id: &str, consent: &PendingConsent) -> Result<(), StoreError> {
        let id = state_key(id);
        let record = offer_record(self, &id, consent)?;
        let (tenant, expires) = (consent.tenant.clone(), bigint(consent.expires));
        self.run(move |client| async move {
            // Replaces what the id held, as sled's insert does (ids are random, never reused).
            client
                .execute(
                    "INSERT INTO oauth_offers (id, tenant, expires, record) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE \
                     SET tenant = EXCLUDED.tenant, expires = EXCLUDED.expires, \
                     record = EXCLUDED.record",
                    &[&id, &tenant, &expires, &record],
                )
                .await?;
            Ok(())
        })
    }

    fn take_offered_consent(&self, id: &str) -> Result<Option<PendingConsent>, StoreError> {
        let id = state_key(id);
        let key = id.clone();
        let taken: Option<Vec<u8>> = self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "DELETE FROM oauth_offers WHERE id = $1 RETURNING record",
                    &[&key],
                )
                .await?
                .map(|row| row.get(0)))
        })?;
        taken.map(|bytes| open_offer(self, &id, &bytes)).transpose()
    }

    fn begin_consent(
        &self,
        key: ConnectionKey<'_>,
        consent: PendingConsent,
        state: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<(), StoreError> {
        let id = state_key(state);
        let (tenant, expires) = (consent.tenant.clone(), bigint(consent.expires));
        let record = pending_record(self, key, consent, &id, verifier, nonce)?;
        self.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO oauth_pending (state, tenant, expires, record) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (state) DO UPDATE \
                     SET tenant = EXCLUDED.tenant, expires = EXCLUDED.expires, \
                     record = EXCLUDED.record",
                    &[&id, &tenant, &expires, &record],
                )
                .await?;
            Ok(())
        })
    }

    fn take_consent(
        &self,
        state: &str,
        cookie: Option<&str>,
        now: u64,
    ) -> Result<TakenState, StoreError> {
        let id = state_key(state);
        let key = id.clone();
        let taken: Option<Vec<u8>> = self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "DELETE FROM oauth_pending WHERE state = $1 RETURNING record",
                    &[&key],
                )
                .await?
                .map(|row| row.get(0)))
        })?;
        match taken {
            None => Ok(TakenState::Unknown),
            Some(bytes) => open_pending(self, &id, &bytes, cookie, now),
        }
    }

    fn purge_consents(&self, now: u64) -> Result<usize, StoreError> {
        let now = bigint(now);
        let purged = self.run(move |client| async move {
            let offers = client
                .execute("DELETE FROM oauth_offers WHERE expires <= $1", &[&now])
                .await?;
            let pending = client
                .execute("DELETE FROM oauth_pending WHERE expires <= $1", &[&now])
                .await?;
            Ok(offers + pending)
        })?;
        Ok(usize::try_from(purged).unwrap_or(usize::MAX))
    }

    fn delete_consents(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<usize, StoreError> {
        let (tenant, installation) = (tenant.clone(), installation.clone());
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            let mut deleted = 0;
            for (table, key, offered) in [
                ("oauth_offers", "id", true),
                ("oauth_pending", "state", false),
            ] {
                let rows = tx
                    .query(
                        &format!("SELECT {key}, record FROM {table} WHERE tenant = $1 FOR UPDATE"),
                        &[&tenant.as_str()],
                    )
                    .await?;
                for row in rows {
                    let record: Vec<u8> = row.get(1);
                    if consent_of(&record, offered)
                        .is_some_and(|c| is_of(&c, &tenant, &installation))
                    {
                        let id: Vec<u8> = row.get(0);
                        deleted += tx
                            .execute(&format!("DELETE FROM {table} WHERE {key} = $1"), &[&id])
                            .await?;
                    }
                }
            }
            tx.commit().await?;
            Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::oauth::{consent, tokens};
    use crate::postgres::testing::{TestDatabase, rows_as_text, rows_of, shows};
    use crate::traits::Tenants;

    #[test]
    fn oauth_rows_hold_nothing_in_clear_and_go_with_their_tenant() {
        let Some(database) = TestDatabase::create("oauth_rows_hold_nothing_in_clear") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let store = database.store(&dir.path().join("master.key"));
        let crm: InstallationId = "crm".parse().expect("installation");
        let user: UserId = "ada@example.com".parse().expect("user");
        for name in ["acme", "beta"] {
            let tenant: TenantId = name.parse().expect("tenant");
            store.create_tenant(&tenant).expect("tenant");
            let key = ConnectionKey {
                tenant: &tenant,
                installation: &crm,
                credential: "crm-oauth",
                user: Some(&user),
            };
            store
                .put_connection(key, &tokens(&format!("access-{name}")), 100)
                .expect("put");
            let consent = PendingConsent {
                tenant: name.into(),
                ..consent(Some("ada@example.com"), 700)
            };
            store
                .offer_consent(&format!("start-{name}"), &consent)
                .expect("offer");
            store
                .begin_consent(
                    key,
                    consent,
                    &format!("state-{name}"),
                    &format!("verifier-{name}"),
                    &format!("nonce-{name}"),
                )
                .expect("begin");
        }
        let tables = ["oauth_connections", "oauth_offers", "oauth_pending"];
        let rows: String = tables.map(|t| rows_as_text(&store, t)).join(" ");
        // What the records keep in clear shows: the check reads inside them.
        assert!(shows(&rows, "https://auth.example.com:443"));
        for secret in [
            "ada@example.com",
            "access-acme",
            "refresh-access-acme",
            "start-acme",
            "state-acme",
            "verifier-acme",
            "nonce-acme",
        ] {
            assert!(!shows(&rows, secret), "{secret} is stored in clear");
        }

        assert!(
            store
                .delete_tenant(&"acme".parse().expect("tenant"))
                .expect("delete")
        );
        for table in tables {
            assert_eq!(rows_of(&store, table, "acme"), 0, "{table}");
            assert_eq!(rows_of(&store, table, "beta"), 1, "{table}");
        }
        let beta: TenantId = "beta".parse().expect("tenant");
        assert_eq!(store.connections_of(&beta, &crm).expect("list").len(), 1);
        assert!(
            store
                .take_offered_consent("start-beta")
                .expect("take")
                .is_some()
        );
    }
}
