//! The `kv` capability: a per-installation key-value namespace behind a quota.
//!
//! The guest names keys only; the [`KvBackend`] it is handed is already bound to one tenant's
//! installation (the runtime's store seals values with the tenant's data key). Keys and sizes
//! are checked here, before the backend sees anything; the backend checks the totals (key count
//! and bytes) atomically with the write.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bindings::kv::{self, KvError};
use crate::policy::units::ByteSize;
use crate::policy::{Ceilings, LimitError};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Most keys one `list-keys` call returns.
pub const MAX_LIST: u32 = 1_000;

/// What one installation may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvQuota {
    /// Keys and values together, in bytes.
    pub max_bytes: u64,
    pub max_keys: u64,
    pub max_value_bytes: u64,
}

/// What a manifest's `[kv]` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedKv {
    pub max_bytes: u64,
    pub max_keys: Option<u64>,
    pub max_value_bytes: Option<u64>,
}

impl KvQuota {
    /// Keys allowed when the manifest names no `max-keys` (capped by the ceiling).
    pub const DEFAULT_KEYS: u64 = 10_000;
    /// Largest value when the manifest names no `max-value-bytes` (capped by `max-bytes`).
    pub const DEFAULT_VALUE_BYTES: u64 = 1 << 20;

    /// Resolves a request against the operator's ceilings: above a ceiling is refused, not
    /// clamped, as for limits.
    pub fn resolve(requested: RequestedKv, ceilings: &Ceilings) -> Result<Self, LimitError> {
        if requested.max_bytes > ceilings.kv_bytes {
            return Err(LimitError::KvBytes {
                requested: ByteSize(requested.max_bytes),
                ceiling: ByteSize(ceilings.kv_bytes),
            });
        }
        let max_keys = match requested.max_keys {
            Some(keys) if keys > ceilings.kv_keys => {
                return Err(LimitError::KvKeys {
                    requested: keys,
                    ceiling: ceilings.kv_keys,
                });
            }
            Some(keys) => keys,
            None => Self::DEFAULT_KEYS.min(ceilings.kv_keys),
        };
        let max_value_bytes = match requested.max_value_bytes {
            Some(value) if value > requested.max_bytes => {
                return Err(LimitError::KvValue {
                    requested: ByteSize(value),
                    total: ByteSize(requested.max_bytes),
                });
            }
            Some(value) => value,
            None => Self::DEFAULT_VALUE_BYTES.min(requested.max_bytes),
        };
        Ok(Self {
            max_bytes: requested.max_bytes,
            max_keys,
            max_value_bytes,
        })
    }
}

/// Why a kv operation did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvFailure {
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    InvalidKey(String),
    #[error("{0}")]
    Quota(String),
}

/// One installation's namespace. Implementations must apply `quota`'s totals atomically with
/// the write they check.
pub trait KvBackend: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvFailure>;
    fn set(&self, key: &str, value: &[u8], quota: &KvQuota) -> Result<(), KvFailure>;
    fn delete(&self, key: &str) -> Result<bool, KvFailure>;
    /// Keys starting with `prefix`, in byte order, strictly after `after`, at most `limit`.
    fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, KvFailure>;
}

/// What an invocation did with kv, for its audit record: counts only, never keys or values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvUse {
    pub reads: u64,
    pub writes: u64,
    /// Calls refused: invalid key, over quota, unavailable.
    pub refused: u64,
}

impl KvUse {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Per-invocation kv state: the namespace (none when the integration declares no `[kv]`) and
/// its quota.
#[derive(Clone)]
pub struct KvCtx {
    namespace: Option<(Arc<dyn KvBackend>, KvQuota)>,
    used: KvUse,
}

impl KvCtx {
    /// `namespace` is the installation's store and quota, or `None`: every call is refused.
    pub fn new(namespace: Option<(Arc<dyn KvBackend>, KvQuota)>) -> Self {
        Self {
            namespace,
            used: KvUse::default(),
        }
    }

    /// What the invocation did with kv so far.
    pub fn used(&self) -> KvUse {
        self.used
    }

    fn call<T>(
        &mut self,
        key: &str,
        write: bool,
        op: impl FnOnce(&dyn KvBackend, &KvQuota) -> Result<T, KvFailure>,
    ) -> Result<T, KvError> {
        let result = match (&self.namespace, check_key(key)) {
            (None, _) => Err(KvFailure::Unavailable(
                "this integration declares no [kv] store".to_string(),
            )),
            (_, Err(e)) => Err(e),
            (Some((backend, quota)), Ok(())) => op(backend.as_ref(), quota),
        };
        match &result {
            Ok(_) if write => self.used.writes += 1,
            Ok(_) => self.used.reads += 1,
            Err(_) => self.used.refused += 1,
        }
        result.map_err(|e| match e {
            KvFailure::Unavailable(m) => KvError::Unavailable(m),
            KvFailure::InvalidKey(m) => KvError::InvalidKey(m),
            KvFailure::Quota(m) => KvError::QuotaExceeded(m),
        })
    }
}

/// A key is 1 to [`MAX_KEY_BYTES`] bytes of text without control characters. An empty
/// `list-keys` prefix is checked separately (it is allowed).
pub fn check_key(key: &str) -> Result<(), KvFailure> {
    if key.is_empty() {
        return Err(KvFailure::InvalidKey("the key is empty".to_string()));
    }
    check_text(key, "key")
}

fn check_text(text: &str, what: &str) -> Result<(), KvFailure> {
    if text.len() > MAX_KEY_BYTES {
        return Err(KvFailure::InvalidKey(format!(
            "the {what} is {} bytes; the most is {MAX_KEY_BYTES}",
            text.len()
        )));
    }
    if let Some(at) = text.find(char::is_control) {
        return Err(KvFailure::InvalidKey(format!(
            "the {what} holds a control character at byte {at}"
        )));
    }
    Ok(())
}

impl kv::Host for KvCtx {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        self.call(&key, false, |backend, _| backend.get(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        self.call(&key, true, |backend, quota| {
            if value.len() as u64 > quota.max_value_bytes {
                return Err(KvFailure::Quota(format!(
                    "the value is {} bytes; the most is {}",
                    value.len(),
                    quota.max_value_bytes
                )));
            }
            backend.set(&key, &value, quota)
        })
    }

    fn delete(&mut self, key: String) -> Result<bool, KvError> {
        self.call(&key, true, |backend, _| backend.delete(&key))
    }

    fn list_keys(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, KvError> {
        // The prefix may be empty (every key); `call` checks a non-empty stand-in for it.
        let checked =
            check_text(&prefix, "prefix").and_then(|()| after.as_deref().map_or(Ok(()), check_key));
        self.call("list", false, |backend, _| {
            checked?;
            backend.list(&prefix, after.as_deref(), limit.min(MAX_LIST) as usize)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::bindings::kv::Host as _;

    /// An in-memory namespace, for checking this layer's own rules.
    #[derive(Default)]
    struct Memory(Mutex<BTreeMap<String, Vec<u8>>>);

    impl KvBackend for Memory {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvFailure> {
            Ok(self.0.lock().expect("lock").get(key).cloned())
        }
        fn set(&self, key: &str, value: &[u8], _: &KvQuota) -> Result<(), KvFailure> {
            self.0
                .lock()
                .expect("lock")
                .insert(key.into(), value.into());
            Ok(())
        }
        fn delete(&self, key: &str) -> Result<bool, KvFailure> {
            Ok(self.0.lock().expect("lock").remove(key).is_some())
        }
        fn list(
            &self,
            prefix: &str,
            _: Option<&str>,
            limit: usize,
        ) -> Result<Vec<String>, KvFailure> {
            let map = self.0.lock().expect("lock");
            Ok(map
                .keys()
                .filter(|k| k.starts_with(prefix))
                .take(limit)
                .cloned()
                .collect())
        }
    }

    fn ctx() -> KvCtx {
        let quota = KvQuota {
            max_bytes: 1 << 20,
            max_keys: 10,
            max_value_bytes: 8,
        };
        KvCtx::new(Some((Arc::new(Memory::default()), quota)))
    }

    #[test]
    fn keys_and_values_are_checked_before_the_store_sees_them() {
        let mut kv = ctx();
        assert!(kv.set("a".into(), b"12345678".to_vec()).is_ok());
        assert!(
            kv.get("a".into())
                .is_ok_and(|v| v == Some(b"12345678".to_vec()))
        );
        assert!(matches!(
            kv.set("a".into(), vec![0; 9]),
            Err(KvError::QuotaExceeded(_))
        ));
        assert!(matches!(
            kv.set(String::new(), vec![]),
            Err(KvError::InvalidKey(_))
        ));
        assert!(matches!(kv.get("a\nb".into()), Err(KvError::InvalidKey(_))));
        assert!(matches!(
            kv.get("k".repeat(513)),
            Err(KvError::InvalidKey(_))
        ));
        assert!(
            kv.list_keys(String::new(), None, 5)
                .is_ok_and(|keys| keys == vec!["a".to_string()])
        );
        assert!(matches!(
            kv.list_keys("\u{0}".into(), None, 5),
            Err(KvError::InvalidKey(_))
        ));
        assert!(kv.delete("a".into()).is_ok_and(|found| found));
        assert_eq!(
            kv.used(),
            KvUse {
                reads: 2,
                writes: 2,
                refused: 5
            }
        );
    }

    #[test]
    fn quotas_resolve_against_the_ceilings() {
        let ceilings = Ceilings::default();
        let ask = |max_bytes, max_keys, max_value_bytes| {
            KvQuota::resolve(
                RequestedKv {
                    max_bytes,
                    max_keys,
                    max_value_bytes,
                },
                &ceilings,
            )
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            ask(4096, None, None),
            Ok(KvQuota {
                max_bytes: 4096,
                max_keys: 10_000,
                max_value_bytes: 4096
            })
        );
        assert_eq!(
            ask(128 << 20, None, None),
            Err("kv.max-bytes = 128 MiB exceeds the operator's ceiling of 64 MiB".into())
        );
        assert!(ask(4096, Some(1_000_000), None).is_err_and(|e| e.contains("max-keys")));
        assert!(ask(4096, None, Some(8192)).is_err_and(|e| e.contains("max-value-bytes")));
    }

    #[test]
    fn without_a_declared_store_every_call_is_unavailable() {
        let mut kv = KvCtx::new(None);
        assert!(matches!(kv.get("a".into()), Err(KvError::Unavailable(_))));
        assert!(matches!(
            kv.set("a".into(), vec![]),
            Err(KvError::Unavailable(_))
        ));
        assert_eq!(kv.used().refused, 2);
    }
}
