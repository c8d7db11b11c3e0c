//! API key records, by key id. Only a hash of each key's secret is stored.

use sled::IVec;

use super::{Store, StoreError};
use crate::traits::*;
use airlock_policy::apikey::{self, ApiKeyRecord, KeyRefusal, Suspension};
use airlock_runtime::ids::TenantId;

pub(super) const API_KEYS: &str = "api-keys";
/// `last_used` is kept to the minute.
const LAST_USED_GRANULARITY: u64 = 60;

/// A backend's compare-and-set access to key records: what [`revoke`] and [`authenticate`],
/// shared by both backends, need.
pub(crate) trait KeyRecords {
    /// The stored form a replacement is compared against.
    type Read;

    /// The key record with `id`, and its stored form for [`Self::replace_api_key`].
    fn read_api_key(&self, id: &str) -> Result<Option<(Self::Read, ApiKeyRecord)>, StoreError>;

    /// Writes `record` (flushed) only if what is stored is still `read`; false otherwise.
    fn replace_api_key(&self, read: &Self::Read, record: &ApiKeyRecord)
    -> Result<bool, StoreError>;
}

/// Compare-and-set `change` on key `id` until it is written, or `change` says there is nothing
/// to change (false): `None` if there is no such key, else whether it changed.
fn update(
    store: &impl KeyRecords,
    id: &str,
    change: impl Fn(&mut ApiKeyRecord) -> bool,
) -> Result<Option<bool>, StoreError> {
    loop {
        let Some((read, mut record)) = store.read_api_key(id)? else {
            return Ok(None);
        };
        if !change(&mut record) {
            return Ok(Some(false));
        }
        if store.replace_api_key(&read, &record)? {
            return Ok(Some(true));
        }
    }
}

/// [`ApiKeys::revoke_api_key`] on any backend.
pub(crate) fn revoke(store: &impl KeyRecords, id: &str, now: u64) -> Result<bool, StoreError> {
    let revoked = update(store, id, |record| {
        let fresh = record.revoked.is_none();
        if fresh {
            record.revoked = Some(now);
        }
        fresh
    })?;
    Ok(revoked.is_some())
}

/// [`ApiKeys::suspend_api_key`] on any backend.
pub(crate) fn suspend(
    store: &impl KeyRecords,
    id: &str,
    suspension: Option<Suspension>,
) -> Result<Option<bool>, StoreError> {
    update(store, id, |record| {
        // Suspending keeps the first suspension; lifting needs one to lift.
        let changes = record.suspended.is_some() != suspension.is_some();
        if changes {
            record.suspended = suspension.clone();
        }
        changes
    })
}

/// [`ApiKeys::authenticate`] on any backend: `last_used` written only over the record that
/// was checked, else checked again.
pub(crate) fn authenticate(
    store: &impl KeyRecords,
    presented: &str,
    now: u64,
) -> Result<Result<ApiKeyRecord, KeyRefusal>, StoreError> {
    let Some(id) = apikey::claimed_id(presented) else {
        return Ok(Err(KeyRefusal::Invalid));
    };
    loop {
        let Some((read, mut record)) = store.read_api_key(id)? else {
            return Ok(Err(KeyRefusal::Invalid));
        };
        if let Err(refusal) = apikey::check(presented, &record, now) {
            return Ok(Err(refusal));
        }
        if record
            .last_used
            .is_some_and(|at| now < at.saturating_add(LAST_USED_GRANULARITY))
        {
            return Ok(Ok(record));
        }
        record.last_used = Some(now);
        if store.replace_api_key(&read, &record)? {
            return Ok(Ok(record));
        }
    }
}

impl KeyRecords for Store {
    type Read = IVec;

    fn read_api_key(&self, id: &str) -> Result<Option<(IVec, ApiKeyRecord)>, StoreError> {
        self.tree(API_KEYS)?
            .get(id.as_bytes())?
            .map(|bytes| decode(&bytes).map(|record| (bytes, record)))
            .transpose()
    }

    /// Stores `record` over the one read as `read`, flushed; false, storing nothing, if the
    /// stored record is no longer `read` (changed, or deleted: a record is never brought back).
    fn replace_api_key(&self, read: &IVec, record: &ApiKeyRecord) -> Result<bool, StoreError> {
        let _pass = self.writing();
        let swapped = self.tree(API_KEYS)?.compare_and_swap(
            record.id.as_bytes(),
            Some(read),
            Some(encode(record)?),
        )?;
        if swapped.is_ok() {
            self.db()?.flush()?;
        }
        Ok(swapped.is_ok())
    }
}

impl Store {
    /// Removes every key of `tenant` (with the tenant).
    pub(super) fn delete_api_keys_of(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let tree = self.tree(API_KEYS)?;
        for record in self.api_keys(Some(tenant))? {
            tree.remove(record.id.as_bytes())?;
        }
        Ok(())
    }
}

impl ApiKeys for Store {
    fn put_api_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let _pass = self.writing();
        self.tree(API_KEYS)?
            .insert(record.id.as_bytes(), encode(record)?)?;
        self.db()?.flush()?;
        Ok(())
    }

    fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.read_api_key(id)?.map(|(_, record)| record))
    }

    fn api_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut keys = Vec::new();
        for bytes in self.tree(API_KEYS)?.iter().values() {
            let record = decode(&bytes?)?;
            if tenant.is_none_or(|t| record.tenant.as_deref() == Some(t.as_str())) {
                keys.push(record);
            }
        }
        Ok(keys)
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

pub(crate) fn encode(record: &ApiKeyRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|_| StoreError::Corrupt {
        what: format!("API key {}", record.id),
    })
}

pub(crate) fn decode(bytes: &[u8]) -> Result<ApiKeyRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        what: "API key record".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_policy::apikey::{Scope, generate};

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

    /// `authenticate` reads, checks, then writes `last_used`; here a revoke and then a
    /// deletion land between its read and its write, as they can under concurrent requests.
    #[test]
    fn a_use_in_flight_never_undoes_a_revoke_or_brings_a_deleted_key_back() {
        let data = tempfile::TempDir::new().expect("temp dir");
        let store = Store::open(data.path(), None).expect("store");
        let new = generate(Some("acme".into()), vec![Scope::Invoke], 100, None);
        let id = new.record.id.clone();
        store.put_api_key(&new.record).expect("stored");

        let (read, mut used) = store.read_api_key(&id).expect("read").expect("there");
        used.last_used = Some(200);
        assert!(store.revoke_api_key(&id, 150).expect("revoked"));
        assert!(!store.replace_api_key(&read, &used).expect("store works"));
        let stored = store.api_key(&id).expect("read").expect("there");
        assert_eq!((stored.revoked, stored.last_used), (Some(150), None));
        assert_eq!(
            store.authenticate(&new.key, 300).expect("store works"),
            Err(KeyRefusal::Revoked)
        );

        let (read, mut revoked) = store.read_api_key(&id).expect("read").expect("there");
        let tenant: TenantId = "acme".parse().expect("id");
        store.delete_api_keys_of(&tenant).expect("deleted");
        assert!(!store.revoke_api_key(&id, 400).expect("store works"));
        revoked.last_used = Some(400);
        assert!(!store.replace_api_key(&read, &revoked).expect("store works"));
        assert_eq!(store.api_key(&id).expect("read"), None, "not brought back");

        // Many uses racing one revoke, again and again: once the revoke is stored, it holds.
        for round in 0..20 {
            let again = generate(Some("acme".into()), vec![Scope::Invoke], 100, None);
            store.put_api_key(&again.record).expect("stored");
            std::thread::scope(|s| {
                for t in 0..4u64 {
                    let (store, key) = (&store, &again.key);
                    s.spawn(move || {
                        for i in 1..=50u64 {
                            let now = 1_000 + (t * 50 + i) * LAST_USED_GRANULARITY;
                            store.authenticate(key, now).expect("store works").ok();
                        }
                    });
                }
                s.spawn(|| store.revoke_api_key(&again.record.id, 5).expect("revoked"));
            });
            let stored = store
                .api_key(&again.record.id)
                .expect("read")
                .expect("there");
            assert_eq!(
                stored.revoked,
                Some(5),
                "round {round}: a use undid the revoke"
            );
        }
    }
}
