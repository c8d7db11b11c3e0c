//! What one invocation writes to the trail: an intent before each request leaves, and one
//! record when it ends.

use airlock_host_api::audit::{
    AuditEvent, EgressIntent, EgressJournal, IntentFuture, InvocationRecord, Subject,
    ValidationFailure,
};
use airlock_host_api::egress::EgressEvent;

use super::AuditTrail;
use crate::invoke::{Invocation, InvokeError};
use crate::loader::Integration;
use crate::schema::Violations;

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

/// The metadata-only record of `invocation`.
pub fn invocation_record(
    invocation: &Invocation,
    integration: &Integration,
    subject: &Subject,
    trigger: airlock_host_api::audit::Trigger,
) -> AuditEvent {
    let (outcome, validation) = match &invocation.result {
        Ok(_) => ("ok", None),
        Err(error) => (error.class(), validation(error)),
    };
    // An action the integration does not declare is whatever the caller typed: not recorded.
    let action = integration
        .action_names()
        .contains(&invocation.action.as_str())
        .then(|| invocation.action.clone());
    AuditEvent::Invocation(Box::new(InvocationRecord {
        invocation: invocation.id.to_string(),
        subject: subject.clone(),
        integration: integration.code_identity(),
        trigger,
        action,
        outcome: outcome.to_string(),
        duration_us: invocation.duration.as_micros() as u64,
        memory_peak_bytes: invocation.memory_peak,
        host_memory_peak_bytes: invocation.host_memory_peak,
        fuel_used: invocation.fuel_used,
        egress: invocation.egress.clone(),
        egress_suppressed: invocation.egress_suppressed.clone(),
        redactions: invocation.redactions,
        kv: invocation.kv,
        validation,
    }))
}

/// Where a schema rejected the input or output: the first violation's keyword and its location
/// in the schema. Never its place in the instance, whose object keys are the caller's data.
fn validation(error: &InvokeError) -> Option<ValidationFailure> {
    let (direction, violations): (&str, &Violations) = match error {
        InvokeError::Input { violations, .. } => ("input", violations),
        InvokeError::Output { violations, .. } => ("output", violations),
        _ => return None,
    };
    violations.list.first().map(|v| ValidationFailure {
        direction: direction.to_string(),
        location: v.location.clone(),
        keyword: v.keyword.clone(),
    })
}
