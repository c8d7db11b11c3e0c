//! Brokered egress: the guest's only way out, and every check on the way.
//!
//! # Layout
//! - [`broker`]: [`BrokeredHttp`], the `wasi:http` hook that admits, resolves, dials and sends.
//! - `fields`: the header names and query parameters a guest may not send.
//! - [`ip`]: the address classifier applied after resolution (the second SSRF layer).
//! - [`resolve`]: `--resolve HOST=IP[:PORT]` pins for development and tests.
//! - [`settings`]: limits, pins, classifier and TLS, shared by a runtime's invocations.
//! - [`event`]: one metadata-only record per request attempt.
//! - [`redact`]: scrubbing injected credentials from responses, streamed and decoded.
//! - [`tap`]: whole exchanges, credential scrubbed, for `airlock test --record` only.
//! - `tenants`: the cap on one tenant's requests in flight across its invocations.
//! - `transport`: resolve, check, dial, TLS and one HTTP/1.1 exchange (guest and host requests).
//! - `pool`: keep-alive connections, reused only within one tenant's installation, origin and
//!   checked address.
//! - `body`: request and response bodies with size and idle limits, and the redacted body.

pub(crate) mod body;
pub mod broker;
pub mod event;
pub(crate) mod fields;
pub mod host;
mod pool;
pub mod redact;
pub mod resolve;
pub mod settings;
pub mod tap;
mod tenants;
pub mod trace;
pub(crate) mod transport;

pub use airlock_policy::ip;
pub use broker::{BrokeredHttp, IntegrationEgress};
pub use event::{
    ABORTED, Decision, DenialHint, EgressEvent, EgressLog, MAX_DETAILED_EVENTS, Suppressed,
};
pub use settings::{EgressLimits, EgressSettings, EgressSetupError};
