//! What one invocation writes to the trail while it runs: an intent before each request leaves.
//! Its record when it ends is [`crate::invoke::Invocation::audit_record`].

use std::sync::Arc;

use airlock_host_api::audit::{
    AuditEvent, AuditSink, EgressIntent, EgressJournal, IntentFuture, Subject,
};
use airlock_host_api::egress::EgressEvent;

/// The egress journal of one invocation: each intent is durable before its request is sent.
pub struct InvocationJournal {
    trail: Arc<dyn AuditSink>,
    invocation: String,
    subject: Subject,
}

impl InvocationJournal {
    pub fn new(trail: Arc<dyn AuditSink>, invocation: String, subject: Subject) -> Self {
        Self {
            trail,
            invocation,
            subject,
        }
    }
}

impl EgressJournal for InvocationJournal {
    fn intent(&self, event: &EgressEvent) -> IntentFuture {
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
        let appended = self.trail.append(event);
        Box::pin(async move { appended.await.map(drop) })
    }
}
