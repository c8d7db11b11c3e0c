//! The bare-wasmtime floor: the same engine, component and host functions as Airlock, and the
//! same per-store state, but none of Airlock's work around the call (no validation, limits
//! bookkeeping, classification or audit).

use std::path::Path;
use std::sync::Arc;

use airlock_host_api::HostState;
use airlock_host_api::audit::{NoJournal, Subject};
use airlock_host_api::bindings::IntegrationPre;
use airlock_host_api::credentials::{CredentialBroker, NoCredentials};
use airlock_host_api::egress::{BrokeredHttp, EgressSettings, IntegrationEgress};
use airlock_host_api::kv::KvCtx;
use airlock_host_api::policy::Limits;
use airlock_runtime::Runtime;
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

/// One component instantiated from a shared `InstancePre` into a fresh `Store` per call.
pub struct Bare {
    engine: wasmtime::Engine,
    pre: IntegrationPre<HostState>,
    limits: Limits,
    config: Arc<str>,
    egress: Arc<IntegrationEgress>,
    settings: Arc<EgressSettings>,
    credentials: Arc<dyn CredentialBroker>,
}

impl Bare {
    /// `wasm` compiled on `runtime`'s engine, run under `limits` with `config`.
    pub fn new(runtime: &Runtime, wasm: &Path, limits: Limits, config: &str) -> Self {
        let engine = runtime.engine().clone();
        let mut linker = Linker::new(&engine);
        airlock_host_api::add_to_linker(&mut linker).expect("link");
        let component = Component::from_file(&engine, wasm).expect("compile");
        let pre =
            IntegrationPre::new(linker.instantiate_pre(&component).expect("pre")).expect("world");
        Self {
            engine,
            pre,
            limits,
            config: config.into(),
            egress: Arc::new(IntegrationEgress::default()),
            settings: Arc::new(EgressSettings::default()),
            credentials: Arc::new(NoCredentials),
        }
    }

    /// New `Store`, instantiate, call `action`, drop.
    pub async fn call(&self, action: &str, input: &str) {
        let broker = BrokeredHttp::new(
            self.egress.clone(),
            self.settings.clone(),
            self.credentials.clone(),
            Arc::new(NoJournal),
            &Subject::local(),
        );
        let state = HostState::new(
            &self.limits,
            self.config.clone(),
            broker,
            KvCtx::new(None),
            None,
        )
        .expect("no scratch to make");
        let mut store = Store::new(&self.engine, state);
        store.set_epoch_deadline(1_000_000);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        let output = instance
            .airlock_integration_handler()
            .call_invoke(&mut store, action, input)
            .await
            .expect("call");
        assert!(output.is_ok());
    }
}
