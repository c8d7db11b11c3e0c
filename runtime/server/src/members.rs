//! This node among the live nodes that share its store. Every heartbeat marks it alive in the
//! store and reads who else is; the node then admits its share of each fairness cap, so the
//! caps hold for the cluster, not per node (docs/deploy.md "Fairness caps in a cluster").
//!
//! A node that stops cleanly leaves at once; one that dies is forgotten when its mark is
//! [`MISSED`] heartbeats old, and the others take its share at their next heartbeat.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use airlock_audit::Node;
use airlock_store::Members;

use super::admission::Admission;

/// Heartbeats a node may miss before the others forget it.
pub const MISSED: u32 = 3;

/// This process's membership.
pub struct Membership {
    /// The node's name and a random suffix: two processes given one name are still two.
    instance: String,
    /// How often the node marks itself.
    pub(crate) every: Duration,
    /// Live nodes at the last heartbeat (this one among them).
    nodes: AtomicUsize,
}

impl Membership {
    pub fn new(node: &Node, every: Duration) -> Self {
        Self {
            instance: format!("{node}#{}", hex::encode(rand::random::<[u8; 4]>())),
            every,
            nodes: AtomicUsize::new(1),
        }
    }

    /// Live nodes at the last heartbeat.
    pub fn nodes(&self) -> usize {
        self.nodes.load(Ordering::Relaxed)
    }

    /// Marks this node alive and takes its share of the caps. On a store error the shares
    /// stay as they were (the error is logged): a node cut off from the store admits as it
    /// did, and its invocations fail at the store anyway.
    pub(crate) fn beat(&self, store: &dyn Members, admission: &Admission) {
        let live = match store.heartbeat(&self.instance, self.every * MISSED) {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, "cannot mark this node alive; its caps stay as they were");
                return;
            }
        };
        let limits = admission.limits();
        let global = share(limits.global, &live, &self.instance);
        let tenant = share(limits.tenant, &live, &self.instance);
        if self.nodes.swap(live.len(), Ordering::Relaxed) != live.len() {
            tracing::info!(
                nodes = live.len(),
                max_concurrent = global,
                tenant_concurrent = tenant,
                "live nodes changed; this node's share of the caps follows"
            );
        }
        admission.resize(global, tenant);
    }

    /// Forgets this node at once (after its last request).
    pub(crate) fn leave(&self, store: &dyn Members) {
        if let Err(e) = store.leave(&self.instance) {
            tracing::warn!(error = %e, "cannot leave the cluster; the others notice when the mark expires");
        }
    }
}

/// The share of a cluster-wide `cap` of the node `me` among the `live` nodes (sorted, as the
/// store lists them): an equal part, the remainder one each to the first nodes in order, so
/// the shares add up to the cap. At least one: a cap below the number of nodes becomes one per
/// node.
pub fn share(cap: usize, live: &[String], me: &str) -> usize {
    let nodes = live.len().max(1);
    let rank = live.iter().position(|n| n == me).unwrap_or(nodes);
    let extra = usize::from(rank < cap % nodes);
    (cap / nodes + extra).max(1)
}

#[cfg(test)]
mod tests {
    use super::share;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn the_shares_add_up_to_the_cap() {
        for cap in 1..40 {
            for n in 1..=cap {
                let live = nodes(n);
                let total: usize = live.iter().map(|me| share(cap, &live, me)).sum();
                assert_eq!(total, cap, "cap {cap} over {n} nodes");
                let each: Vec<usize> = live.iter().map(|me| share(cap, &live, me)).collect();
                let (least, most) = (each.iter().min(), each.iter().max());
                assert!(most.zip(least).is_some_and(|(m, l)| m - l <= 1), "{each:?}");
            }
        }
    }

    #[test]
    fn a_cap_below_the_node_count_is_one_per_node() {
        let live = nodes(3);
        assert_eq!(share(2, &live, "node-2"), 1);
        assert_eq!(share(64, &nodes(1), "node-0"), 64);
        assert_eq!(share(8, &[], "alone"), 8, "no list: the whole cap");
    }
}
