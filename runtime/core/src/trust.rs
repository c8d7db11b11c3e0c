//! The trust store: which publisher keys may sign code this host runs.
//!
//! One JSON file in the data dir (`trust.json`), replaced atomically on every change, so that
//! readers (every `airlock run`) never hold a lock and never see half a write. A key is trusted
//! for exactly one publisher name; a revoked key stays listed, so it can never be re-added by
//! mistake.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::{PublicKey, Trust};
use crate::clock::now_unix;
use crate::fsutil::write_atomic;

const TRUST_FILE: &str = "trust.json";
const FORMAT: u32 = 1;

/// One trusted (or revoked) publisher key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    pub key_id: String,
    /// The public key line, as `airlock keygen` printed it.
    pub public_key: String,
    pub publisher: String,
    pub added: u64,
    pub revoked: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    format: u32,
    keys: Vec<TrustedKey>,
}

/// Why the trust store refused a change or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the trust store {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write the trust store {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key {0} is already trusted")]
    AlreadyTrusted(String),
    #[error("key {0} was revoked; a revoked key cannot be trusted again (make a new key)")]
    WasRevoked(String),
    #[error("no key {0} in the trust store")]
    UnknownKey(String),
    #[error("the publisher name is empty")]
    EmptyPublisher,
}

/// The trust store of one data dir, as read.
pub struct TrustStore {
    path: PathBuf,
    file: TrustFile,
    /// Parsed keys, parallel to `file.keys`.
    parsed: Vec<Option<PublicKey>>,
}

impl TrustStore {
    /// Where the store of `data_dir` lives.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(TRUST_FILE)
    }

    /// Reads the store; a missing file is an empty store (nothing trusted).
    pub fn open(data_dir: &Path) -> Result<Self, TrustError> {
        let path = Self::path(data_dir);
        let read = |reason: String| TrustError::Read {
            path: path.clone(),
            reason,
        };
        let file = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: TrustFile =
                    serde_json::from_slice(&bytes).map_err(|e| read(e.to_string()))?;
                if file.format != FORMAT {
                    return Err(read(format!("unknown format {}", file.format)));
                }
                file
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TrustFile {
                format: FORMAT,
                keys: Vec::new(),
            },
            Err(e) => return Err(read(e.to_string())),
        };
        // A line that no longer parses trusts nothing; it stays listed for the operator.
        let parsed = file
            .keys
            .iter()
            .map(|k| PublicKey::parse_line(&k.public_key).ok())
            .collect();
        Ok(Self { path, file, parsed })
    }

    pub fn keys(&self) -> &[TrustedKey] {
        &self.file.keys
    }

    /// Trusts `key` for `publisher`.
    pub fn add(&mut self, key: &PublicKey, publisher: &str) -> Result<&TrustedKey, TrustError> {
        let publisher = publisher.trim();
        if publisher.is_empty() {
            return Err(TrustError::EmptyPublisher);
        }
        let key_id = key.key_id().to_string();
        if let Some(existing) = self.file.keys.iter().find(|k| k.key_id == key_id) {
            return Err(match existing.revoked {
                Some(_) => TrustError::WasRevoked(key_id),
                None => TrustError::AlreadyTrusted(key_id),
            });
        }
        self.file.keys.push(TrustedKey {
            key_id,
            public_key: key.to_line(),
            publisher: publisher.to_string(),
            added: now_unix(),
            revoked: None,
        });
        self.parsed.push(Some(key.clone()));
        self.save()?;
        Ok(&self.file.keys[self.file.keys.len() - 1])
    }

    /// Revokes key `key_id`: bundles it signed stop verifying at once. Returns the publisher
    /// it was trusted for.
    pub fn revoke(&mut self, key_id: &str) -> Result<String, TrustError> {
        let key = self
            .file
            .keys
            .iter_mut()
            .find(|k| k.key_id == key_id)
            .ok_or_else(|| TrustError::UnknownKey(key_id.to_string()))?;
        let publisher = key.publisher.clone();
        if key.revoked.is_none() {
            key.revoked = Some(now_unix());
            self.save()?;
        }
        Ok(publisher)
    }

    /// What the store says of `key_id`, for bundle verification.
    pub fn lookup(&self, key_id: &str) -> Trust<'_> {
        let found = self
            .file
            .keys
            .iter()
            .zip(&self.parsed)
            .find(|(k, _)| k.key_id == key_id);
        match found {
            Some((k, _)) if k.revoked.is_some() => Trust::Revoked,
            Some((k, Some(key))) => Trust::Trusted {
                key,
                publisher: &k.publisher,
            },
            _ => Trust::Unknown,
        }
    }

    fn save(&self) -> Result<(), TrustError> {
        let mut bytes = serde_json::to_vec_pretty(&self.file).map_err(|e| TrustError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes).map_err(|source| TrustError::Write {
            path: self.path.clone(),
            source,
        })
    }
}
