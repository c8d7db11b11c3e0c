//! Airlock's policy: what an integration may use, as pure values parsed once at load.
//!
//! Empty means deny, and every value is bounded by the operator's ceilings. The egress broker,
//! the loader, `airlock check` and `airlock policy check` all decide with this one crate, so a
//! rule cannot mean one thing to the checker and another to the broker; the fuzz targets live
//! on it for the same reason.
//!
//! # Layout
//! - [`units`]: byte sizes and durations as manifests write them.
//! - [`limits`](Limits): an invocation's limits and the operator's ceilings.
//! - [`egress`]: the egress rule grammar, URL canonicalisation and the policy decision.
//! - [`ip`]: the classifier of resolved addresses (the second SSRF layer).
//! - [`grant`]: what an operator approved of a manifest's egress rules.
//! - [`apikey`]: the format of Airlock's own API keys, their scopes and constant-time check.
//! - [`webhook`]: inbound webhook signing secrets and the signature schemes that check them.
//!
//! # Must never depend on
//! wasmtime, tokio or any storage: this crate is pure and has no I/O (new keys and secrets
//! draw from the OS random source, nothing else).

pub mod apikey;
pub mod egress;
pub mod grant;
pub mod ip;
mod limits;
pub mod units;
pub mod webhook;

pub use limits::{Ceilings, LimitError, Limits, RequestedLimits};
