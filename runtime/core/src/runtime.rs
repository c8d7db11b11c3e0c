//! [`Runtime`]: one engine, one linker and one compile cache, shared by every invocation.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use airlock_host_api::egress::ip::AllowRanges;

use airlock_host_api::HostState;
use airlock_host_api::audit::AuditSink;
use airlock_host_api::credentials::{
    CredentialBroker, CredentialScope, Credentials, NoCredentials, OAuthTokens, SecretSource,
};
use airlock_host_api::egress::EgressSettings;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use wasmtime::component::Linker;

use crate::cache::{CacheError, CompileCache};
use crate::engine::{self, EngineSettings, EpochTicker};

/// The data dir's folder of scratch directories.
const SCRATCH_DIR: &str = "scratch";

/// The long-lived half of Airlock: built once per process, then loads and invokes integrations.
pub struct Runtime {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) cache: CompileCache,
    pub(crate) settings: EngineSettings,
    pub(crate) egress: Arc<EgressSettings>,
    /// OAuth access tokens, shared by every invocation of every installation (keyed by scope).
    oauth: Arc<OAuthTokens>,
    pub(crate) no_credentials: Arc<dyn CredentialBroker>,
    /// Where invocations are recorded; `None` only for hosts that keep no trail.
    pub(crate) audit: Option<Arc<dyn AuditSink>>,
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
    #[error("cannot configure egress: {0}")]
    Egress(String),
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
        let egress = Arc::new(egress_settings(&settings)?);
        airlock_host_api::scratch::sweep(&data_dir.join(SCRATCH_DIR));
        Ok(Self {
            engine,
            linker,
            cache,
            oauth: Arc::new(OAuthTokens::new(egress.clone())),
            no_credentials: Arc::new(NoCredentials),
            egress,
            settings,
            audit: None,
            data_dir: data_dir.to_path_buf(),
            _ticker: ticker,
        })
    }

    /// Records every invocation, and every request before it is sent, in `trail`.
    pub fn with_audit(mut self, trail: impl AuditSink + 'static) -> Self {
        self.audit = Some(Arc::new(trail));
        self
    }

    /// The directory holding this runtime's state.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where invocations' scratch directories are made, each removed when its invocation
    /// ends.
    pub(crate) fn scratch_root(&self) -> PathBuf {
        self.data_dir.join(SCRATCH_DIR)
    }

    /// The engine settings this runtime was built with.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The credential broker for one installation's values in `source`; OAuth tokens are
    /// cached runtime-wide under `scope`.
    pub fn credentials(
        &self,
        scope: CredentialScope,
        source: Arc<dyn SecretSource>,
    ) -> Arc<dyn CredentialBroker> {
        Arc::new(Credentials::new(scope, source, self.oauth.clone()))
    }

    /// The runtime-wide OAuth token cache and client: code exchanges for new connections, and
    /// forgetting what a replaced connection held.
    pub fn oauth(&self) -> &OAuthTokens {
        &self.oauth
    }

    /// The wasmtime engine, for callers (benchmarks) that compare against bare wasmtime.
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }
}

impl Runtime {
    /// Egress settings for the host's own requests to the operator's endpoints (alert
    /// notifications): this runtime's, with `allow` also exempted from the private-address
    /// denials (an operator's endpoint may live on a private network; a guest's never).
    pub fn host_egress(&self, allow: &AllowRanges) -> Result<Arc<EgressSettings>, RuntimeError> {
        if allow.is_empty() {
            return Ok(self.egress.clone());
        }
        let mut settings = self.settings.clone();
        settings.egress.allow_private = [settings.egress.allow_private.clone(), allow.clone()]
            .into_iter()
            .collect();
        egress_settings(&settings).map(Arc::new)
    }
}

fn egress_settings(settings: &EngineSettings) -> Result<EgressSettings, RuntimeError> {
    let options = &settings.egress;
    let mut roots = Vec::new();
    for path in &options.extra_roots {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect())
            .map_err(|e| RuntimeError::Egress(format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(RuntimeError::Egress(format!(
                "{}: no PEM certificate in the file",
                path.display()
            )));
        }
        roots.extend(certs);
    }
    EgressSettings::new(
        options.resolve.clone(),
        options.allow_private.clone(),
        roots,
    )
    .map(|egress| {
        egress
            .with_tap(options.tap.clone())
            .with_explained_denials(options.explain_denials)
            .with_resolver(options.resolver.clone())
            .with_self_addresses(options.self_addresses.clone())
    })
    .map_err(|e| RuntimeError::Egress(e.to_string()))
}
