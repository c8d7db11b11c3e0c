//! The trusted publisher keys: which keys may sign code this host runs.
//!
//! [`TrustStore`] is the keys as read from storage (`airlock-store`'s `Trust` trait), with the
//! rules every change keeps whatever the backend: a key is trusted for exactly one publisher
//! name, and a revoked key stays listed, so it can never be re-added by mistake.

use serde::{Deserialize, Serialize};

use crate::bundle::{PublicKey, Trust};

/// One trusted (or revoked) publisher key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    pub key_id: String,
    /// The public key line, as `airlock keygen` printed it.
    pub public_key: String,
    pub publisher: String,
    pub added: u64,
    pub revoked: Option<u64>,
}

/// Why a trust change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("key {0} is already trusted")]
    AlreadyTrusted(String),
    #[error("key {0} was revoked; a revoked key cannot be trusted again (make a new key)")]
    WasRevoked(String),
    #[error("no key {0} in the trust store")]
    UnknownKey(String),
    #[error("the publisher name is empty")]
    EmptyPublisher,
}

/// The trusted keys, as read.
#[derive(Debug, Default)]
pub struct TrustStore {
    keys: Vec<TrustedKey>,
    /// Parsed keys, parallel to `keys`.
    parsed: Vec<Option<PublicKey>>,
}

impl TrustStore {
    /// The store holding `keys`, as stored.
    pub fn from_keys(keys: Vec<TrustedKey>) -> Self {
        // A line that no longer parses trusts nothing; it stays listed for the operator.
        let parsed = keys
            .iter()
            .map(|k| PublicKey::parse_line(&k.public_key).ok())
            .collect();
        Self { keys, parsed }
    }

    /// Every key, revoked ones included, in the order they were added.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// Trusts `key` for `publisher` as of `now`; refused if its id is listed, trusted or
    /// revoked.
    pub fn add(
        &mut self,
        key: &PublicKey,
        publisher: &str,
        now: u64,
    ) -> Result<&TrustedKey, TrustError> {
        let publisher = publisher.trim();
        if publisher.is_empty() {
            return Err(TrustError::EmptyPublisher);
        }
        let key_id = key.key_id().to_string();
        if let Some(existing) = self.keys.iter().find(|k| k.key_id == key_id) {
            return Err(match existing.revoked {
                Some(_) => TrustError::WasRevoked(key_id),
                None => TrustError::AlreadyTrusted(key_id),
            });
        }
        self.keys.push(TrustedKey {
            key_id,
            public_key: key.to_line(),
            publisher: publisher.to_string(),
            added: now,
            revoked: None,
        });
        self.parsed.push(Some(key.clone()));
        Ok(&self.keys[self.keys.len() - 1])
    }

    /// Revokes key `key_id` as of `now`: bundles it signed stop verifying at once. A key
    /// revoked before keeps its first revocation. Returns the key as it now stands.
    pub fn revoke(&mut self, key_id: &str, now: u64) -> Result<&TrustedKey, TrustError> {
        let key = self
            .keys
            .iter_mut()
            .find(|k| k.key_id == key_id)
            .ok_or_else(|| TrustError::UnknownKey(key_id.to_string()))?;
        key.revoked.get_or_insert(now);
        Ok(key)
    }

    /// What the store says of `key_id`, for bundle verification.
    pub fn lookup(&self, key_id: &str) -> Trust<'_> {
        let found = self
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
}
