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

pub mod cli;
pub mod hardening;
pub mod server;

// The core's modules, under the names the rest of this crate has always used them by.
pub use airlock_audit as audit;
pub use airlock_devkit::{fixtures, privileges, scaffold, toolchain};
pub use airlock_platform::{api_keys as apikey, install};
pub use airlock_policy::webhook;
pub use airlock_runtime::{
    Caller, EngineSettings, Integration, Invocation, InvokeError, LimitKind, LoadError, Runtime,
    ValidatedConfig, bundle, cache, clock, digest, engine, fsutil, ids, invoke, json, loader,
    manifest, runtime, schema, trust, units,
};
pub use airlock_store as store;
