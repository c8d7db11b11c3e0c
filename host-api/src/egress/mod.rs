//! Brokered egress: the guest's only way out, and every check on the way.
//!
//! # Layout
//! - [`broker`]: [`BrokeredHttp`], the `wasi:http` hook that admits, resolves, dials and sends.
//! - [`ip`]: the address classifier applied after resolution (the second SSRF layer).
//! - [`resolve`]: `--resolve HOST=IP[:PORT]` pins for development and tests.
//! - [`settings`]: limits, pins, classifier and TLS, shared by a runtime's invocations.
//! - [`event`]: one metadata-only record per request attempt.
//! - `body`: request and response bodies with size and idle limits.

mod body;
pub mod broker;
pub mod event;
pub mod ip;
pub mod resolve;
pub mod settings;

pub use broker::{BrokeredHttp, IntegrationEgress};
pub use event::{Decision, EgressEvent, EgressLog};
pub use settings::{EgressLimits, EgressSettings, EgressSetupError};
