//! The form an event is stored in: no target a guest built, and no string past its bound.
//!
//! The trail's writer passes every event through [`AuditEvent::for_trail`] before it is chained,
//! so whatever code built the event, the record holds the matched rule and a keyed hash in
//! place of each egress target, and every string field fits the bound docs/audit.md lists for
//! it. A string past its bound is cut on a character boundary and ends in `…`, so a cut value
//! is never mistaken for a whole one.

use serde::Serializer;

use super::{AuditEvent, CodeIdentity, EgressIntent, InvocationRecord, Subject, ValidationFailure};
use crate::egress::{EgressEvent, Suppressed};

/// Bounds, in bytes, of the string fields of a record (docs/audit.md, "Field bounds").
pub mod bounds {
    /// Ids Airlock validates or makes itself: tenant and installation (64), end user (128),
    /// invocation, API and signing key ids, webhook endpoints, credential names.
    pub const ID: usize = 128;
    /// Names from a signed manifest: integration id, version, action, bundle digest.
    pub const NAME: usize = 128;
    /// Airlock's own codes: outcome, reason, keyword, direction, method, event type.
    pub const CODE: usize = 64;
    /// A matched rule's canonical URL (`via`).
    pub const URL: usize = 2048;
    /// A schema keyword location.
    pub const LOCATION: usize = 512;
    /// Free text an operator or a server chose: a publisher name, a bundle's file name, an
    /// OAuth scope, a route template, a peer address, a timestamp.
    pub const TEXT: usize = 256;
    /// Entries kept of a list of scopes.
    pub const SCOPES: usize = 64;
    /// Hex digits of a target hash (128 bits).
    pub const TARGET_HASH: usize = 32;
}

use bounds::{CODE, ID, LOCATION, NAME, SCOPES, TARGET_HASH, TEXT, URL};

impl AuditEvent {
    /// The event as the trail stores it: each egress target replaced by `keyed(target)` (a
    /// keyed hash only the trail can compute), and every string cut to its bound.
    pub fn for_trail(mut self, keyed: &dyn Fn(&str) -> String) -> Self {
        match &mut self {
            Self::Invocation(record) => invocation(record, keyed),
            Self::EgressIntent(intent) => egress_intent(intent, keyed),
            Self::TrustRefused { artifact, reason } => {
                cut(artifact, TEXT);
                cut(reason, CODE);
            }
            Self::CredentialChanged {
                tenant,
                installation,
                credential,
                change: _,
            } => cut_all([tenant, installation, credential], ID),
            Self::TrustChanged {
                key,
                publisher,
                change: _,
            } => {
                cut(key, ID);
                cut(publisher, TEXT);
            }
            Self::ApiKeyChanged {
                key,
                tenant,
                change: _,
            } => {
                cut(key, ID);
                cut_opt(tenant, ID);
            }
            Self::TenantChanged { tenant, change: _ } => cut(tenant, ID),
            Self::InstallationChanged {
                tenant,
                installation,
                integration,
                version,
                change: _,
            } => {
                cut_all([tenant, installation], ID);
                cut_all([integration, version], NAME);
            }
            Self::InstallationDataDeleted {
                tenant,
                installation,
                ..
            } => cut_all([tenant, installation], ID),
            Self::ClockRegression { previous } => cut(previous, TEXT),
            Self::AccessRefused {
                key,
                tenant,
                reason,
                route,
                peer,
            } => {
                cut_opt(key, ID);
                cut_opt(tenant, ID);
                cut(reason, CODE);
                cut_all([route, peer], TEXT);
            }
            Self::ConnectionChanged {
                tenant,
                installation,
                credential,
                user,
                change: _,
                scopes,
                widened,
            } => {
                cut_all([tenant, installation, credential], ID);
                cut_opt(user, ID);
                cut_list(scopes);
                cut_list(widened);
            }
            Self::ConnectionRefused {
                tenant,
                reason,
                peer,
            } => {
                cut_opt(tenant, ID);
                cut(reason, CODE);
                cut(peer, TEXT);
            }
            Self::WebhookChanged {
                tenant,
                installation,
                endpoint,
                action,
                change: _,
            } => {
                cut_all([tenant, installation, endpoint], ID);
                cut(action, NAME);
            }
            Self::ScheduleChanged {
                tenant,
                installation,
                schedule,
                action,
                cron,
                change: _,
            } => {
                cut_all([tenant, installation, schedule], ID);
                cut(action, NAME);
                cut(cron, TEXT);
            }
            Self::WebhookRefused {
                tenant,
                endpoint,
                reason,
                peer,
            } => {
                cut_all([tenant, endpoint], ID);
                cut(reason, CODE);
                cut(peer, TEXT);
            }
            Self::MasterKeyRotated { rewrapped: _ } => {}
            Self::AuditKeyRotated { old, new } => cut_all([old, new], ID),
            Self::AlertRaised {
                rule,
                tenant,
                installation,
                key,
                ..
            } => {
                cut(rule, NAME);
                cut_opt(tenant, ID);
                cut_opt(installation, ID);
                cut_opt(key, ID);
            }
        }
        self
    }
}

fn invocation(record: &mut InvocationRecord, keyed: &dyn Fn(&str) -> String) {
    let InvocationRecord {
        invocation,
        subject,
        integration,
        trigger: _,
        action,
        outcome,
        duration_us: _,
        memory_peak_bytes: _,
        host_memory_peak_bytes: _,
        host_resources_peak: _,
        fuel_used: _,
        egress,
        egress_suppressed,
        redactions: _,
        kv: _,
        validation,
    } = record;
    cut(invocation, ID);
    self::subject(subject);
    let CodeIdentity {
        id,
        version,
        digest,
        key,
    } = integration;
    cut_all([id, version, digest], NAME);
    cut_opt(key, ID);
    cut_opt(action, NAME);
    cut(outcome, CODE);
    for event in egress {
        egress_event(event, keyed);
    }
    for Suppressed { reason, .. } in egress_suppressed {
        cut_opt(reason, CODE);
    }
    if let Some(ValidationFailure {
        direction,
        location,
        keyword,
    }) = validation
    {
        cut_all([direction, keyword], CODE);
        cut(location, LOCATION);
    }
}

fn egress_event(event: &mut EgressEvent, keyed: &dyn Fn(&str) -> String) {
    let EgressEvent {
        method,
        target,
        via,
        target_hash,
        rule: _,
        credential,
        decision: _,
        reason,
        status: _,
        retry_after_s: _,
        duration_us: _,
        address: _,
        bytes_out: _,
        bytes_in: _,
        redactions: _,
        hint,
    } = event;
    *hint = None;
    conceal(target, target_hash, keyed);
    cut(method, CODE);
    cut_opt(via, URL);
    cut_opt(credential, ID);
    cut_opt(reason, CODE);
}

fn egress_intent(intent: &mut EgressIntent, keyed: &dyn Fn(&str) -> String) {
    let EgressIntent {
        invocation,
        subject,
        method,
        target,
        via,
        target_hash,
        rule: _,
        credential,
    } = intent;
    conceal(target, target_hash, keyed);
    cut(invocation, ID);
    self::subject(subject);
    cut(method, CODE);
    cut(via, URL);
    cut_opt(credential, ID);
}

/// Replaces `target` by its keyed hash; a hash already there (from a record read back) stays.
fn conceal(target: &mut Option<String>, hash: &mut Option<String>, keyed: &dyn Fn(&str) -> String) {
    if let Some(target) = target.take() {
        *hash = Some(keyed(&target));
    }
    cut_opt(hash, TARGET_HASH);
}

fn subject(subject: &mut Subject) {
    let Subject {
        tenant,
        installation,
        user,
    } = subject;
    cut_all([tenant, installation], ID);
    cut_opt(user, ID);
}

/// Serializes a record's egress events without their targets.
pub(super) fn without_targets<S: Serializer>(
    events: &[EgressEvent],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(events.iter().map(|event| EgressEvent {
        target: None,
        ..event.clone()
    }))
}

/// Cuts `text` to at most `max` bytes on a character boundary, ending in `…` when cut.
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

fn cut_opt(text: &mut Option<String>, max: usize) {
    if let Some(text) = text {
        cut(text, max);
    }
}

fn cut_all<const N: usize>(texts: [&mut String; N], max: usize) {
    for text in texts {
        cut(text, max);
    }
}

/// Keeps the first [`SCOPES`] entries, each cut to [`TEXT`].
fn cut_list(list: &mut Vec<String>) {
    list.truncate(SCOPES);
    for item in list {
        cut(item, TEXT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Change, ConnectionChange, InstallChange, InstallationData, Trigger};
    use crate::egress::Decision;

    fn long(n: usize) -> String {
        // Multi-byte characters, so a cut must find a character boundary.
        "é".repeat(n)
    }

    fn hash(target: &str) -> String {
        format!("{:032x}", target.len())
    }

    fn egress(target: &str) -> EgressEvent {
        EgressEvent {
            method: long(100),
            target: Some(target.to_string()),
            via: Some(long(3000)),
            target_hash: None,
            rule: Some(0),
            credential: Some(long(100)),
            decision: Decision::Allowed,
            reason: Some(long(100)),
            status: Some(200),
            retry_after_s: None,
            duration_us: 1,
            address: None,
            bytes_out: 0,
            bytes_in: 0,
            redactions: 0,
            hint: None,
        }
    }

    /// One event of every type, every string field far past any bound.
    fn every_event(target: &str) -> Vec<AuditEvent> {
        let subject = Subject {
            tenant: long(300),
            installation: long(300),
            user: Some(long(300)),
        };
        let s = || long(5000);
        vec![
            AuditEvent::Invocation(Box::new(InvocationRecord {
                invocation: s(),
                subject: subject.clone(),
                integration: CodeIdentity {
                    id: s(),
                    version: s(),
                    digest: s(),
                    key: Some(s()),
                },
                trigger: Trigger::Api,
                action: Some(s()),
                outcome: s(),
                duration_us: 1,
                memory_peak_bytes: 1,
                host_memory_peak_bytes: 1,
                host_resources_peak: 1,
                fuel_used: None,
                egress: vec![egress(target)],
                egress_suppressed: vec![Suppressed {
                    decision: Decision::Denied,
                    reason: Some(s()),
                    count: 1,
                }],
                redactions: 0,
                kv: Default::default(),
                validation: Some(ValidationFailure {
                    direction: s(),
                    location: s(),
                    keyword: s(),
                }),
            })),
            AuditEvent::EgressIntent(EgressIntent {
                invocation: s(),
                subject,
                method: s(),
                target: Some(target.to_string()),
                via: s(),
                target_hash: None,
                rule: 0,
                credential: Some(s()),
            }),
            AuditEvent::TrustRefused {
                artifact: s(),
                reason: s(),
            },
            AuditEvent::CredentialChanged {
                tenant: s(),
                installation: s(),
                credential: s(),
                change: Change::Set,
            },
            AuditEvent::TrustChanged {
                key: s(),
                publisher: s(),
                change: Change::Set,
            },
            AuditEvent::ApiKeyChanged {
                key: s(),
                tenant: Some(s()),
                change: Change::Revoked,
            },
            AuditEvent::TenantChanged {
                tenant: s(),
                change: Change::Deleted,
            },
            AuditEvent::InstallationChanged {
                tenant: s(),
                installation: s(),
                integration: s(),
                version: s(),
                change: InstallChange::Installed,
            },
            AuditEvent::InstallationDataDeleted {
                tenant: s(),
                installation: s(),
                data: InstallationData::Kv,
                count: 1,
            },
            AuditEvent::ClockRegression { previous: s() },
            AuditEvent::AccessRefused {
                key: Some(s()),
                tenant: Some(s()),
                reason: s(),
                route: s(),
                peer: s(),
            },
            AuditEvent::ConnectionChanged {
                tenant: s(),
                installation: s(),
                credential: s(),
                user: Some(s()),
                change: ConnectionChange::Connected,
                scopes: vec![s(); 1000],
                widened: vec![s(); 1000],
            },
            AuditEvent::ConnectionRefused {
                tenant: Some(s()),
                reason: s(),
                peer: s(),
            },
            AuditEvent::WebhookChanged {
                tenant: s(),
                installation: s(),
                endpoint: s(),
                action: s(),
                change: Change::Rotated,
            },
            AuditEvent::ScheduleChanged {
                tenant: s(),
                installation: s(),
                schedule: s(),
                action: s(),
                cron: s(),
                change: Change::Paused,
            },
            AuditEvent::WebhookRefused {
                tenant: s(),
                endpoint: s(),
                reason: s(),
                peer: s(),
            },
        ]
    }

    /// Every string in `value`, with the name of the field holding it.
    fn strings<'a>(
        value: &'a serde_json::Value,
        field: &'a str,
        out: &mut Vec<(&'a str, &'a str)>,
    ) {
        match value {
            serde_json::Value::String(s) => out.push((field, s)),
            serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, field, out)),
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| strings(v, k, out)),
            _ => {}
        }
    }

    /// The bound of each field, as docs/audit.md lists them.
    fn bound(field: &str) -> usize {
        match field {
            "via" => URL,
            "location" => LOCATION,
            "target_hash" => TARGET_HASH,
            "artifact" | "publisher" | "route" | "peer" | "previous" | "scopes" | "widened"
            | "cron" => TEXT,
            "id" | "version" | "digest" | "action" | "integration" => NAME,
            "type" | "outcome" | "reason" | "keyword" | "direction" | "method" | "change"
            | "decision" | "trigger" => CODE,
            _ => ID,
        }
    }

    #[test]
    fn every_string_field_of_every_event_is_bounded() {
        let target = "https://api.example.com/contacts/jane.doe@acme.com";
        for event in every_event(target) {
            let kind = event.kind();
            let stored = serde_json::to_value(event.for_trail(&hash)).expect("serializes");
            let mut found = Vec::new();
            strings(&stored, "", &mut found);
            assert!(!found.is_empty(), "{kind}");
            for (field, text) in found {
                let bound = bound(field);
                assert!(text.len() <= bound, "{kind}.{field}: {} bytes", text.len());
                assert!(
                    !text.contains("jane.doe"),
                    "{kind}.{field} holds the target"
                );
            }
            if let Some(scopes) = stored.get("scopes").and_then(|s| s.as_array()) {
                assert_eq!(scopes.len(), SCOPES);
            }
        }
    }

    #[test]
    fn targets_become_keyed_hashes_and_cut_strings_say_so() {
        let target = "https://api.example.com/contacts/jane.doe@acme.com";
        let events = every_event(target);
        let AuditEvent::Invocation(record) = events[0].clone().for_trail(&hash) else {
            panic!("the first event is an invocation");
        };
        let event = &record.egress[0];
        assert_eq!(event.target, None);
        assert_eq!(event.target_hash.as_deref(), Some(hash(target).as_str()));
        assert_eq!(event.via.as_ref().map(String::len), Some(URL - 1));
        assert!(event.via.as_deref().is_some_and(|v| v.ends_with('…')));
        let AuditEvent::EgressIntent(intent) = events[1].clone().for_trail(&hash) else {
            panic!("the second event is an intent");
        };
        assert_eq!(intent.target, None);
        assert_eq!(intent.target_hash, Some(hash(target)));
        // Short values are kept whole.
        let short = AuditEvent::TenantChanged {
            tenant: "acme".into(),
            change: Change::Set,
        };
        assert_eq!(short.clone().for_trail(&hash), short);
    }

    #[test]
    fn a_record_never_serializes_a_target_even_unconcealed() {
        let target = "https://api.example.com/contacts/jane.doe@acme.com";
        for event in every_event(target) {
            let text = serde_json::to_string(&event).expect("serializes");
            assert!(!text.contains("jane.doe"), "{}: {text}", event.kind());
        }
    }
}
