//! Admission of invocations: at most `tenant` running per tenant and `global` in all, and at
//! most `queue` waiting per tenant for a slot. Beyond that a request is refused at once with
//! `429` and a `Retry-After`, rather than queued without bound: a tenant that floods the server
//! fills its own queue, not everyone's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Seconds a refused client is told to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 1;

/// The caps.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    /// Invocations running at once, across tenants.
    pub global: usize,
    /// Invocations running at once for one tenant.
    pub tenant: usize,
    /// Invocations of one tenant waiting for a slot.
    pub queue: usize,
    /// The longest an admitted request waits in the queue before it is refused.
    pub queue_wait: Duration,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            global: 64,
            tenant: 8,
            queue: 64,
            queue_wait: Duration::from_secs(10),
        }
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The tenant's queue is full.
    QueueFull,
    /// A slot did not free up within the queue wait.
    Waited,
}

/// Slots held by one running invocation; released on drop.
pub struct Admitted {
    _tenant: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
    running: Arc<AtomicUsize>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Gate {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// The admission state of one server.
pub struct Admission {
    limits: AdmissionLimits,
    global: Arc<Semaphore>,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    running: Arc<AtomicUsize>,
    refused: AtomicU64,
}

/// Decrements a waiting count however the wait ends (admitted, refused or cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            global: Arc::new(Semaphore::new(limits.global.max(1))),
            limits,
            gates: Mutex::new(HashMap::new()),
            running: Arc::new(AtomicUsize::new(0)),
            refused: AtomicU64::new(0),
        }
    }

    /// Waits for a slot for `tenant`, or says why it will not get one.
    pub async fn admit(&self, tenant: &str) -> Result<Admitted, Busy> {
        let gate = self.gate(tenant);
        if gate.waiting.fetch_add(1, Ordering::Relaxed) >= self.limits.queue {
            gate.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(self.refuse(Busy::QueueFull));
        }
        let waiting = Waiting(&gate.waiting);
        let slots = async {
            let tenant = gate.slots.clone().acquire_owned().await;
            let global = self.global.clone().acquire_owned().await;
            tenant.ok().zip(global.ok())
        };
        let acquired = tokio::time::timeout(self.limits.queue_wait, slots).await;
        drop(waiting);
        match acquired {
            Ok(Some((tenant, global))) => {
                self.running.fetch_add(1, Ordering::Relaxed);
                Ok(Admitted {
                    _tenant: tenant,
                    _global: global,
                    running: self.running.clone(),
                })
            }
            // Semaphores are never closed; a timeout is the only way here.
            Ok(None) | Err(_) => Err(self.refuse(Busy::Waited)),
        }
    }

    /// Invocations running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn refuse(&self, busy: Busy) -> Busy {
        self.refused.fetch_add(1, Ordering::Relaxed);
        busy
    }

    fn gate(&self, tenant: &str) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        gates
            .entry(tenant.to_string())
            .or_insert_with(|| {
                Arc::new(Gate {
                    slots: Arc::new(Semaphore::new(self.limits.tenant.max(1))),
                    waiting: AtomicUsize::new(0),
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(global: usize, tenant: usize, queue: usize) -> AdmissionLimits {
        AdmissionLimits {
            global,
            tenant,
            queue,
            queue_wait: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn a_tenant_at_its_cap_queues_then_is_refused_while_others_run() {
        let admission = Admission::new(limits(4, 2, 1));
        let a1 = admission.admit("a").await.expect("slot 1");
        let _a2 = admission.admit("a").await.expect("slot 2");
        // A third waits in a's queue (of one); a fourth finds the queue full at once.
        let (queued, full) = tokio::join!(admission.admit("a"), async {
            tokio::task::yield_now().await;
            admission.admit("a").await
        });
        assert_eq!(full.err(), Some(Busy::QueueFull));
        assert_eq!(queued.err(), Some(Busy::Waited));
        // Another tenant still gets in while a is saturated.
        let b = admission.admit("b").await.expect("b is not held up by a");
        assert_eq!(admission.running(), 3);
        drop((a1, b));
        assert_eq!(admission.running(), 1);
        assert_eq!(admission.refused(), 2);
        admission.admit("a").await.expect("a freed slot is taken");
    }

    #[tokio::test]
    async fn the_global_cap_bounds_all_tenants() {
        let admission = Admission::new(limits(1, 4, 4));
        let held = admission.admit("a").await.expect("slot");
        assert_eq!(admission.admit("b").await.err(), Some(Busy::Waited));
        drop(held);
        admission.admit("b").await.expect("slot freed");
    }
}
