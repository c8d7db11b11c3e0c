//! Egress events: one metadata-only record per request attempt, for the invocation summary and
//! the audit trail. Never a body, a header value, a query string or a secret.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Sent, and a response head came back.
    Allowed,
    /// Refused by policy before any connection was made.
    Denied,
    /// Allowed by policy, but resolution, connection, TLS or the exchange failed.
    Failed,
}

/// One egress attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressEvent {
    pub method: String,
    /// The canonical target without its query; absent when the URL was refused unparsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Position of the matching rule in the manifest, from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// The name (never the value) of the credential the rule injects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    pub decision: Decision,
    /// Stable reason code for a denial or failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub duration_us: u64,
}

/// The events of one invocation, shared with the futures that complete them.
#[derive(Debug, Clone, Default)]
pub struct EgressLog(Arc<Mutex<Vec<EgressEvent>>>);

impl EgressLog {
    pub(crate) fn push(&self, event: EgressEvent) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }

    /// Takes the events recorded so far.
    pub fn take(&self) -> Vec<EgressEvent> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
