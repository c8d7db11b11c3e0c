//! Writers and backups take turns: every change to the store holds a [`Pass`] while it writes,
//! and a backup holds the [`Gate`] shut while it copies, so it sees each change whole or not at
//! all, across the database and the files beside it (a tenant's deletion shreds its key file
//! and removes its records under one pass: a backup holds both or neither); see docs/deploy.md,
//! "Backup and restore".
//!
//! Passes are re-entrant per thread: a change that makes another change (a reseal that stores
//! the credential again) holds one pass, so a backup waiting at the gate cannot stall it
//! halfway. A pass never spans an `await`: every store call is synchronous.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Tells gates apart in [`HELD`].
static NEXT_GATE: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The gates this thread holds a pass through.
    static HELD: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// One store's gate (shared by its clones).
pub(crate) struct Gate {
    id: u64,
    lock: RwLock<()>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            id: NEXT_GATE.fetch_add(1, Ordering::Relaxed),
            lock: RwLock::new(()),
        }
    }
}

/// Held by a change while it writes; see the module doc.
pub(crate) struct Pass<'a> {
    /// `None` for a pass nested in one this thread already holds.
    held: Option<(u64, RwLockReadGuard<'a, ()>)>,
}

impl Gate {
    /// Waits while a backup holds the gate shut, then lets this thread's change through.
    pub(crate) fn pass(&self) -> Pass<'_> {
        if HELD.with(|held| held.borrow().contains(&self.id)) {
            return Pass { held: None };
        }
        let guard = self.lock.read().unwrap_or_else(PoisonError::into_inner);
        HELD.with(|held| held.borrow_mut().push(self.id));
        Pass {
            held: Some((self.id, guard)),
        }
    }

    /// Waits for the changes under way to finish and holds new ones back until dropped. Never
    /// called by a thread holding a pass (a backup is not a change).
    pub(crate) fn shut(&self) -> RwLockWriteGuard<'_, ()> {
        self.lock.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if let Some((id, _)) = &self.held {
            HELD.with(|held| held.borrow_mut().retain(|g| g != id));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_shut_gate_holds_writers_back_and_passes_nest() {
        let gate = Arc::new(Gate::default());
        {
            let _outer = gate.pass();
            // A nested pass does not wait, even behind a backup waiting at the gate.
            let _inner = gate.pass();
        }
        let shut = gate.shut();
        let through = Arc::new(AtomicBool::new(false));
        let writer = {
            let (gate, through) = (gate.clone(), through.clone());
            std::thread::spawn(move || {
                let _pass = gate.pass();
                through.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !through.load(Ordering::SeqCst),
            "a writer got past a shut gate"
        );
        drop(shut);
        writer.join().expect("writer");
        assert!(through.load(Ordering::SeqCst));
        // Another gate is not held by a pass through this one.
        let other = Gate::default();
        let _pass = gate.pass();
        drop(other.shut());
    }
}
