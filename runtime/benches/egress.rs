//! Added latency of one brokered HTTPS request: the `exfil` guest's `fetch` (a fresh sandbox,
//! policy, pinned resolution, address check, a new TLS connection, injection and redaction of a
//! bearer token) against native reqwest making the same GET to the same loopback TLS server, in
//! one process.
//!
//! `cargo bench -p airlock-runtime --bench egress`. reqwest runs twice: with a fresh connection
//! per request (what the broker does; the fair comparison) and with a pooled one (context).

use std::sync::Arc;

use airlock_host_api::credentials::{CredentialScope, CredentialType, Secret, StaticSecrets};
use airlock_runtime::engine::EgressOptions;
use airlock_runtime::loopback::LoopbackApi;
use airlock_runtime::{EngineSettings, Runtime};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};

mod common;

const HOST: &str = "vault.allowed.test";

fn brokered_vs_reqwest(c: &mut Criterion) {
    let examples = common::built_examples();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let api = rt
        .block_on(LoopbackApi::start(
            &[HOST],
            Arc::new(|_: &http::Request<Bytes>| {
                http::Response::builder()
                    .header("content-type", "application/json")
                    .body(Bytes::from_static(br#"{"items":[1,2,3]}"#))
                    .unwrap_or_default()
            }),
        ))
        .expect("loopback server");
    let data = tempfile::TempDir::new().expect("temp dir");
    let settings = EngineSettings {
        egress: EgressOptions {
            resolve: vec![format!("{HOST}={}", api.addr()).parse().expect("pin")],
            allow_private: "127.0.0.0/8".parse().expect("cidr"),
            extra_roots: vec![api.write_ca(data.path()).expect("ca")],
        },
        ..EngineSettings::default()
    };
    let runtime = Runtime::new(data.path(), settings).expect("runtime");
    let exfil = runtime.load(&examples.join("exfil")).expect("loads");
    let config = exfil.validate_config(None).expect("config");
    let secret =
        Secret::new(CredentialType::Bearer, "bench-token-0123456789".into()).expect("secret");
    let caller = runtime.local_caller(runtime.credentials(
        CredentialScope::local(),
        Arc::new(StaticSecrets::new([("token".to_string(), secret)].into())),
    ));
    let url = format!("https://{HOST}/items");
    let input = serde_json::json!({ "url": url }).to_string();

    let client = |pooled: bool| {
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_der(api.ca_der()).expect("ca"))
            .resolve(HOST, api.addr())
            .no_proxy()
            .http1_only();
        let builder = if pooled {
            builder
        } else {
            builder.pool_max_idle_per_host(0)
        };
        builder.build().expect("reqwest client")
    };
    let fresh = client(false);
    let pooled = client(true);

    let mut group = c.benchmark_group("https-get");
    group.bench_function("airlock-brokered", |b| {
        b.to_async(&rt).iter(|| async {
            let ran = runtime
                .invoke_as(&exfil, &config, &caller, "fetch", &input)
                .await;
            let report = ran.result.expect("fetch reports");
            assert_eq!(report["attempts"][0]["outcome"], "ok 200");
        })
    });
    for (name, client) in [
        ("reqwest-fresh-connection", &fresh),
        ("reqwest-pooled", &pooled),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let response = client
                    .get(&url)
                    .bearer_auth("bench-token-0123456789")
                    .send()
                    .await;
                let body = response.expect("send").bytes().await.expect("body");
                assert_eq!(body.len(), 17);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, brokered_vs_reqwest);
criterion_main!(benches);
