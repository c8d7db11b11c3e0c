//! The trusted publisher keys ([`Trust`]) of the embedded store: one JSON file in the data dir
//! (`trust.json`), as before the storage traits, so every data dir keeps its keys.
//!
//! The file is replaced atomically on every change, so readers never hold a lock and never see
//! half a write. Writers hold the store, which is one process's at a time, and take turns on the
//! store's trust lock, so a change is never made over keys another writer has just changed.

use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Store, StoreError};
use crate::traits::Trust;
use airlock_runtime::bundle::PublicKey;
use airlock_runtime::fsutil::write_atomic;
use airlock_runtime::trust::{TrustError, TrustStore, TrustedKey};

pub(super) const TRUST_FILE: &str = "trust.json";
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    format: u32,
    keys: Vec<TrustedKey>,
}

/// The keys in the trust file of `data_dir`; a missing file holds none. For `airlock inspect`
/// too, which reads a data dir without opening its store.
pub fn read_trust_file(data_dir: &Path) -> Result<Vec<TrustedKey>, StoreError> {
    let path = data_dir.join(TRUST_FILE);
    match read(&path)? {
        Some(bytes) => parse(&path, &bytes),
        None => Ok(Vec::new()),
    }
}

/// The file's bytes, `None` if there is no file.
fn read(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io(path, source)),
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<TrustedKey>, StoreError> {
    let file: TrustFile = serde_json::from_slice(bytes).map_err(|e| io(path, e.into()))?;
    if file.format != FORMAT {
        let unknown = format!("unknown trust store format {}", file.format);
        return Err(io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, unknown),
        ));
    }
    Ok(file.keys)
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    fn trust_path(&self) -> PathBuf {
        self.data_dir.join(TRUST_FILE)
    }

    /// The trust file's bytes as stored (`None` without one), for a backup.
    pub(super) fn trust_file(&self) -> Result<Option<Vec<u8>>, StoreError> {
        read(&self.trust_path())
    }

    /// Makes `change` to the keys as stored now and writes them, one writer at a time; nothing
    /// is written when the change is refused.
    fn change_trust(
        &self,
        change: impl FnOnce(&mut TrustStore) -> Result<&TrustedKey, TrustError>,
    ) -> Result<Result<TrustedKey, TrustError>, StoreError> {
        let _pass = self.writing();
        let _turn = self
            .trust_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut trust = TrustStore::from_keys(read_trust_file(&self.data_dir)?);
        let changed = match change(&mut trust) {
            Ok(key) => key.clone(),
            Err(refused) => return Ok(Err(refused)),
        };
        let path = self.trust_path();
        let file = TrustFile {
            format: FORMAT,
            keys: trust.keys().to_vec(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| io(&path, e.into()))?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes).map_err(|source| io(&path, source))?;
        Ok(Ok(changed))
    }
}

impl Trust for Store {
    fn trusted_keys(&self) -> Result<Vec<TrustedKey>, StoreError> {
        read_trust_file(&self.data_dir)
    }

    fn add_trusted_key(
        &self,
        key: &PublicKey,
        publisher: &str,
        now: u64,
    ) -> Result<Result<TrustedKey, TrustError>, StoreError> {
        self.change_trust(|trust| trust.add(key, publisher, now))
    }

    fn revoke_trusted_key(
        &self,
        key_id: &str,
        now: u64,
    ) -> Result<Result<TrustedKey, TrustError>, StoreError> {
        self.change_trust(|trust| trust.revoke(key_id, now))
    }

    /// A hash of the file's bytes (0 without a file): one small read, and a hand edit of the
    /// file shows too.
    fn trust_revision(&self) -> Result<u64, StoreError> {
        Ok(read(&self.trust_path())?.map_or(0, |bytes| {
            let digest = Sha256::digest(&bytes);
            u64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
        }))
    }
}

#[cfg(test)]
mod tests {
    use airlock_runtime::bundle::{PublicKey, SigningKey};

    use crate::{Store, Trust as _};

    #[test]
    fn a_trust_file_of_an_earlier_airlock_is_read_and_kept_in_its_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = PublicKey::from_verifying_key(SigningKey::from_bytes(&[1; 32]).verifying_key());
        let written = format!(
            "{{\n  \"format\": 1,\n  \"keys\": [\n    {{\n      \"key_id\": \"{}\",\n      \
             \"public_key\": \"{}\",\n      \"publisher\": \"Acme\",\n      \"added\": 100,\n      \
             \"revoked\": null\n    }}\n  ]\n}}\n",
            old.key_id(),
            old.to_line()
        );
        std::fs::write(dir.path().join("trust.json"), &written).expect("write");
        let store = Store::open(dir.path(), None).expect("store");
        let keys = store.trusted_keys().expect("read");
        assert_eq!((keys.len(), keys[0].publisher.as_str()), (1, "Acme"));

        // A change writes it back in the same format.
        store
            .revoke_trusted_key(old.key_id(), 200)
            .expect("revoke")
            .expect("revoked");
        let rewritten = std::fs::read_to_string(dir.path().join("trust.json")).expect("read");
        assert_eq!(rewritten, written.replace("null", "200"));
    }
}
