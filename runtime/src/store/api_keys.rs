//! API key records, by key id. Only a hash of each key's secret is stored.

use super::{Store, StoreError};
use crate::apikey::{self, ApiKeyRecord, KeyRefusal};
use crate::ids::TenantId;

pub(super) const API_KEYS: &str = "api-keys";
/// `last_used` is kept to the minute.
const LAST_USED_GRANULARITY: u64 = 60;

impl Store {
    /// Stores `record` (created or replaced) and flushes it.
    pub fn put_api_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|_| StoreError::Corrupt {
            what: format!("API key {}", record.id),
        })?;
        self.tree(API_KEYS)?.insert(record.id.as_bytes(), bytes)?;
        self.db.flush()?;
        Ok(())
    }

    /// The key record with `id`.
    pub fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.tree(API_KEYS)?
            .get(id.as_bytes())?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// Every key record, or `tenant`'s only.
    pub fn api_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut keys = Vec::new();
        for bytes in self.tree(API_KEYS)?.iter().values() {
            let record = decode(&bytes?)?;
            if tenant.is_none_or(|t| record.tenant.as_deref() == Some(t.as_str())) {
                keys.push(record);
            }
        }
        Ok(keys)
    }

    /// Marks key `id` revoked at `now`; false if there is no such key.
    pub fn revoke_api_key(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        let Some(mut record) = self.api_key(id)? else {
            return Ok(false);
        };
        record.revoked.get_or_insert(now);
        self.put_api_key(&record)?;
        Ok(true)
    }

    /// Removes every key of `tenant` (with the tenant).
    pub(super) fn delete_api_keys_of(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let tree = self.tree(API_KEYS)?;
        for record in self.api_keys(Some(tenant))? {
            tree.remove(record.id.as_bytes())?;
        }
        Ok(())
    }

    /// Checks a presented key at `now`: its record on success (with `last_used` updated to the
    /// minute), else why it was refused. An unknown id and a wrong secret are the same refusal.
    pub fn authenticate(
        &self,
        presented: &str,
        now: u64,
    ) -> Result<Result<ApiKeyRecord, KeyRefusal>, StoreError> {
        let Some(id) = apikey::claimed_id(presented) else {
            return Ok(Err(KeyRefusal::Invalid));
        };
        let Some(mut record) = self.api_key(id)? else {
            return Ok(Err(KeyRefusal::Invalid));
        };
        if let Err(refusal) = apikey::check(presented, &record, now) {
            return Ok(Err(refusal));
        }
        // Coarse on purpose: a write and flush per request would cost more than the request.
        if record
            .last_used
            .is_none_or(|at| now >= at + LAST_USED_GRANULARITY)
        {
            record.last_used = Some(now);
            self.put_api_key(&record)?;
        }
        Ok(Ok(record))
    }
}

fn decode(bytes: &[u8]) -> Result<ApiKeyRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        what: "API key record".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::{Scope, generate};

    #[test]
    fn a_stored_key_authenticates_until_revoked_and_its_secret_is_not_stored() {
        let data = tempfile::TempDir::new().expect("temp dir");
        let store = Store::open(data.path(), None).expect("store");
        let new = generate(Some("acme".into()), vec![Scope::Invoke], 100, None);
        store.put_api_key(&new.record).expect("stored");

        let ok = store.authenticate(&new.key, 200).expect("store works");
        assert_eq!(ok.map(|r| r.last_used), Ok(Some(200)));
        let other = generate(None, vec![], 100, None);
        assert_eq!(
            store.authenticate(&other.key, 200).expect("store works"),
            Err(KeyRefusal::Invalid)
        );
        assert!(store.revoke_api_key(&new.record.id, 300).expect("revoked"));
        assert_eq!(
            store.authenticate(&new.key, 400).expect("store works"),
            Err(KeyRefusal::Revoked)
        );
        let tenant: TenantId = "acme".parse().expect("id");
        store.delete_api_keys_of(&tenant).expect("deleted");
        assert!(store.api_keys(None).expect("listed").is_empty());
    }
}
