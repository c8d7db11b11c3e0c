//! The per-invocation store data: every capability's context for one call, and nothing else.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::filesystem::FsPerms;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::budget::{FIELD_SIZE_LIMIT, Held, HostBudget, HostLimitExceeded, MAX_RESOURCES};
use crate::config::ConfigCtx;
use crate::egress::BrokeredHttp;
use crate::kv::KvCtx;
use crate::limiter::StoreLimiter;
use crate::log::LogCtx;
use crate::policy::Limits;
use crate::random::RandomCtx;
use crate::scratch::{GUEST_PATH, Scratch, ScratchFs};
use crate::stdio::GuestStdio;

/// Everything one invocation's `Store` holds. Built fresh per call and dropped with it.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) log: LogCtx,
    pub(crate) config: ConfigCtx,
    pub(crate) kv: KvCtx,
    limiter: StoreLimiter,
    budget: HostBudget,
    /// `wasi:random/insecure-seed`: fixed for the invocation, as the interface asks.
    seed: (u64, u64),
    http: WasiHttpCtx,
    broker: BrokeredHttp,
    /// The invocation's scratch directory, removed with the state.
    scratch: Option<Scratch>,
}

impl HostState {
    /// Builds the state for one invocation: empty environment and arguments, stdio captured
    /// into the guest log, the given validated config, HTTP through `broker`, the
    /// installation's `kv` namespace, and no preopen but its `scratch` directory, if it has
    /// one, at `/scratch`.
    pub fn new(
        limits: &Limits,
        config_json: Arc<str>,
        broker: BrokeredHttp,
        kv: KvCtx,
        scratch: Option<Scratch>,
    ) -> std::io::Result<Self> {
        let log = LogCtx::new(limits.guest_log);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestStdio::stdout(log.clone()))
            .stderr(GuestStdio::stderr(log.clone()));
        if let Some(scratch) = &scratch {
            wasi.preopened_dir(scratch.path(), GUEST_PATH, FsPerms::ReadWrite)
                .map_err(std::io::Error::other)?;
        }
        let wasi = wasi.build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Ok(Self {
            wasi,
            table,
            log,
            config: ConfigCtx::new(config_json),
            kv,
            limiter: StoreLimiter::new(limits.memory),
            budget: HostBudget::new(limits.host_memory),
            seed: rand::random(),
            http: {
                let mut http = WasiHttpCtx::new();
                http.set_field_size_limit(FIELD_SIZE_LIMIT);
                http
            },
            broker,
            scratch,
        })
    }

    /// The broker: what the guest's requests did.
    pub fn broker(&self) -> &BrokeredHttp {
        &self.broker
    }

    /// The kv namespace: what the guest did with it.
    pub fn kv(&self) -> &KvCtx {
        &self.kv
    }

    /// The guest log: what the guest logged and printed.
    pub fn log(&self) -> &LogCtx {
        &self.log
    }

    /// The store's limiter, for `Store::limiter` and for reading the peak afterwards.
    pub fn limiter(&mut self) -> &mut StoreLimiter {
        &mut self.limiter
    }

    /// What the host held and did for the guest: peaks, and the limit that stopped it.
    pub fn budget(&mut self) -> &mut HostBudget {
        &mut self.budget
    }

    /// Re-measures what the host holds for the guest after one of its host calls (the store's
    /// call hook); an error ends the invocation.
    pub fn after_host_call(&mut self) -> Result<(), HostLimitExceeded> {
        let held = Held {
            log: self.log.held(),
            egress: self.broker.held(),
        };
        self.budget.after_call(&mut self.table, held)
    }

    /// The filesystem the guest reaches: its scratch directory, if any, within its size.
    pub(crate) fn scratch_fs(&mut self) -> ScratchFs<'_> {
        let quota = self.scratch.as_ref().map(Scratch::quota);
        ScratchFs {
            fs: wasmtime_wasi::filesystem::WasiFilesystemView::filesystem(self),
            quota,
        }
    }

    pub(crate) fn random(&mut self) -> RandomCtx<'_> {
        RandomCtx {
            budget: &mut self.budget,
            seed: self.seed,
        }
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

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.broker,
        }
    }
}
