//! Airlock's runtime: loads integration components and runs each invocation in a fresh,
//! limited sandbox with its input, output and config validated at the boundary.
//!
//! # Layout
//! - [`engine`]: the wasmtime configuration (pooling, epochs, proposals off) and epoch ticker.
//! - [`runtime`]: [`Runtime`], the engine, linker and compile cache shared by invocations.
//! - [`manifest`]: `airlock.toml` parsed strictly, with located errors.
//! - [`json`], [`schema`]: strict JSON parsing and safe JSON Schema validation.
//! - [`loader`]: manifest → limits → schemas → compile (or cache) → import check → pre-instance.
//! - [`apikey`]: API keys for Airlock's own API: format, scopes, constant-time check.
//! - [`audit`]: the hash-chained, checkpoint-signed audit trail and metrics from it.
//! - [`bundle`]: signed bundles: format, keys, signing, verification, trusted loading.
//! - [`trust`]: the publisher keys this host trusts.
//! - [`install`]: tenants' installations: grants, upgrades, rollback protection.
//! - [`cache`]: the MAC-bound compiled-artifact cache.
//! - [`invoke`]: one invocation end to end, and how failures are classified.
//! - [`fixtures`]: `airlock test`: fixture cases run offline through the real egress path.
//! - [`privileges`]: which declared egress and credentials were used, and what to cut.
//! - [`scaffold`]: `airlock new`: a ready integration crate from a template.
//! - [`store`]: the sled database: sealed credentials and per-tenant data keys.
//! - [`server`]: `airlock serve`, the operator's HTTP API.
//! - [`webhook`]: inbound webhooks: signing secrets and signature schemes.
//! - [`hardening`]: no core dumps of a process that holds secrets.
//! - [`cli`]: the `airlock` command line, one file per verb.

pub mod apikey;
pub mod audit;
pub mod bundle;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod digest;
pub mod engine;
pub mod fixtures;
mod fsutil;
pub mod hardening;
pub mod ids;
pub mod install;
pub mod invoke;
pub mod json;
pub mod loader;
pub mod manifest;
pub mod privileges;
pub mod runtime;
pub mod scaffold;
pub mod schema;
pub mod server;
pub mod store;
pub mod toolchain;
pub mod trust;
pub mod webhook;

pub use airlock_host_api::policy::units;
pub use engine::EngineSettings;
pub use invoke::{Caller, Invocation, InvokeError, LimitKind};
pub use loader::{Integration, LoadError, ValidatedConfig};
pub use runtime::Runtime;
