//! Per-invocation cost of `contact-mapper`'s `map-contact`: Airlock's full path against bare
//! wasmtime on the same engine, component and host functions, in one process.
//!
//! `cargo bench -p airlock-runtime --bench invoke`. The ratio of the two medians is the figure
//! that matters; absolute times depend on the machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_host_api::HostState;
use airlock_host_api::audit::NoJournal;
use airlock_host_api::bindings::IntegrationPre;
use airlock_host_api::credentials::{CredentialBroker, NoCredentials};
use airlock_host_api::egress::{BrokeredHttp, EgressSettings, IntegrationEgress};
use airlock_host_api::kv::KvCtx;
use airlock_runtime::audit::{AuditDir, AuditTrail};
use airlock_runtime::store::Store as Db;
use airlock_runtime::{EngineSettings, Runtime};
use criterion::{Criterion, criterion_group, criterion_main};

mod common;
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-examples")
}

fn read(file: &str) -> String {
    std::fs::read_to_string(examples().join("contact-mapper").join(file)).expect("example file")
}

fn fresh_sandbox(c: &mut Criterion) {
    let examples = common::built_examples();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let data = tempfile::TempDir::new().expect("temp dir");
    let runtime = Runtime::new(data.path(), EngineSettings::default()).expect("runtime");
    let mapper = runtime
        .load(&examples.join("contact-mapper"))
        .expect("loads");
    let config = mapper
        .validate_config(Some(&read("sample-config.json")))
        .expect("config");
    let input = read("sample-input.json");

    // Bare wasmtime: same engine and host functions; no validation, limits or classification.
    let engine = runtime.engine();
    let mut linker = Linker::new(engine);
    airlock_host_api::add_to_linker(&mut linker).expect("link");
    let wasm = examples.join("target/wasm32-wasip2/release/contact_mapper.wasm");
    let component = Component::from_file(engine, wasm).expect("compile");
    let pre = IntegrationPre::new(linker.instantiate_pre(&component).expect("pre")).expect("world");
    let limits = *mapper.limits();
    let config_json: Arc<str> = read("sample-config.json").into();
    let no_egress = Arc::new(IntegrationEgress::default());
    let no_credentials: Arc<dyn CredentialBroker> = Arc::new(NoCredentials);
    let egress_settings = Arc::new(EgressSettings::default());

    // The same runtime with an audit trail: every invocation's record is flushed to disk.
    let audit_home = tempfile::TempDir::new().expect("temp dir");
    let db = Db::open(data.path(), None).expect("store");
    let dir = AuditDir::open(audit_home.path(), data.path()).expect("audit dir");
    let trail = AuditTrail::open(&db, dir).expect("audit trail");
    let audited = Runtime::new(data.path(), EngineSettings::default())
        .expect("runtime")
        .with_audit(trail);
    let audited_mapper = audited
        .load(&examples.join("contact-mapper"))
        .expect("loads");

    let mut group = c.benchmark_group("fresh-sandbox-map-contact");
    group.bench_function("airlock-invoke", |b| {
        b.iter(|| {
            let invocation = rt.block_on(runtime.invoke(&mapper, &config, "map-contact", &input));
            assert!(invocation.result.is_ok());
        })
    });
    group.bench_function("airlock-invoke-audited", |b| {
        b.iter(|| {
            let invocation =
                rt.block_on(audited.invoke(&audited_mapper, &config, "map-contact", &input));
            assert!(invocation.record.is_some());
        })
    });
    group.bench_function("bare-wasmtime", |b| {
        b.iter(|| {
            rt.block_on(async {
                let broker = BrokeredHttp::new(
                    no_egress.clone(),
                    egress_settings.clone(),
                    no_credentials.clone(),
                    Arc::new(NoJournal),
                );
                let state = HostState::new(&limits, config_json.clone(), broker, KvCtx::new(None));
                let mut store = Store::new(engine, state);
                store.set_epoch_deadline(1_000_000);
                let instance = pre
                    .instantiate_async(&mut store)
                    .await
                    .expect("instantiate");
                let output = instance
                    .airlock_integration_handler()
                    .call_invoke(&mut store, "map-contact", &input)
                    .await
                    .expect("call");
                assert!(output.is_ok());
            })
        })
    });
    group.finish();
}

criterion_group!(benches, fresh_sandbox);
criterion_main!(benches);
