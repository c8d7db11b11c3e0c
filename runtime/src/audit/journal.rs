//! What one invocation writes to the trail while it runs: an intent before each request leaves.
//! Its record when it ends is [`crate::invoke::Invocation::audit_record`].

use airlock_host_api::audit::{AuditEvent, EgressIntent, EgressJournal, IntentFuture, Subject};
use airlock_host_api::egress::EgressEvent;

use super::AuditTrail;

/// The egress journal of one invocation: each intent is durable before its request is sent.
pub struct InvocationJournal {
    trail: AuditTrail,
    invocation: String,
    subject: Subject,
}

impl InvocationJournal {
    pub fn new(trail: AuditTrail, invocation: String, subject: Subject) -> Self {
        Self {
            trail,
            invocation,
            subject,
        }
    }
}

impl EgressJournal for InvocationJournal {
    fn intent(&self, event: &EgressEvent) -> IntentFuture {
        let trail = self.trail.clone();
        // The trail replaces the target by its keyed hash before storing (AuditTrail::append).
        let event = AuditEvent::EgressIntent(EgressIntent {
            invocation: self.invocation.clone(),
            subject: self.subject.clone(),
            method: event.method.clone(),
            target: event.target.clone(),
            via: event.via.clone().unwrap_or_default(),
            target_hash: None,
            rule: event.rule.unwrap_or_default(),
            credential: event.credential.clone(),
        });
        Box::pin(async move { trail.append(event).await.map(drop) })
    }
}
