//! Typed identifiers, so an invocation id can never be passed where another id is expected.

use std::fmt;

/// Identifies one invocation in summaries, logs and (later) the audit trail.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct InvocationId(String);

impl InvocationId {
    /// A fresh random id (128 bits, hex).
    pub fn new() -> Self {
        Self(hex::encode(rand::random::<[u8; 16]>()))
    }
}

impl Default for InvocationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InvocationId({})", self.0)
    }
}
