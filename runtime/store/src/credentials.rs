//! Credential records: sealed values plus the metadata `credentials list` shows.
//!
//! A record is keyed by (tenant, installation, name) and its ciphertext bound to that key by
//! the AEAD's associated data, so a value copied to another record fails to open. Values are
//! re-validated when read: a value stored before a rule tightened fails closed
//! (`credential-malformed`) instead of reaching a header (CR-05).

use airlock_host_api::credentials::vault::{Sealed, SecretAad};
use airlock_host_api::credentials::{
    ConnectionTokens, CredentialError, CredentialType, RefreshTurn, Secret, SecretSource,
};
use serde::{Deserialize, Serialize};

use super::keys::{DATA_KEY_VERSION, TenantKeys};
use super::{Store, StoreError};
use crate::records::*;
use crate::traits::*;
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::{InstallationId, TenantId, UserId};
use std::sync::Arc;

pub(super) const CREDENTIALS: &str = "credentials";

/// One stored credential.
#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) credential_type: CredentialType,
    pub(crate) origins: Vec<String>,
    created: u64,
    rotated: Option<u64>,
    sealed: Sealed,
}

impl Record {
    /// A new value of credential `name`, sealed, replacing `previous` if there was one.
    pub(crate) fn seal(
        keys: &impl TenantKeys,
        (tenant, installation, name): (&TenantId, &InstallationId, &str),
        origins: Vec<String>,
        secret: &Secret,
        credential_type: CredentialType,
        previous: Option<&Record>,
        now: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let record = Record {
            credential_type,
            origins,
            created: previous.map_or(now, |p| p.created),
            rotated: previous.map(|_| now),
            sealed: keys
                .sealing_key(tenant)?
                .seal(&aad(tenant, installation, name), secret.expose().as_bytes()),
        };
        serde_json::to_vec(&record).map_err(|_| StoreError::Corrupt {
            what: format!("credential `{name}`"),
        })
    }

    /// What `credentials list` shows of it.
    pub(crate) fn info(self, name: String) -> CredentialInfo {
        CredentialInfo {
            name,
            credential_type: self.credential_type,
            origins: self.origins,
            created: self.created,
            rotated: self.rotated,
        }
    }
}

/// A backend's stored credential records, as [`StoredSecrets`] reads them.
pub(crate) trait CredentialRecords:
    TenantKeys + Credentials + Connections + Clone + Send + Sync + 'static
{
    /// The stored record of credential `name`, as [`Record::seal`] made it.
    fn credential_record(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// [`SecretSource::refresh_turn`]: a store one process holds has no other process to
    /// take turns with.
    fn refresh_turn(&self, key: ConnectionKey<'_>) -> Result<Option<RefreshTurn>, StoreError> {
        let _ = key;
        Ok(None)
    }
}

/// A typed record key: the ids' grammar has no NUL, so the separator is unambiguous.
fn record_key(tenant: &TenantId, installation: &InstallationId, name: &str) -> Vec<u8> {
    let mut key = scope_prefix(tenant, installation);
    key.extend_from_slice(name.as_bytes());
    key
}

fn scope_prefix(tenant: &TenantId, installation: &InstallationId) -> Vec<u8> {
    format!("{tenant}\0{installation}\0").into_bytes()
}

fn aad<'a>(tenant: &'a TenantId, installation: &'a InstallationId, name: &'a str) -> SecretAad<'a> {
    SecretAad {
        tenant: tenant.as_str(),
        installation: installation.as_str(),
        credential: name,
        key_version: DATA_KEY_VERSION,
    }
}

/// The value of credential `name`, opened and re-validated as `kind`.
fn credential_value(
    store: &impl CredentialRecords,
    tenant: &TenantId,
    installation: &InstallationId,
    name: &str,
    kind: CredentialType,
) -> Result<Option<Secret>, CredentialError> {
    let Some(bytes) = store
        .credential_record(tenant, installation, name)
        .map_err(|e| store_error(name, e))?
    else {
        return Ok(None);
    };
    let record = decode(&bytes, name).map_err(|e| store_error(name, e))?;
    let key = store
        .tenant_key(tenant, false)
        .map_err(|e| store_error(name, e))?
        .ok_or_else(|| CredentialError::Missing(name.to_string()))?;
    let plain = key
        .open(&aad(tenant, installation, name), &record.sealed)
        .map_err(|_| {
            store_error(
                name,
                StoreError::Decrypt {
                    what: format!("credential `{name}`"),
                },
            )
        })?;
    let text = String::from_utf8(plain.to_vec()).map_err(|_| {
        CredentialError::Malformed(
            name.to_string(),
            airlock_host_api::credentials::SecretError::Character {
                what: "non-UTF-8 byte",
                at: 0,
            },
        )
    })?;
    if record.credential_type != kind {
        return Err(CredentialError::Store {
            name: name.to_string(),
            reason: format!(
                "stored as {} but declared as {}",
                record.credential_type.as_str(),
                kind.as_str()
            ),
        });
    }
    Secret::new(kind, text)
        .map(Some)
        .map_err(|e| CredentialError::Malformed(name.to_string(), e))
}

/// [`Credentials::reseal_credential`] on any backend: the stored type and origins kept.
pub(crate) fn reseal(
    store: &impl CredentialRecords,
    tenant: &TenantId,
    installation: &InstallationId,
    name: &str,
    secret: &Secret,
) -> Result<(), StoreError> {
    let previous = store
        .credential_record(tenant, installation, name)?
        .map(|b| decode(&b, name))
        .transpose()?
        .ok_or_else(|| StoreError::Corrupt {
            what: format!("credential `{name}` (deleted while in use)"),
        })?;
    let kind = previous.credential_type;
    store
        .set_credential(tenant, installation, name, previous.origins, secret, kind)
        .map(|_| ())
}

impl CredentialRecords for Store {
    fn credential_record(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(CREDENTIALS)?
            .get(record_key(tenant, installation, name))?
            .map(|bytes| bytes.to_vec()))
    }
}

impl Credentials for Store {
    fn set_credential(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
        origins: Vec<String>,
        secret: &Secret,
        credential_type: CredentialType,
    ) -> Result<SetOutcome, StoreError> {
        let _pass = self.writing();
        let tree = self.tree(CREDENTIALS)?;
        let id = record_key(tenant, installation, name);
        let previous = tree.get(&id)?.map(|b| decode(&b, name)).transpose()?;
        let bytes = Record::seal(
            self,
            (tenant, installation, name),
            origins,
            secret,
            credential_type,
            previous.as_ref(),
            now_unix(),
        )?;
        tree.insert(id, bytes)?;
        tree.flush()?;
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
        let _pass = self.writing();
        reseal(self, tenant, installation, name, secret)
    }

    fn list_credentials(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<Vec<CredentialInfo>, StoreError> {
        let prefix = scope_prefix(tenant, installation);
        self.tree(CREDENTIALS)?
            .scan_prefix(&prefix)
            .map(|entry| {
                let (key, value) = entry?;
                let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                Ok(decode(&value, &name)?.info(name))
            })
            .collect()
    }

    fn delete_credential(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
    ) -> Result<bool, StoreError> {
        let _pass = self.writing();
        let tree = self.tree(CREDENTIALS)?;
        let removed = tree
            .remove(record_key(tenant, installation, name))?
            .is_some();
        tree.flush()?;
        Ok(removed)
    }
}

pub(crate) fn decode(bytes: &[u8], name: &str) -> Result<Record, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        what: format!("credential `{name}`"),
    })
}

/// The stored credentials of one installation, as the egress broker reads them.
pub(crate) struct StoredSecrets<S> {
    store: S,
    tenant: TenantId,
    installation: InstallationId,
}

impl Storage for Store {
    fn secrets(&self, tenant: &TenantId, installation: &InstallationId) -> Arc<dyn SecretSource> {
        Arc::new(StoredSecrets::new(
            self.clone(),
            tenant.clone(),
            installation.clone(),
        ))
    }

    fn schema_current(&self) -> Result<bool, StoreError> {
        self.format_is_current()
    }
}

impl<S> StoredSecrets<S> {
    pub(crate) fn new(store: S, tenant: TenantId, installation: InstallationId) -> Self {
        Self {
            store,
            tenant,
            installation,
        }
    }
}

impl<S: CredentialRecords> SecretSource for StoredSecrets<S> {
    fn get(&self, name: &str, kind: CredentialType) -> Result<Option<Secret>, CredentialError> {
        credential_value(&self.store, &self.tenant, &self.installation, name, kind)
    }

    fn origins(&self, name: &str) -> Result<Option<Vec<String>>, CredentialError> {
        let read = || -> Result<Option<Vec<String>>, StoreError> {
            match self
                .store
                .credential_record(&self.tenant, &self.installation, name)?
            {
                None => Ok(None),
                Some(bytes) => Ok(Some(decode(&bytes, name)?.origins)),
            }
        };
        // A value that is not stored has no binding to check: `get` reports it missing.
        read().map_err(|e| CredentialError::Store {
            name: name.to_string(),
            reason: e.to_string(),
        })
    }

    fn replace(&self, name: &str, value: &Secret) -> Result<(), CredentialError> {
        self.store
            .reseal_credential(&self.tenant, &self.installation, name, value)
            .map_err(|e| store_error(name, e))
    }

    fn connection(
        &self,
        name: &str,
        user: Option<&str>,
    ) -> Result<Option<ConnectionTokens>, CredentialError> {
        let user = parse_user(name, user)?;
        self.store
            .connection(self.connection_key(name, user.as_ref()))
            .map_err(|e| store_error(name, e))
    }

    fn update_connection(
        &self,
        name: &str,
        user: Option<&str>,
        replaces: u64,
        tokens: &ConnectionTokens,
    ) -> Result<bool, CredentialError> {
        let user = parse_user(name, user)?;
        self.store
            .replace_connection(
                self.connection_key(name, user.as_ref()),
                replaces,
                tokens,
                now_unix(),
            )
            .map_err(|e| store_error(name, e))
    }

    fn refresh_turn(
        &self,
        name: &str,
        user: Option<&str>,
    ) -> Result<Option<RefreshTurn>, CredentialError> {
        let user = parse_user(name, user)?;
        self.store
            .refresh_turn(self.connection_key(name, user.as_ref()))
            .map_err(|e| store_error(name, e))
    }

    fn mark_needs_reauth(
        &self,
        name: &str,
        user: Option<&str>,
        replaces: u64,
    ) -> Result<(), CredentialError> {
        let user = parse_user(name, user)?;
        self.store
            .mark_needs_reconsent(
                self.connection_key(name, user.as_ref()),
                replaces,
                now_unix(),
            )
            .map(|_| ())
            .map_err(|e| store_error(name, e))
    }
}

impl<S> StoredSecrets<S> {
    fn connection_key<'a>(&'a self, name: &'a str, user: Option<&'a UserId>) -> ConnectionKey<'a> {
        ConnectionKey {
            tenant: &self.tenant,
            installation: &self.installation,
            credential: name,
            user,
        }
    }
}

fn store_error(name: &str, e: StoreError) -> CredentialError {
    CredentialError::Store {
        name: name.to_string(),
        reason: e.to_string(),
    }
}

/// The user a scope names, as the store keys it (the server checked it on entry).
fn parse_user(name: &str, user: Option<&str>) -> Result<Option<UserId>, CredentialError> {
    user.map(str::parse)
        .transpose()
        .map_err(|e: airlock_runtime::ids::UserIdError| {
            store_error(
                name,
                StoreError::Corrupt {
                    what: e.to_string(),
                },
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(tenant: &str, installation: &str) -> (TenantId, InstallationId) {
        (
            tenant.parse().expect("tenant"),
            installation.parse().expect("installation"),
        )
    }

    #[test]
    fn a_sealed_value_opens_only_under_its_own_key() {
        let dir = tempfile::TempDir::new().expect("temp");
        let store = Store::open(dir.path(), None).expect("store");
        let (acme, i1) = ids("acme", "i1");
        let secret = Secret::new(CredentialType::Bearer, "tok-1".into()).expect("valid");
        let kind = CredentialType::Bearer;
        store
            .set_credential(&acme, &i1, "token", vec![], &secret, kind)
            .expect("set");
        let read = |t: &TenantId, i: &InstallationId, name: &str| {
            credential_value(&store, t, i, name, kind)
        };
        assert_eq!(
            read(&acme, &i1, "token")
                .expect("opens")
                .map(|s| s.expose().to_string()),
            Some("tok-1".into())
        );

        // The same ciphertext moved to another name, installation or tenant does not open.
        let (globex, i2) = ids("globex", "i2");
        store
            .set_credential(&globex, &i2, "token", vec![], &secret, kind)
            .expect("globex has a data key too");
        let tree = store.tree(CREDENTIALS).expect("tree");
        let bytes = tree
            .get(record_key(&acme, &i1, "token"))
            .expect("get")
            .expect("record");
        for (t, i, name) in [
            (&acme, &i1, "other"),
            (&acme, &i2, "token"),
            (&globex, &i2, "token"),
        ] {
            tree.insert(record_key(t, i, name), bytes.clone())
                .expect("copy");
            let err = read(t, i, name).expect_err("moved ciphertext must not open");
            assert_eq!(err.code(), "credential-store", "{t}/{i}/{name}: {err}");
        }
        assert!(read(&acme, &i2, "missing").expect("no record").is_none());
    }

    #[test]
    fn a_value_stored_as_another_type_is_never_injected() {
        let dir = tempfile::TempDir::new().expect("temp");
        let store = Store::open(dir.path(), None).expect("store");
        let (acme, i1) = ids("acme", "i1");
        let secret = Secret::new(CredentialType::Basic, "alice:pw".into()).expect("valid");
        store
            .set_credential(&acme, &i1, "login", vec![], &secret, CredentialType::Basic)
            .expect("set");
        // Declared as bearer now: the stored type disagrees, nothing is injected.
        let err = credential_value(&store, &acme, &i1, "login", CredentialType::Bearer)
            .expect_err("type mismatch");
        assert_eq!(err.code(), "credential-store");
        let listed = store.list_credentials(&acme, &i1).expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].credential_type, CredentialType::Basic);
        assert!(
            store
                .delete_credential(&acme, &i1, "login")
                .expect("delete")
        );
        assert!(
            !store
                .delete_credential(&acme, &i1, "login")
                .expect("delete")
        );
    }

    /// CR-05: a value in the store that today's rules refuse (stored before a rule tightened,
    /// or written around them) is never handed to the broker: reading it fails
    /// `credential-malformed`, so the request is refused before anything is sent.
    #[test]
    fn a_stored_value_that_breaks_todays_rules_fails_closed_when_read() {
        let dir = tempfile::TempDir::new().expect("temp");
        let store = Store::open(dir.path(), None).expect("store");
        let (acme, i1) = ids("acme", "i1");
        let valid = Secret::new(CredentialType::Bearer, "ok".into()).expect("valid");
        store
            .set_credential(&acme, &i1, "api", vec![], &valid, CredentialType::Bearer)
            .expect("set");
        let long = "a".repeat(100 << 10);
        for bad in [
            "abc\r\nX-Evil: 1",
            "abc\n",
            "abc\0",
            &long,
            "caf\u{e9}",
            "two words",
        ] {
            // Sealed as `set_credential` would, without the validation it does first.
            let key = store
                .tenant_key(&acme, false)
                .expect("read")
                .expect("acme has a key");
            let tree = store.tree(CREDENTIALS).expect("tree");
            let id = record_key(&acme, &i1, "api");
            let mut record =
                decode(&tree.get(&id).expect("read").expect("stored"), "api").expect("record");
            record.sealed = key.seal(&aad(&acme, &i1, "api"), bad.as_bytes());
            tree.insert(id, serde_json::to_vec(&record).expect("encode"))
                .expect("write");
            let err = credential_value(&store, &acme, &i1, "api", CredentialType::Bearer)
                .expect_err("refused when read");
            assert_eq!(err.code(), "credential-malformed", "{bad:?}: {err}");
            assert!(!err.to_string().contains("X-Evil"), "{err}");
        }
    }
}
