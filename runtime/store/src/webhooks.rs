//! Webhook endpoints (their sealed signing secrets) and the delivery ids already received.
//!
//! An endpoint holds one live secret, or two during a rotation's overlap: the previous one
//! carries an expiry, after which it no longer opens for verification and is dropped on the
//! next write. Delivery ids are kept per endpoint until their retention ends; the first writer
//! of an id wins (compare-and-swap), so two racing copies of one delivery run the action once.
//! A delivery id is written before its invocation's audit record, whose flush makes both
//! durable together (one sled log).
//!
//! The endpoint record, its sealing and what is read from it are shared with the PostgreSQL
//! store, which keeps the same record.

use airlock_host_api::credentials::vault::{Sealed, WebhookAad};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::keys::{DATA_KEY_VERSION, TenantKeys};
use super::{Store, StoreError};
use crate::records::*;
use crate::traits::*;
use airlock_policy::webhook::{Scheme, SigningKey, WebhookSecret};
use airlock_runtime::ids::{EndpointId, TenantId};

const WEBHOOKS: &str = "webhooks";
const DELIVERIES: &str = "webhook-deliveries";

/// One endpoint as stored, by either backend.
#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
    tenant: String,
    installation: String,
    action: String,
    scheme: Scheme,
    created: u64,
    /// Newest first.
    secrets: Vec<StoredSecret>,
}

#[derive(Serialize, Deserialize)]
struct StoredSecret {
    created: u64,
    /// When a rotated-out secret stops verifying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
    sealed: Sealed,
}

impl Record {
    /// A new endpoint with `secret`, sealed.
    pub(crate) fn new(
        keys: &impl TenantKeys,
        new: NewEndpoint<'_>,
        secret: &WebhookSecret,
        now: u64,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            tenant: new.tenant.to_string(),
            installation: new.installation.to_string(),
            action: new.action.to_string(),
            scheme: new.scheme,
            created: now,
            secrets: vec![StoredSecret {
                created: now,
                expires: None,
                sealed: seal_secret(keys, new.tenant, new.id, secret)?,
            }],
        })
    }

    pub(crate) fn info(&self, id: &str, now: u64) -> EndpointInfo {
        EndpointInfo {
            id: id.to_string(),
            tenant: self.tenant.clone(),
            installation: self.installation.clone(),
            action: self.action.clone(),
            scheme: self.scheme,
            path: format!("/v1/hooks/{id}"),
            created: self.created,
            secrets: self
                .live(now)
                .map(|s| SecretInfo {
                    created: s.created,
                    expires: s.expires,
                })
                .collect(),
        }
    }

    fn live(&self, now: u64) -> impl Iterator<Item = &StoredSecret> {
        self.secrets
            .iter()
            .filter(move |s| s.expires.is_none_or(|e| now < e))
    }

    /// Makes `sealed` the newest secret; the live previous one verifies until `now + overlap`
    /// (never longer than it already would), older ones are dropped.
    pub(crate) fn rotate(&mut self, sealed: Sealed, overlap: u64, now: u64) {
        let previous = self
            .secrets
            .drain(..)
            .find(|s| s.expires.is_none_or(|e| now < e));
        self.secrets.push(StoredSecret {
            created: now,
            expires: None,
            sealed,
        });
        if let Some(mut previous) = previous
            && overlap > 0
        {
            let until = now + overlap;
            previous.expires = Some(previous.expires.map_or(until, |e| e.min(until)));
            self.secrets.push(previous);
        }
    }

    /// The signing keys of the live secrets of endpoint `id`.
    pub(crate) fn signing_keys(
        &self,
        keys: &impl TenantKeys,
        id: &EndpointId,
        now: u64,
    ) -> Result<Vec<SigningKey>, StoreError> {
        Ok(open_secrets(keys, self, id, now)?
            .iter()
            .map(|s| s.signing_key(self.scheme))
            .collect())
    }

    /// Whether a live secret of endpoint `id` equals `secret`.
    pub(crate) fn holds_secret(
        &self,
        keys: &impl TenantKeys,
        id: &EndpointId,
        secret: &WebhookSecret,
        now: u64,
    ) -> Result<bool, StoreError> {
        Ok(open_secrets(keys, self, id, now)?
            .iter()
            .any(|s| s.same_as(secret)))
    }
}

fn aad<'a>(tenant: &'a str, endpoint: &'a str) -> WebhookAad<'a> {
    WebhookAad {
        tenant,
        endpoint,
        key_version: DATA_KEY_VERSION,
    }
}

pub(crate) fn decode(bytes: &[u8], id: &str) -> Result<Record, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        what: format!("webhook endpoint {id}"),
    })
}

pub(crate) fn encode(record: &Record, id: &str) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|_| StoreError::Corrupt {
        what: format!("webhook endpoint {id}"),
    })
}

/// `secret` sealed for endpoint `id` of `tenant`.
pub(crate) fn seal_secret(
    keys: &impl TenantKeys,
    tenant: &TenantId,
    id: &EndpointId,
    secret: &WebhookSecret,
) -> Result<Sealed, StoreError> {
    Ok(keys.sealing_key(tenant)?.seal(
        &aad(tenant.as_str(), id.as_str()),
        secret.expose().as_bytes(),
    ))
}

/// The record's live secrets, opened; none once the tenant's data key is gone.
fn open_secrets(
    keys: &impl TenantKeys,
    record: &Record,
    id: &EndpointId,
    now: u64,
) -> Result<Vec<WebhookSecret>, StoreError> {
    let tenant: TenantId = record.tenant.parse().map_err(|_| StoreError::Corrupt {
        what: format!("webhook endpoint {id}"),
    })?;
    let Some(key) = keys.tenant_key(&tenant, false)? else {
        return Ok(Vec::new());
    };
    record
        .live(now)
        .map(|s| {
            let plain = key
                .open(&aad(&record.tenant, id.as_str()), &s.sealed)
                .map_err(|_| StoreError::Decrypt {
                    what: format!("signing secret of webhook endpoint {id}"),
                })?;
            let text = String::from_utf8(plain.to_vec()).map_err(|_| StoreError::Corrupt {
                what: format!("signing secret of webhook endpoint {id}"),
            })?;
            Ok(WebhookSecret::from_stored(Zeroizing::new(text)))
        })
        .collect()
}

impl Store {
    /// Deletes every endpoint of `tenant` (the tenant is being deleted).
    pub(super) fn delete_webhooks_of(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let tree = self.tree(WEBHOOKS)?;
        for entry in tree.iter() {
            let (key, bytes) = entry?;
            let id = String::from_utf8_lossy(&key).into_owned();
            if decode(&bytes, &id)?.tenant == tenant.as_str() {
                tree.remove(&key)?;
                self.forget_deliveries(&id)?;
            }
        }
        Ok(())
    }

    fn webhook_record(&self, id: &EndpointId) -> Result<Option<Record>, StoreError> {
        self.tree(WEBHOOKS)?
            .get(id.as_str())?
            .map(|b| decode(&b, id.as_str()))
            .transpose()
    }

    fn forget_deliveries(&self, id: &str) -> Result<(), StoreError> {
        let tree = self.tree(DELIVERIES)?;
        for key in tree.scan_prefix(delivery_key(id, "")).keys() {
            tree.remove(key?)?;
        }
        Ok(())
    }
}

impl Webhooks for Store {
    fn create_webhook(
        &self,
        new: NewEndpoint<'_>,
        secret: &WebhookSecret,
        now: u64,
    ) -> Result<EndpointInfo, StoreError> {
        let _pass = self.writing();
        let id = new.id.as_str();
        let record = Record::new(self, new, secret, now)?;
        self.tree(WEBHOOKS)?
            .compare_and_swap(id, None as Option<&[u8]>, Some(encode(&record, id)?))?
            .map_err(|_| StoreError::Exists {
                what: format!("webhook endpoint {id}"),
            })?;
        self.db()?.flush()?;
        Ok(record.info(id, now))
    }

    fn webhook(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        now: u64,
    ) -> Result<Option<EndpointInfo>, StoreError> {
        Ok(self
            .webhook_record(id)?
            .filter(|r| r.tenant == tenant.as_str())
            .map(|r| r.info(id.as_str(), now)))
    }

    fn webhooks_of(&self, tenant: &TenantId, now: u64) -> Result<Vec<EndpointInfo>, StoreError> {
        let mut found = Vec::new();
        for entry in self.tree(WEBHOOKS)?.iter() {
            let (key, bytes) = entry?;
            let id = String::from_utf8_lossy(&key).into_owned();
            let record = decode(&bytes, &id)?;
            if record.tenant == tenant.as_str() {
                found.push(record.info(&id, now));
            }
        }
        Ok(found)
    }

    fn webhook_exists(&self, id: &EndpointId) -> Result<bool, StoreError> {
        Ok(self.tree(WEBHOOKS)?.contains_key(id.as_str())?)
    }

    fn webhook_keys(
        &self,
        id: &EndpointId,
        now: u64,
    ) -> Result<Option<(EndpointInfo, Vec<SigningKey>)>, StoreError> {
        let Some(record) = self.webhook_record(id)? else {
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
        for entry in self.tree(WEBHOOKS)?.iter() {
            let (key, bytes) = entry?;
            let id: EndpointId =
                String::from_utf8_lossy(&key)
                    .parse()
                    .map_err(|_| StoreError::Corrupt {
                        what: "webhook endpoint id".into(),
                    })?;
            let record = decode(&bytes, id.as_str())?;
            if record.tenant == tenant.as_str() && record.holds_secret(self, &id, secret, now)? {
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
        let _pass = self.writing();
        let sealed = seal_secret(self, tenant, id, secret)?;
        let tree = self.tree(WEBHOOKS)?;
        // Compare-and-swap: a concurrent rotation makes this one start again from its result.
        loop {
            let Some(current) = tree.get(id.as_str())? else {
                return Ok(None);
            };
            let mut record = decode(&current, id.as_str())?;
            if record.tenant != tenant.as_str() {
                return Ok(None);
            }
            record.rotate(sealed.clone(), overlap, now);
            let swapped = tree.compare_and_swap(
                id.as_str(),
                Some(current),
                Some(encode(&record, id.as_str())?),
            )?;
            if swapped.is_ok() {
                self.db()?.flush()?;
                return Ok(Some(record.info(id.as_str(), now)));
            }
        }
    }

    fn delete_webhook(&self, tenant: &TenantId, id: &EndpointId) -> Result<bool, StoreError> {
        let _pass = self.writing();
        match self.webhook_record(id)? {
            Some(record) if record.tenant == tenant.as_str() => {}
            _ => return Ok(false),
        }
        self.tree(WEBHOOKS)?.remove(id.as_str())?;
        self.forget_deliveries(id.as_str())?;
        self.db()?.flush()?;
        Ok(true)
    }

    fn first_delivery(
        &self,
        id: &EndpointId,
        delivery: &str,
        retention: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let _pass = self.writing();
        let tree = self.tree(DELIVERIES)?;
        let key = delivery_key(id.as_str(), delivery);
        let until = (now + retention).to_be_bytes();
        let mut expected: Option<sled::IVec> = None;
        loop {
            match tree.compare_and_swap(&key, expected.as_ref(), Some(&until[..]))? {
                Ok(()) => return Ok(true),
                Err(cas) => match cas.current {
                    Some(current) if expiry(&current) > now => return Ok(false),
                    // Remembered past its retention: a new delivery may reuse the id.
                    current => expected = current,
                },
            }
        }
    }

    fn release_delivery(&self, id: &EndpointId, delivery: &str) -> Result<(), StoreError> {
        let _pass = self.writing();
        self.tree(DELIVERIES)?
            .remove(delivery_key(id.as_str(), delivery))?;
        Ok(())
    }

    fn purge_deliveries(&self, now: u64) -> Result<usize, StoreError> {
        let _pass = self.writing();
        let tree = self.tree(DELIVERIES)?;
        let mut purged = 0;
        for entry in tree.iter() {
            let (key, value) = entry?;
            if expiry(&value) <= now
                && tree
                    .compare_and_swap(&key, Some(value), None as Option<&[u8]>)?
                    .is_ok()
            {
                purged += 1;
            }
        }
        Ok(purged)
    }
}

fn delivery_key(endpoint: &str, delivery: &str) -> Vec<u8> {
    let mut key = format!("{endpoint}\0").into_bytes();
    key.extend_from_slice(delivery.as_bytes());
    key
}

fn expiry(value: &[u8]) -> u64 {
    value.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_runtime::ids::InstallationId;

    #[test]
    fn delivery_ids_are_remembered_for_their_retention_and_shredded_with_the_tenant() {
        let dir = tempfile::TempDir::new().expect("temp");
        let store = Store::open(dir.path(), None).expect("store");
        let tenant: TenantId = "acme".parse().expect("tenant");
        store.create_tenant(&tenant).expect("tenant");
        let installation: InstallationId = "mapper".parse().expect("installation");
        let id = EndpointId::generate();
        let secret = WebhookSecret::for_scheme(Scheme::Standard, None).expect("secret");
        let new = NewEndpoint {
            id: &id,
            tenant: &tenant,
            installation: &installation,
            action: "map",
            scheme: Scheme::Standard,
        };
        store.create_webhook(new, &secret, 100).expect("created");

        assert!(store.first_delivery(&id, "m1", 600, 100).expect("first"));
        assert!(!store.first_delivery(&id, "m1", 600, 699).expect("replay"));
        // Past its retention the id is forgotten, and purging drops it.
        assert!(store.first_delivery(&id, "m1", 600, 700).expect("reused"));
        assert!(store.first_delivery(&id, "m2", 10, 700).expect("first"));
        assert_eq!(store.purge_deliveries(711).expect("purge"), 1);
        assert!(
            !store
                .first_delivery(&id, "m1", 600, 711)
                .expect("still kept")
        );

        // The sealed secret opens only under its own endpoint id.
        let (info, keys) = store.webhook_keys(&id, 100).expect("read").expect("found");
        assert_eq!(info.tenant, "acme");
        assert_eq!(
            keys[0].bytes(),
            secret.signing_key(Scheme::Standard).bytes()
        );
        let tree = store.tree(WEBHOOKS).expect("tree");
        let bytes = tree.get(id.as_str()).expect("get").expect("record");
        let copy = EndpointId::generate();
        tree.insert(copy.as_str(), bytes).expect("copy");
        assert!(matches!(
            store.webhook_keys(&copy, 100),
            Err(StoreError::Decrypt { .. })
        ));
        tree.remove(copy.as_str()).expect("remove");

        assert!(store.delete_tenant(&tenant).expect("deleted"));
        assert!(store.webhook_keys(&id, 100).expect("read").is_none());
        assert!(store.tree(DELIVERIES).expect("tree").is_empty());
    }
}
