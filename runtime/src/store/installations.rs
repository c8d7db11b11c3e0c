//! Installation records: which signed bundle a tenant's installation runs, what the operator
//! granted it, its config, and an upgrade waiting for approval. Bundles are kept whole, by the
//! SHA-256 of their bytes, under `DATA/bundles/`, and verified again every time they are loaded.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Store, StoreError};
use crate::ids::{InstallationId, TenantId};
use crate::install::Grant;

pub(super) const INSTALLATIONS: &str = "installations";
const BUNDLES_DIR: &str = "bundles";

/// One installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationRecord {
    pub tenant: String,
    pub installation: String,
    pub integration: String,
    pub version: String,
    /// Hex SHA-256 of the bundle file.
    pub bundle: String,
    /// The key id that signed it.
    pub key: String,
    pub grant: Grant,
    /// Config JSON, validated against the integration's config schema when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    pub created: u64,
    pub updated: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingUpgrade>,
}

/// A newer version that asks for more than the installed one; it waits for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpgrade {
    pub version: String,
    pub bundle: String,
    pub key: String,
    /// What it declares beyond the installed version.
    pub additions: Vec<String>,
    /// Those of `additions` only the operator's admin key may approve: they change where a
    /// stored secret is sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_only: Vec<String>,
    pub requested: u64,
}

fn record_key(tenant: &TenantId, installation: &InstallationId) -> Vec<u8> {
    format!("{tenant}\0{installation}").into_bytes()
}

impl Store {
    /// The installation, if it exists.
    pub fn installation(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<Option<InstallationRecord>, StoreError> {
        self.tree(INSTALLATIONS)?
            .get(record_key(tenant, installation))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// Stores `record` (created or replaced) and flushes it.
    pub fn put_installation(&self, record: &InstallationRecord) -> Result<(), StoreError> {
        let tenant: TenantId = record.tenant.parse().map_err(|_| corrupt(record))?;
        let installation: InstallationId =
            record.installation.parse().map_err(|_| corrupt(record))?;
        let bytes = serde_json::to_vec(record).map_err(|_| corrupt(record))?;
        self.tree(INSTALLATIONS)?
            .insert(record_key(&tenant, &installation), bytes)?;
        self.db.flush()?;
        Ok(())
    }

    /// Every installation, or `tenant`'s only.
    pub fn installations(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<InstallationRecord>, StoreError> {
        let prefix = tenant.map_or_else(Vec::new, |t| format!("{t}\0").into_bytes());
        self.tree(INSTALLATIONS)?
            .scan_prefix(prefix)
            .values()
            .map(|bytes| decode(&bytes?))
            .collect()
    }

    /// Keeps `bytes` as a bundle (once per content); returns its hex SHA-256.
    pub fn put_bundle(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let digest = bundle_digest(bytes);
        let path = self.bundle_path(&digest);
        if !path.exists() {
            let io = |e: std::io::Error| StoreError::Io {
                path: path.clone(),
                source: e,
            };
            std::fs::create_dir_all(self.data_dir.join(BUNDLES_DIR)).map_err(io)?;
            crate::fsutil::write_atomic(&path, bytes).map_err(io)?;
        }
        Ok(digest)
    }

    /// Where the bundle with hex SHA-256 `digest` is kept.
    pub fn bundle_path(&self, digest: &str) -> PathBuf {
        self.data_dir
            .join(BUNDLES_DIR)
            .join(format!("{digest}.airlock"))
    }
}

/// The name a bundle is kept under: hex SHA-256 of its bytes.
pub fn bundle_digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn decode(bytes: &[u8]) -> Result<InstallationRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        what: "installation record".to_string(),
    })
}

fn corrupt(record: &InstallationRecord) -> StoreError {
    StoreError::Corrupt {
        what: format!(
            "installation {} of tenant {}",
            record.installation, record.tenant
        ),
    }
}
