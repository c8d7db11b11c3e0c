//! Webhook endpoints (sled's endpoint record, its secrets sealed the same way) and the
//! delivery ids received: one row per id, whose primary key makes the first writer win.

use super::{PgStore, bigint, is_unique_violation};
use crate::StoreError;
use crate::records::{EndpointInfo, NewEndpoint};
use crate::traits::Webhooks;
use crate::webhooks::{Record, decode, encode, seal_secret};
use airlock_policy::webhook::{SigningKey, WebhookSecret};
use airlock_runtime::ids::{EndpointId, TenantId};

impl PgStore {
    /// The stored record of endpoint `id`, of `tenant` only if one is named.
    fn webhook_record(
        &self,
        id: &EndpointId,
        tenant: Option<&TenantId>,
    ) -> Result<Option<Record>, StoreError> {
        let (key, tenant) = (id.to_string(), tenant.map(TenantId::to_string));
        let stored: Option<Vec<u8>> = self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "SELECT record FROM webhooks WHERE id = $1 \
                     AND ($2::text IS NULL OR tenant = $2)",
                    &[&key, &tenant],
                )
                .await?
                .map(|row| row.get(0)))
        })?;
        stored.map(|bytes| decode(&bytes, id.as_str())).transpose()
    }

    /// The tenant's endpoints as stored, by id (bytewise, as sled lists them).
    fn webhook_records(&self, tenant: &TenantId) -> Result<Vec<(EndpointId, Record)>, StoreError> {
        let tenant = tenant.to_string();
        let rows: Vec<(String, Vec<u8>)> = self.run(move |client| async move {
            Ok(client
                .query(
                    "SELECT id, record FROM webhooks WHERE tenant = $1 ORDER BY id COLLATE \"C\"",
                    &[&tenant],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect())
        })?;
        rows.into_iter()
            .map(|(id, bytes)| {
                let record = decode(&bytes, &id)?;
                let id = id.parse().map_err(|_| StoreError::Corrupt {
                    what: "webhook endpoint id".into(),
                })?;
                Ok((id, record))
            })
            .collect()
    }
}

impl Webhooks for PgStore {
    fn create_webhook(
        &self,
        new: NewEndpoint<'_>,
        secret: &WebhookSecret,
        now: u64,
    ) -> Result<EndpointInfo, StoreError> {
        let (id, tenant) = (new.id.to_string(), new.tenant.to_string());
        let record = Record::new(self, new, secret, now)?;
        let bytes = encode(&record, &id)?;
        let info = record.info(&id, now);
        let what = format!("webhook endpoint {id}");
        self.run(move |client| async move {
            match client
                .execute(
                    "INSERT INTO webhooks (id, tenant, record) VALUES ($1, $2, $3)",
                    &[&id, &tenant, &bytes],
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

    fn webhook(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        now: u64,
    ) -> Result<Option<EndpointInfo>, StoreError> {
        Ok(self
            .webhook_record(id, Some(tenant))?
            .map(|r| r.info(id.as_str(), now)))
    }

    fn webhooks_of(&self, tenant: &TenantId, now: u64) -> Result<Vec<EndpointInfo>, StoreError> {
        Ok(self
            .webhook_records(tenant)?
            .iter()
            .map(|(id, record)| record.info(id.as_str(), now))
            .collect())
    }

    fn webhook_exists(&self, id: &EndpointId) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.run(move |client| async move {
            Ok(client
                .query_opt("SELECT 1 FROM webhooks WHERE id = $1", &[&id])
                .await?
                .is_some())
        })
    }

    fn webhook_keys(
        &self,
        id: &EndpointId,
        now: u64,
    ) -> Result<Option<(EndpointInfo, Vec<SigningKey>)>, StoreError> {
        let Some(record) = self.webhook_record(id, None)? else {
            return Ok(None);
        };
        let keys = record.signing_keys(self, id, now)?;
        Ok(Some((record.info(id.as_str(), now), keys)))
    }

    fn webhook_secret_in_use(
        &self,
        tenant: &TenantId,
        secret: &WebhookSecret,
        now: u64,
    ) -> Result<bool, StoreError> {
        for (id, record) in self.webhook_records(tenant)? {
            if record.holds_secret(self, &id, secret, now)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn rotate_webhook(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        secret: &WebhookSecret,
        overlap: u64,
        now: u64,
    ) -> Result<Option<EndpointInfo>, StoreError> {
        let sealed = seal_secret(self, tenant, id, secret)?;
        let (id, tenant) = (id.to_string(), tenant.to_string());
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            // The row stays locked until the commit: a concurrent rotation waits, then starts
            // from this one's result.
            let Some(row) = tx
                .query_opt(
                    "SELECT record FROM webhooks WHERE id = $1 AND tenant = $2 FOR UPDATE",
                    &[&id, &tenant],
                )
                .await?
            else {
                return Ok(None);
            };
            let mut record = decode(row.get(0), &id)?;
            record.rotate(sealed, overlap, now);
            tx.execute(
                "UPDATE webhooks SET record = $2 WHERE id = $1",
                &[&id, &encode(&record, &id)?],
            )
            .await?;
            tx.commit().await?;
            Ok(Some(record.info(&id, now)))
        })
    }

    fn delete_webhook(&self, tenant: &TenantId, id: &EndpointId) -> Result<bool, StoreError> {
        let (id, tenant) = (id.to_string(), tenant.to_string());
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            let deleted = tx
                .execute(
                    "DELETE FROM webhooks WHERE id = $1 AND tenant = $2",
                    &[&id, &tenant],
                )
                .await?;
            if deleted == 0 {
                return Ok(false);
            }
            tx.execute("DELETE FROM webhook_deliveries WHERE endpoint = $1", &[&id])
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn first_delivery(
        &self,
        id: &EndpointId,
        delivery: &str,
        retention: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let (id, delivery) = (id.to_string(), delivery.to_string());
        let (until, now) = (bigint(now.saturating_add(retention)), bigint(now));
        self.run(move |client| async move {
            // One statement: of concurrent writers one inserts; the others find its row
            // (locked, then re-read) and take it over only once its retention has ended.
            let taken = client
                .query_opt(
                    "INSERT INTO webhook_deliveries (endpoint, delivery, expires) \
                     VALUES ($1, $2, $3) \
                     ON CONFLICT (endpoint, delivery) DO UPDATE SET expires = EXCLUDED.expires \
                     WHERE webhook_deliveries.expires <= $4 \
                     RETURNING 1",
                    &[&id, &delivery, &until, &now],
                )
                .await?;
            Ok(taken.is_some())
        })
    }

    fn release_delivery(&self, id: &EndpointId, delivery: &str) -> Result<(), StoreError> {
        let (id, delivery) = (id.to_string(), delivery.to_string());
        self.run(move |client| async move {
            client
                .execute(
                    "DELETE FROM webhook_deliveries WHERE endpoint = $1 AND delivery = $2",
                    &[&id, &delivery],
                )
                .await?;
            Ok(())
        })
    }

    fn purge_deliveries(&self, now: u64) -> Result<usize, StoreError> {
        let now = bigint(now);
        let purged = self.run(move |client| async move {
            Ok(client
                .execute(
                    "DELETE FROM webhook_deliveries WHERE expires <= $1",
                    &[&now],
                )
                .await?)
        })?;
        Ok(usize::try_from(purged).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::testing::TestDatabase;
    use crate::postgres::testing::{rows_as_text, rows_of, shows};
    use crate::traits::Tenants;
    use airlock_policy::webhook::Scheme;
    use airlock_runtime::ids::InstallationId;

    /// Delivery ids of endpoint `id` remembered.
    fn deliveries(store: &PgStore, id: &EndpointId) -> i64 {
        let id = id.to_string();
        store
            .run(move |client| async move {
                Ok(client
                    .query_one(
                        "SELECT count(*) FROM webhook_deliveries WHERE endpoint = $1",
                        &[&id],
                    )
                    .await?
                    .get(0))
            })
            .expect("count")
    }

    #[test]
    fn delivery_ids_expire_secrets_stay_sealed_and_both_go_with_their_tenant() {
        let Some(database) = TestDatabase::create("delivery_ids_expire") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let store = database.store(&dir.path().join("master.key"));
        let crm: InstallationId = "crm".parse().expect("installation");
        let mut endpoints = Vec::new();
        for name in ["acme", "beta"] {
            let tenant: TenantId = name.parse().expect("tenant");
            store.create_tenant(&tenant).expect("tenant");
            let id = EndpointId::generate();
            let secret = WebhookSecret::for_scheme(Scheme::Standard, None).expect("secret");
            let new = NewEndpoint {
                id: &id,
                tenant: &tenant,
                installation: &crm,
                action: "map",
                scheme: Scheme::Standard,
            };
            store.create_webhook(new, &secret, 100).expect("created");
            endpoints.push((id, secret));
        }
        let (id, secret) = &endpoints[0];

        assert!(store.first_delivery(id, "m1", 600, 100).expect("first"));
        assert!(!store.first_delivery(id, "m1", 600, 699).expect("replay"));
        // Past its retention the id is forgotten, and purging drops it.
        assert!(store.first_delivery(id, "m1", 600, 700).expect("reused"));
        assert!(store.first_delivery(id, "m2", 10, 700).expect("first"));
        assert_eq!(store.purge_deliveries(711).expect("purge"), 1);
        assert!(!store.first_delivery(id, "m1", 600, 711).expect("kept"));
        store.release_delivery(id, "m1").expect("release");
        assert!(store.first_delivery(id, "m1", 600, 711).expect("released"));
        assert!(
            store
                .first_delivery(&endpoints[1].0, "m1", 600, 100)
                .expect("first")
        );

        // The secret is sealed, and opens only under its own endpoint id.
        let rows = rows_as_text(&store, "webhooks");
        assert!(
            shows(&rows, "\"action\":\"map\""),
            "the check reads inside records"
        );
        assert!(!shows(&rows, secret.expose()));
        let (info, keys) = store.webhook_keys(id, 100).expect("read").expect("found");
        assert_eq!(info.tenant, "acme");
        assert_eq!(
            keys[0].bytes(),
            secret.signing_key(Scheme::Standard).bytes()
        );
        let copy = EndpointId::generate();
        let (from, to) = (id.to_string(), copy.to_string());
        store
            .run(move |client| async move {
                client
                    .execute(
                        "INSERT INTO webhooks (id, tenant, record) \
                         SELECT $2, tenant, record FROM webhooks WHERE id = $1",
                        &[&from, &to],
                    )
                    .await?;
                Ok(())
            })
            .expect("copy");
        assert!(matches!(
            store.webhook_keys(&copy, 100),
            Err(StoreError::Decrypt { .. })
        ));
        assert!(
            store
                .delete_webhook(&"acme".parse().expect("tenant"), &copy)
                .expect("delete")
        );

        assert!(
            store
                .delete_tenant(&"acme".parse().expect("tenant"))
                .expect("deleted")
        );
        assert!(store.webhook_keys(id, 100).expect("read").is_none());
        assert_eq!(deliveries(&store, id), 0);
        assert_eq!(rows_of(&store, "webhooks", "beta"), 1);
        assert_eq!(deliveries(&store, &endpoints[1].0), 1);
    }
}
