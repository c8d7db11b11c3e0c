//! Pure, wasm-free policy: what an integration may use, parsed once at load.
//!
//! Empty means deny; every value here is bounded by the operator's ceilings.

pub mod egress;
mod limits;
pub mod units;

pub use limits::{Ceilings, LimitError, Limits, RequestedLimits};
