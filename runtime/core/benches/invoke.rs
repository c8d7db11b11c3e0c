//! Per-invocation cost of `contact-mapper`'s `map-contact`: Airlock's full path against bare
//! wasmtime on the same engine, component and host functions, in one process.
//!
//! `cargo bench -p airlock-runtime --bench invoke`. The ratio of the two medians is the figure
//! that matters; absolute times depend on the machine.

use airlock_runtime::{EngineSettings, Runtime};
use criterion::{Criterion, criterion_group, criterion_main};

mod common;

fn fresh_sandbox(c: &mut Criterion) {
    let examples = common::built_examples();
    let read = |file: &str| common::mapper_file(&examples, file);

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
    let wasm = examples.join("target/wasm32-wasip2/release/contact_mapper.wasm");
    let bare = common::bare::Bare::new(
        &runtime,
        &wasm,
        *mapper.limits(),
        &read("sample-config.json"),
    );

    // The same runtime with an audit trail: every invocation's record is flushed to disk.
    let audit_home = tempfile::TempDir::new().expect("temp dir");
    let audited = common::audited_runtime(data.path(), audit_home.path());
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
        b.iter(|| rt.block_on(bare.call("map-contact", &input)))
    });
    group.finish();
}

criterion_group!(benches, fresh_sandbox);
criterion_main!(benches);
