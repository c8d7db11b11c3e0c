//! The cap on one tenant's requests in flight, across all of its invocations (EG-26).
//!
//! Each invocation has its own cap ([`EgressLimits::concurrent`]); this one stops a tenant that
//! runs many invocations at once from holding more than [`EgressLimits::tenant_concurrent`]
//! upstream connections. A request over it waits for a slot (within its invocation's deadline)
//! rather than failing, so a burst of one tenant slows that tenant alone.
//!
//! [`EgressLimits::concurrent`]: super::EgressLimits::concurrent
//! [`EgressLimits::tenant_concurrent`]: super::EgressLimits::tenant_concurrent

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::Semaphore;

/// One semaphore per tenant with an invocation running; a tenant's entry goes once its last
/// invocation drops it.
#[derive(Debug, Default)]
pub(crate) struct TenantSlots {
    slots: Mutex<HashMap<String, Weak<Semaphore>>>,
}

impl TenantSlots {
    /// The semaphore `tenant`'s invocations share, with `per_tenant` permits when it is new.
    pub(crate) fn of(&self, tenant: &str, per_tenant: usize) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(live) = slots.get(tenant).and_then(Weak::upgrade) {
            return live;
        }
        // Only tenants with an invocation running are kept.
        slots.retain(|_, slot| slot.strong_count() > 0);
        let fresh = Arc::new(Semaphore::new(per_tenant));
        slots.insert(tenant.to_string(), Arc::downgrade(&fresh));
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_shares_one_semaphore_until_it_has_no_invocation_left() {
        let slots = TenantSlots::default();
        let first = slots.of("acme", 2);
        let second = slots.of("acme", 2);
        assert!(Arc::ptr_eq(&first, &second));
        let _held = first
            .clone()
            .try_acquire_many_owned(2)
            .expect("two permits");
        assert!(second.try_acquire().is_err(), "acme's slots are shared");
        let other = slots.of("globex", 2);
        assert!(other.try_acquire().is_ok(), "another tenant has its own");
        drop((first, second, _held, other));
        // Forgotten once unused: a new invocation starts with every slot free.
        let again = slots.of("acme", 2);
        assert_eq!(again.available_permits(), 2);
        let _ = slots.of("initech", 2);
        let kept = slots.slots.lock().expect("not poisoned").len();
        assert_eq!(kept, 2, "the unused globex entry was pruned");
    }
}
