//! The `config` capability: hands the guest its installation's config, already validated.

use std::sync::Arc;

use crate::bindings::config;

/// Per-invocation config state: the validated config as JSON text.
///
/// The host validates config against the manifest's schema before building this, so the guest
/// only ever sees config that satisfies it.
#[derive(Debug, Clone)]
pub struct ConfigCtx {
    json: Arc<str>,
}

impl ConfigCtx {
    /// Wraps config JSON text that the caller has already validated.
    pub fn new(json: Arc<str>) -> Self {
        Self { json }
    }
}

impl config::Host for ConfigCtx {
    fn get(&mut self) -> String {
        self.json.to_string()
    }
}
