//! Credential records: sealed values plus the metadata `credentials list` shows.
//!
//! A record is keyed by (tenant, installation, name) and its ciphertext bound to that key by
//! the AEAD's associated data, so a value copied to another record fails to open. Values are
//! re-validated when read: a value stored before a rule tightened fails closed
//! (`credential-malformed`) instead of reaching a header (CR-05).

use airlock_host_api::credentials::vault::{Sealed, SecretAad};
use airlock_host_api::credentials::{CredentialError, CredentialType, Secret, SecretSource};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::clock::now_unix;
use crate::ids::{InstallationId, TenantId};

const CREDENTIALS: &str = "credentials";
/// Version of the data key that seals values (one per tenant for now; rotation bumps it).
const DATA_KEY_VERSION: u32 = 1;

/// One stored credential.
#[derive(Serialize, Deserialize)]
struct Record {
    credential_type: CredentialType,
    origins: Vec<String>,
    created: u64,
    rotated: Option<u64>,
    sealed: Sealed,
}

/// What `credentials list` shows: never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub credential_type: CredentialType,
    /// The origins (scheme://host:port) of the rules that send it.
    pub origins: Vec<String>,
    pub created: u64,
    pub rotated: Option<u64>,
}

/// Whether `set` stored a new credential or replaced an existing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    Created,
    Rotated,
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

impl Store {
    /// Seals and stores `secret` as credential `name` of the installation, replacing any
    /// earlier value; flushed before it returns.
    pub fn set_credential(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
        origins: Vec<String>,
        secret: &Secret,
        credential_type: CredentialType,
    ) -> Result<SetOutcome, StoreError> {
        let key = self
            .tenant_key(tenant, true)?
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("data key of tenant {tenant}"),
            })?;
        let tree = self.tree(CREDENTIALS)?;
        let id = record_key(tenant, installation, name);
        let previous = tree.get(&id)?.map(|b| decode(&b, name)).transpose()?;
        let now = now_unix();
        let record = Record {
            credential_type,
            origins,
            created: previous.as_ref().map_or(now, |p| p.created),
            rotated: previous.as_ref().map(|_| now),
            sealed: key.seal(&aad(tenant, installation, name), secret.expose().as_bytes()),
        };
        let bytes = serde_json::to_vec(&record).map_err(|_| StoreError::Corrupt {
            what: format!("credential `{name}`"),
        })?;
        tree.insert(id, bytes)?;
        tree.flush()?;
        Ok(if previous.is_some() {
            SetOutcome::Rotated
        } else {
            SetOutcome::Created
        })
    }

    /// The installation's credentials, by name, without values.
    pub fn list_credentials(
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
                let record = decode(&value, &name)?;
                Ok(CredentialInfo {
                    name,
                    credential_type: record.credential_type,
                    origins: record.origins,
                    created: record.created,
                    rotated: record.rotated,
                })
            })
            .collect()
    }

    /// Deletes credential `name`; false when there was none.
    pub fn delete_credential(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
    ) -> Result<bool, StoreError> {
        let tree = self.tree(CREDENTIALS)?;
        let removed = tree
            .remove(record_key(tenant, installation, name))?
            .is_some();
        tree.flush()?;
        Ok(removed)
    }

    /// The value of credential `name`, opened and re-validated as `kind`.
    fn credential_value(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
        kind: CredentialType,
    ) -> Result<Option<Secret>, CredentialError> {
        let store_error = |e: StoreError| CredentialError::Store {
            name: name.to_string(),
            reason: e.to_string(),
        };
        let tree = self.tree(CREDENTIALS).map_err(store_error)?;
        let Some(bytes) = tree
            .get(record_key(tenant, installation, name))
            .map_err(|e| store_error(e.into()))?
        else {
            return Ok(None);
        };
        let record = decode(&bytes, name).map_err(store_error)?;
        let key = self
            .tenant_key(tenant, false)
            .map_err(store_error)?
            .ok_or_else(|| CredentialError::Missing(name.to_string()))?;
        let plain = key
            .open(&aad(tenant, installation, name), &record.sealed)
            .map_err(|_| {
                store_error(StoreError::Decrypt {
                    what: format!("credential `{name}`"),
                })
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
}

fn decode(bytes: &[u8], name: &str) -> Result<Record, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        what: format!("credential `{name}`"),
    })
}

/// The stored credentials of one installation, as the egress broker reads them.
pub struct StoredSecrets {
    store: Store,
    tenant: TenantId,
    installation: InstallationId,
}

impl StoredSecrets {
    pub fn new(store: Store, tenant: TenantId, installation: InstallationId) -> Self {
        Self {
            store,
            tenant,
            installation,
        }
    }
}

impl SecretSource for StoredSecrets {
    fn get(&self, name: &str, kind: CredentialType) -> Result<Option<Secret>, CredentialError> {
        self.store
            .credential_value(&self.tenant, &self.installation, name, kind)
    }
}
