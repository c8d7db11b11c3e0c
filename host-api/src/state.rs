//! The per-invocation store data: every capability's context for one call, and nothing else.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::ConfigCtx;
use crate::limiter::StoreLimiter;
use crate::log::LogCtx;
use crate::policy::Limits;
use crate::stdio::GuestStdio;

/// Everything one invocation's `Store` holds. Built fresh per call and dropped with it.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) log: LogCtx,
    pub(crate) config: ConfigCtx,
    limiter: StoreLimiter,
}

impl HostState {
    /// Builds the state for one invocation: empty environment and arguments, no preopens,
    /// stdio captured into the guest log, and the given validated config.
    pub fn new(limits: &Limits, config_json: Arc<str>) -> Self {
        let log = LogCtx::new(limits.guest_log);
        let wasi = WasiCtx::builder()
            .stdout(GuestStdio::stdout(log.clone()))
            .stderr(GuestStdio::stderr(log.clone()))
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            log,
            config: ConfigCtx::new(config_json),
            limiter: StoreLimiter::new(limits.memory),
        }
    }

    /// The guest log: what the guest logged and printed.
    pub fn log(&self) -> &LogCtx {
        &self.log
    }

    /// The store's limiter, for `Store::limiter` and for reading the peak afterwards.
    pub fn limiter(&mut self) -> &mut StoreLimiter {
        &mut self.limiter
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_io::IoView for HostState {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}
