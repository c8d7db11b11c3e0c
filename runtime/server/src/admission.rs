//! Admission of invocations: at most `tenant` running per tenant and `global` in all, and at
//! most `queue` waiting per tenant for a slot. Beyond that a request is refused at once with
//! `429` and a `Retry-After`, rather than queued without bound: a tenant that floods the server
//! fills its own queue, not everyone's.
//!
//! In a cluster the caps are the cluster's: each node admits its share of them, and the
//! shares change as nodes join and leave ([`Admission::resize`], [`crate::members`]).

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

/// A semaphore whose size changes while permits are held: a shrink takes back the free
/// permits at once and the held ones as they are released, so the permits out never exceed
/// the new size for longer than the invocations already running take.
struct Slots {
    semaphore: Arc<Semaphore>,
    /// The size; its lock also orders resizes.
    size: Mutex<usize>,
    /// Held permits to take back (forget) on release rather than return.
    owed: AtomicUsize,
}

impl Slots {
    fn new(size: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(size)),
            size: Mutex::new(size),
            owed: AtomicUsize::new(0),
        }
    }

    fn size(&self) -> usize {
        *self.size.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn resize(&self, to: usize) {
        let mut size = self.size.lock().unwrap_or_else(PoisonError::into_inner);
        if to > *size {
            let grow = to - *size;
            // What is still owed is forgiven first: those permits are out and now fit.
            let forgiven = take_up_to(&self.owed, grow);
            self.semaphore.add_permits(grow - forgiven);
        } else {
            let shrink = *size - to;
            let taken = self.semaphore.forget_permits(shrink);
            self.owed.fetch_add(shrink - taken, Ordering::SeqCst);
        }
        *size = to;
    }

    fn release(&self, permit: OwnedSemaphorePermit) {
        if take_up_to(&self.owed, 1) == 1 {
            permit.forget();
        }
    }
}

/// Takes up to `most` from `count`; how much it took.
fn take_up_to(count: &AtomicUsize, most: usize) -> usize {
    let before = count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            Some(n - n.min(most))
        })
        .unwrap_or_else(|n| n);
    before.min(most)
}

/// Slots held by one running invocation; released on drop.
pub struct Admitted {
    tenant: Option<(OwnedSemaphorePermit, Arc<Gate>)>,
    global: Option<(OwnedSemaphorePermit, Arc<Slots>)>,
    running: Arc<AtomicUsize>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        // Counted out before the slots are free: the next one in is counted after this.
        self.running.fetch_sub(1, Ordering::Relaxed);
        if let Some((permit, gate)) = self.tenant.take() {
            gate.slots.release(permit);
        }
        if let Some((permit, slots)) = self.global.take() {
            slots.release(permit);
        }
    }
}

struct Gate {
    slots: Slots,
    waiting: AtomicUsize,
}

/// The admission state of one server.
pub struct Admission {
    limits: AdmissionLimits,
    global: Arc<Slots>,
    /// The tenants' gates, and the size a new one starts at.
    gates: Mutex<(HashMap<String, Arc<Gate>>, usize)>,
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
            global: Arc::new(Slots::new(limits.global.max(1))),
            gates: Mutex::new((HashMap::new(), limits.tenant.max(1))),
            limits,
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
            let tenant = gate.slots.semaphore.clone().acquire_owned().await;
            let global = self.global.semaphore.clone().acquire_owned().await;
            tenant.ok().zip(global.ok())
        };
        let acquired = tokio::time::timeout(self.limits.queue_wait, slots).await;
        drop(waiting);
        match acquired {
            Ok(Some((tenant, global))) => {
                self.running.fetch_add(1, Ordering::Relaxed);
                Ok(Admitted {
                    tenant: Some((tenant, gate.clone())),
                    global: Some((global, self.global.clone())),
                    running: self.running.clone(),
                })
            }
            // Semaphores are never closed; a timeout is the only way here.
            Ok(None) | Err(_) => Err(self.refuse(Busy::Waited)),
        }
    }

    /// The caps as configured: the cluster's, when this node shares them.
    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// This node's caps now: `(global, tenant)`.
    pub fn caps(&self) -> (usize, usize) {
        let tenant = self.gates.lock().unwrap_or_else(PoisonError::into_inner).1;
        (self.global.size(), tenant)
    }

    /// Changes this node's caps (each at least one). Invocations already running keep their
    /// slots; a shrink admits no one new until the running ones are within it.
    pub fn resize(&self, global: usize, tenant: usize) {
        self.global.resize(global.max(1));
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        gates.1 = tenant.max(1);
        for gate in gates.0.values() {
            gate.slots.resize(gates.1);
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
        let (gates, size) = &mut *gates;
        gates
            .entry(tenant.to_string())
            .or_insert_with(|| {
                Arc::new(Gate {
                    slots: Slots::new(*size),
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
    async fn a_shrink_waits_for_running_invocations_and_a_growth_admits_at_once() {
        let admission = Admission::new(limits(8, 4, 4));
        let held: Vec<_> = admit_n(&admission, "a", 3).await;
        admission.resize(4, 2);
        assert_eq!(admission.caps(), (4, 2));
        // Three run under a cap of two: no one new until two of them finished.
        assert_eq!(admission.admit("a").await.err(), Some(Busy::Waited));
        let mut held = held.into_iter();
        drop(held.next());
        assert_eq!(
            admission.admit("a").await.err(),
            Some(Busy::Waited),
            "two still run, the cap is two"
        );
        drop(held.next());
        let third = admission
            .admit("a")
            .await
            .expect("one runs, the cap is two");
        assert_eq!(admission.admit("a").await.err(), Some(Busy::Waited));
        // Growing admits the waiting at once, and a new tenant starts at the new cap.
        admission.resize(8, 3);
        let fourth = admission.admit("a").await.expect("the cap grew to three");
        let b: Vec<_> = admit_n(&admission, "b", 3).await;
        assert_eq!(admission.running(), 6);
        drop((third, fourth, b, held));
        assert_eq!(admission.running(), 0);
        // Every slot came back: the full caps are admitted again, and no more.
        let a: Vec<_> = admit_n(&admission, "a", 3).await;
        assert_eq!(admission.admit("a").await.err(), Some(Busy::Waited));
        drop(a);
    }

    #[tokio::test]
    async fn the_global_cap_shrinks_and_grows_back_exactly() {
        let admission = Admission::new(limits(4, 4, 4));
        let held: Vec<_> = admit_n(&admission, "a", 4).await;
        admission.resize(1, 4);
        admission.resize(3, 4);
        drop(held);
        let now: Vec<_> = admit_n(&admission, "b", 3).await;
        assert_eq!(
            admission.admit("c").await.err(),
            Some(Busy::Waited),
            "three, not the four first handed out"
        );
        drop(now);
    }

    /// `n` admissions of `tenant`, each of which must succeed.
    async fn admit_n(admission: &Admission, tenant: &str, n: usize) -> Vec<Admitted> {
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(admission.admit(tenant).await.expect("admitted"));
        }
        held
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
