//! [`Runtime`]: one engine, one linker and one compile cache, shared by every invocation.

use std::path::{Path, PathBuf};

use airlock_host_api::HostState;
use wasmtime::component::Linker;

use crate::cache::{CacheError, CompileCache};
use crate::engine::{self, EngineSettings, EpochTicker};

/// The long-lived half of Airlock: built once per process, then loads and invokes integrations.
pub struct Runtime {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) cache: CompileCache,
    pub(crate) settings: EngineSettings,
    data_dir: PathBuf,
    _ticker: EpochTicker,
}

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot configure the wasm engine: {0}")]
    Engine(String),
    #[error("cannot link host capabilities: {0}")]
    Link(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl Runtime {
    /// Starts a runtime whose state (compile cache and its key) lives under `data_dir`.
    pub fn new(data_dir: &Path, settings: EngineSettings) -> Result<Self, RuntimeError> {
        let (engine, ticker) =
            engine::build(&settings).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        airlock_host_api::add_to_linker(&mut linker)
            .map_err(|e| RuntimeError::Link(format!("{e:#}")))?;
        let cache = CompileCache::open(data_dir, &engine)?;
        Ok(Self {
            engine,
            linker,
            cache,
            settings,
            data_dir: data_dir.to_path_buf(),
            _ticker: ticker,
        })
    }

    /// The directory holding this runtime's state.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The engine settings this runtime was built with.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The wasmtime engine, for callers (benchmarks) that compare against bare wasmtime.
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }
}
