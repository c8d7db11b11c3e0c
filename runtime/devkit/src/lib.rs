//! Airlock for connector authors: what `airlock new`, `airlock test` and `airlock check` do
//! besides running a component.
//!
//! # Layout
//! - [`fixtures`]: fixture cases run offline through the real egress path, and `--record`.
//! - [`freshness`]: whether a component is older than its sources.
//! - [`privileges`]: which declared egress and credentials were used, and what to cut.
//! - [`scaffold`]: `airlock new`: a ready integration crate from a template.
//! - [`toolchain`]: making sure the wasm32-wasip2 target is installed before a build.
//! - [`watch`]: the files `airlock watch` watches, and whether they changed.
//!
//! # Must never depend on
//! axum: nothing here serves the operator API.

pub mod fixtures;
pub mod freshness;
pub mod privileges;
pub mod scaffold;
pub mod toolchain;
pub mod watch;
