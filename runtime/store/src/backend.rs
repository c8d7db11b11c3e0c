//! The store a verb opens, as `--store` chose it: the embedded one under the data dir (the
//! default), or a PostgreSQL database shared by many nodes.

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use crate::postgres::{PgStore, Schema, StoreUrl};
use crate::{AuditLog, Storage, Store, StoreError};

/// An opened store. Dereferences to the [storage traits](crate::traits), which is all most
/// callers need; [`Self::sled`] is for what only the embedded store does (its backups).
#[derive(Clone)]
pub enum Backend {
    Sled(Store),
    Postgres(PgStore),
}

impl Backend {
    /// Opens `url`'s database if given (its schema migrated), else the sled store under
    /// `data_dir`; the master key as [`Store::open`] resolves it.
    pub fn open(
        url: Option<&StoreUrl>,
        data_dir: &Path,
        master_key: Option<&Path>,
    ) -> Result<Self, StoreError> {
        match url {
            None => Store::open(data_dir, master_key).map(Self::Sled),
            Some(url) => {
                let default = data_dir.join(crate::keys::MASTER_KEY_FILE);
                PgStore::connect(url, master_key.unwrap_or(&default), Schema::Migrate)
                    .map(Self::Postgres)
            }
        }
    }

    /// The embedded store, if this is it.
    pub fn sled(&self) -> Option<&Store> {
        match self {
            Self::Sled(store) => Some(store),
            Self::Postgres(_) => None,
        }
    }

    /// The audit trail's storage, to be shared by the trail's writers.
    pub fn audit_log(&self) -> Arc<dyn AuditLog> {
        match self {
            Self::Sled(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// Every concern at once, to be shared.
    pub fn shared(&self) -> Arc<dyn Storage> {
        match self {
            Self::Sled(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }
}

impl Deref for Backend {
    type Target = dyn Storage;

    fn deref(&self) -> &Self::Target {
        match self {
            Self::Sled(store) => store,
            Self::Postgres(store) => store,
        }
    }
}
