//! The serving nodes on the embedded store. sled admits one process per data dir, so the
//! members live in that process's memory: there is one `airlock serve` (and the instances a
//! test makes of the trait), and nothing of it needs to outlive the process.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::traits::Members;
use crate::{Store, StoreError};

/// When each instance was last marked alive.
#[derive(Default)]
pub(crate) struct Live(Mutex<HashMap<String, Instant>>);

impl Members for Store {
    fn heartbeat(&self, instance: &str, ttl: Duration) -> Result<Vec<String>, StoreError> {
        let now = Instant::now();
        let mut live = self
            .members
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        live.insert(instance.to_string(), now);
        live.retain(|_, seen| now.duration_since(*seen) <= ttl);
        let mut instances: Vec<String> = live.keys().cloned().collect();
        instances.sort_unstable();
        Ok(instances)
    }

    fn leave(&self, instance: &str) -> Result<(), StoreError> {
        self.members
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(instance);
        Ok(())
    }
}
