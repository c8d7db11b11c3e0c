//! Airlock's host API: the capabilities a guest can reach and the policy that bounds them.
//!
//! This crate knows policy, not the CLI or the server: the runtime builds a [`HostState`] per
//! invocation, and [`add_to_linker`] links every capability a guest may import.
//!
//! # Layout
//! - [`bindings`]: the single `bindgen!` for the `airlock:integration` world.
//! - [`policy`]: the `airlock-policy` crate (limits, units, egress grammar, IP classes,
//!   grants), re-exported: pure values parsed once at load.
//! - [`state`]: [`HostState`], the store data of one invocation.
//! - [`log`], [`stdio`]: the guest log (the `log` import plus captured stdout and stderr).
//! - [`config`]: the `config` import.
//! - [`kv`]: the `kv` import: a per-installation key-value namespace behind a quota.
//! - [`egress`]: brokered `wasi:http`: admission, pinned resolution, address checks, limits,
//!   credential injection and response redaction.
//! - [`audit`]: the metadata-only events of the audit trail, and the egress journal.
//! - [`credentials`]: credential values, their injection, OAuth tokens, encryption at rest.
//! - [`limiter`]: the per-store memory ceiling and peak.
//! - [`budget`]: what the host holds and does for a guest outside its linear memory, bounded.
//! - [`random`]: `wasi:random`, charged to that budget.
//! - [`wasi`]: WASI p2 linked deny-by-default, and the import check.
//!
//! # Must never depend on
//! Storage (sled, `airlock-store`), the CLI or the server: stored secrets and kv reach it
//! through the `SecretSource` and `KvBackend` traits, the trail through `audit::AuditSink`.

pub mod audit;
pub mod bindings;
pub mod budget;
pub mod config;
pub mod credentials;
pub mod egress;
pub mod kv;
pub mod limiter;
pub mod log;
pub mod random;
pub mod scratch;
pub mod state;
pub mod stdio;
pub mod wasi;

use wasmtime::component::{HasData, Linker};

pub use airlock_policy as policy;
pub use state::HostState;

/// Links every capability a guest may import: airlock's interfaces, brokered `wasi:http` and
/// deny-by-default WASI.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasi::add_to_linker(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    bindings::log::add_to_linker::<HostState, LogCap>(linker, |s| &mut s.log)?;
    bindings::config::add_to_linker::<HostState, ConfigCap>(linker, |s| &mut s.config)?;
    bindings::kv::add_to_linker::<HostState, KvCap>(linker, |s| &mut s.kv)?;
    Ok(())
}

struct LogCap;
impl HasData for LogCap {
    type Data<'a> = &'a mut log::LogCtx;
}

struct ConfigCap;
impl HasData for ConfigCap {
    type Data<'a> = &'a mut config::ConfigCtx;
}

struct KvCap;
impl HasData for KvCap {
    type Data<'a> = &'a mut kv::KvCtx;
}
