//! The wasmtime engine every integration runs on, and the epoch ticker behind timeouts.
//!
//! Settings follow measurements on this project's target machine (docs/benchmarks.md): the
//! pooling allocator with copy-on-write images, epochs rather than fuel for wall-clock limits,
//! and every wasm proposal we do not need switched off so components using them fail to load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::net::SocketAddr;
use std::path::PathBuf;

use airlock_host_api::egress::ip::AllowRanges;
use airlock_host_api::egress::resolve::{ResolveOverride, Resolver};
use airlock_host_api::limiter::MAX_TABLE_ELEMENTS;
use airlock_host_api::policy::Ceilings;
use wasmtime::{
    Config, Enabled, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, UpdateDeadline,
    WasmFeatures,
};

/// How often the engine's epoch advances: the granularity of every timeout.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// The deepest wasm stack a guest may use; overflow traps instead of touching host stack.
pub const MAX_WASM_STACK: usize = 512 * 1024;
/// Fiber stack for async calls: wasm's maximum plus room for host code running on it.
const ASYNC_STACK: usize = MAX_WASM_STACK + 1024 * 1024;

/// Proposals integrations do not need, off so that components using them fail to load.
///
/// The wasmtime advisories of 2026 cluster in exactly these (threads, GC, exceptions, stack
/// switching, component-model async); what stays on is what Rust's `wasm32-wasip2` emits
/// (bulk memory, reference types, multi-value, sign extension, SIMD) and the component model.
const DISABLED_PROPOSALS: WasmFeatures = WasmFeatures::THREADS
    .union(WasmFeatures::SHARED_EVERYTHING_THREADS)
    .union(WasmFeatures::MEMORY64)
    .union(WasmFeatures::MULTI_MEMORY)
    .union(WasmFeatures::GC)
    .union(WasmFeatures::GC_TYPES)
    .union(WasmFeatures::FUNCTION_REFERENCES)
    .union(WasmFeatures::EXCEPTIONS)
    .union(WasmFeatures::LEGACY_EXCEPTIONS)
    .union(WasmFeatures::STACK_SWITCHING)
    .union(WasmFeatures::TAIL_CALL)
    .union(WasmFeatures::RELAXED_SIMD)
    .union(WasmFeatures::CUSTOM_PAGE_SIZES)
    .union(WasmFeatures::WIDE_ARITHMETIC)
    .union(WasmFeatures::MEMORY_CONTROL)
    .union(WasmFeatures::CM_ASYNC)
    .union(WasmFeatures::CM_ASYNC_STACKFUL)
    .union(WasmFeatures::CM_MORE_ASYNC_BUILTINS)
    .union(WasmFeatures::CM_THREADING)
    .union(WasmFeatures::CM_ERROR_CONTEXT)
    .union(WasmFeatures::CM_GC);

/// What an operator chooses about the engine as a whole.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub ceilings: Ceilings,
    /// Sandboxes that may exist at once; sizes the pooling allocator.
    pub max_concurrent: u32,
    /// A deterministic per-invocation budget of fuel (roughly, wasm instructions).
    ///
    /// Off by default: metering costs 25–45% on CPU-heavy guests, and the epoch deadline
    /// already bounds wall-clock time. Turn it on where determinism is asked for.
    pub fuel: Option<u64>,
    /// Development and test switches for egress; all empty by default.
    pub egress: EgressOptions,
    /// Lower the CPU priority of the thread running an invocation once it has run this long,
    /// so that long-running guests yield to short ones (TI-05). Only for callers that give each
    /// invocation a thread of its own (the server): the priority cannot be raised again.
    pub demote_after: Option<Duration>,
}

/// Loosenings of egress for development and tests. Each is loud where it is set (the CLI warns)
/// and none of them ever lets a credential go out over plain http.
#[derive(Debug, Clone, Default)]
pub struct EgressOptions {
    /// `--resolve HOST=IP[:PORT]`: dial this address for this name instead of resolving it.
    pub resolve: Vec<ResolveOverride>,
    /// `--allow-private CIDR`: exempt these ranges from the private-address denials.
    pub allow_private: AllowRanges,
    /// `--extra-root-ca FILE`: also trust the CA certificates in these PEM files.
    pub extra_roots: Vec<PathBuf>,
    /// `airlock test --record` only: every exchange in full (it holds bodies).
    pub tap: Option<airlock_host_api::egress::tap::Tap>,
    /// `airlock run` and `airlock test` only, where the data is the author's own: a denied
    /// request keeps its URL and names the rules on its host, for the report (never recorded).
    pub explain_denials: bool,
    /// Where names no pin covers are looked up: the system resolver, unless an embedder (or a
    /// test scripting DNS answers) supplies one. Its answers are classified like any other.
    pub resolver: Resolver,
    /// The host's own listeners (`airlock serve`'s address, as bound): never dialed, whatever
    /// `allow_private` exempts (EG-19).
    pub self_addresses: Vec<SocketAddr>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            ceilings: Ceilings::default(),
            max_concurrent: 256,
            fuel: None,
            egress: EgressOptions::default(),
            demote_after: None,
        }
    }
}

/// Builds the engine with a running epoch ticker.
pub(crate) fn build(
    settings: &EngineSettings,
) -> wasmtime::Result<(wasmtime::Engine, EpochTicker)> {
    let engine = wasmtime::Engine::new(&config(settings))?;
    let ticker = EpochTicker::start(engine.clone());
    Ok((engine, ticker))
}

fn config(settings: &EngineSettings) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(settings.fuel.is_some())
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        .cranelift_opt_level(OptLevel::Speed)
        .wasm_features(DISABLED_PROPOSALS, false);

    let memory = usize::try_from(settings.ceilings.memory).unwrap_or(usize::MAX);
    let mut pool = PoolingAllocationConfig::new();
    // A Rust component instantiates a handful of core instances, each with at most one memory.
    let per_component = 8;
    pool.total_component_instances(settings.max_concurrent)
        .total_stacks(settings.max_concurrent)
        .total_core_instances(settings.max_concurrent * per_component)
        .total_memories(settings.max_concurrent * per_component)
        .total_tables(settings.max_concurrent * per_component)
        .max_core_instances_per_component(per_component * 2)
        .max_memories_per_component(per_component)
        .max_tables_per_component(per_component * 2)
        .max_memory_size(memory)
        .table_elements(MAX_TABLE_ELEMENTS)
        .linear_memory_keep_resident(64 * 1024)
        .table_keep_resident(16 * 1024)
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: wasmtime::Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("airlock-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .ok();
        Self { stop, thread }
    }

    /// Whether the ticker thread is running; without it no timeout can fire.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Epoch ticks a guest runs before it yields its thread to other tasks: a guest that spins
/// cannot hold a worker thread (and another tenant's invocation) for more than ~20 ms.
const SLICE_TICKS: u64 = 2;

/// Runs `store`'s guest in slices, yielding to the async executor between them, and interrupts
/// it (`Trap::Interrupt`) at the first slice boundary after `deadline`. With `demote_after`,
/// the thread running it drops to the lowest CPU priority once it has run that long.
///
/// This stops wasm code only; a guest blocked in a host call is stopped by the caller's own
/// timer at the same deadline (`invoke`).
pub(crate) fn schedule<T>(
    store: &mut wasmtime::Store<T>,
    deadline: Instant,
    demote_after: Option<Duration>,
) {
    let started = Instant::now();
    let mut demote = demote_after;
    store.set_epoch_deadline(SLICE_TICKS);
    store.epoch_deadline_callback(move |_| {
        let now = Instant::now();
        if now >= deadline {
            return Ok(UpdateDeadline::Interrupt);
        }
        if demote.is_some_and(|after| now >= started + after) {
            demote = None;
            lower_thread_priority();
        }
        Ok(UpdateDeadline::Yield(SLICE_TICKS))
    });
}

/// Sets this thread's nice value to 19, the lowest priority the kernel schedules normally: the
/// thread still runs whenever a core is idle, but a normal-priority thread preempts it.
fn lower_thread_priority() {
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours; on Linux,
    // PRIO_PROCESS with a thread id changes that thread only.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19)
    };
    if result != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the priority of a long-running guest"
        );
    }
}
