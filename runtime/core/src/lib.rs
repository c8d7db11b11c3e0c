//! Airlock's core: loads integration components and runs each invocation in a fresh, limited
//! sandbox with its input, output and config validated at the boundary.
//!
//! # Layout
//! - [`engine`]: the wasmtime configuration (pooling, epochs, proposals off) and epoch ticker.
//! - [`runtime`]: [`Runtime`], the engine, linker and compile cache shared by invocations.
//! - [`manifest`]: `airlock.toml` parsed strictly, with located errors.
//! - [`json`], [`schema`]: strict JSON parsing and safe JSON Schema validation.
//! - [`loader`]: manifest → limits → schemas → compile (or cache) → import check → pre-instance.
//! - [`bundle`]: packing an integration directory, and loading a verified bundle.
//! - [`trust`]: the publisher keys this host trusts.
//! - [`cache`]: the MAC-bound compiled-artifact cache.
//! - [`invoke`]: one invocation end to end, and how failures are classified.
//! - [`exit`]: every exit code, and which failure gets which.
//! - [`journal`]: what an invocation writes to the audit sink while it runs.
//! - [`ids`], [`clock`], [`digest`], [`fsutil`]: identifiers, time, hashes, careful file writes.
//!
//! # Must never depend on
//! axum, clap or sled: the server, the CLI and storage sit on top of this crate. Audit records
//! go to an [`airlock_host_api::audit::AuditSink`] the host provides.

pub mod bundle;
pub mod cache;
pub mod clock;
pub mod digest;
pub mod engine;
pub mod exit;
pub mod fsutil;
pub mod ids;
pub mod invoke;
pub mod journal;
pub mod json;
pub mod loader;
pub mod manifest;
pub mod output;
pub mod runtime;
pub mod schema;
pub mod trust;

pub use airlock_host_api::policy::units;
pub use engine::EngineSettings;
pub use invoke::{Caller, Invocation, InvokeError, LimitKind};
pub use loader::{Integration, LoadError, ValidatedConfig};
pub use output::Output;
pub use runtime::Runtime;
