//! The OpenAPI document against `docs/openapi.json` and against the router that serves it:
//! the file is the document byte for byte, and every documented operation is routed, needs a
//! key exactly when the document says so, needs the scope its `x-airlock-scope` names, and is
//! the only method its path answers (anything else is 405).
//!
//! `AIRLOCK_BLESS=1 cargo test -p airlock-server --lib routes::tests` rewrites
//! `docs/openapi.json` from the code.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt as _;

use super::{openapi_json, router};
use crate::app::{App, ServeLimits};
use airlock_audit::AuditTrail;
use airlock_audit::checkpoint::AuditDir;
use airlock_platform::api_keys::{self, Scope};
use airlock_runtime::engine::EngineSettings;
use airlock_runtime::ids::TenantId;
use airlock_runtime::runtime::Runtime;
use airlock_store::Tenants;
use airlock_store::{Backend, Store};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

#[test]
fn docs_openapi_json_is_the_generated_document() {
    let generated = openapi_json();
    if std::env::var_os("AIRLOCK_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(DOCS, &generated).expect("write docs/openapi.json");
        return;
    }
    let kept = std::fs::read_to_string(DOCS).expect("docs/openapi.json");
    assert!(
        kept == generated,
        "docs/openapi.json is not the document the server serves; regenerate it with \
         `AIRLOCK_BLESS=1 cargo test -p airlock-server --lib routes::tests`"
    );
}

/// The router over a fresh store, trail and runtime in `dirs`, and that store and trail.
fn serve(dirs: &(TempDir, TempDir)) -> (axum::Router, Store, AuditTrail) {
    let (data, audit) = dirs;
    let store = Store::open(data.path(), None).expect("store");
    let trail = AuditTrail::open(
        &store,
        AuditDir::open(audit.path(), data.path()).expect("audit dir"),
    )
    .expect("trail");
    let runtime = Runtime::new(data.path(), EngineSettings::default()).expect("runtime");
    let app = App::new(
        runtime,
        Backend::Sled(store.clone()),
        trail.clone(),
        ServeLimits::default(),
        "http://127.0.0.1:1",
    )
    .expect("app");
    (router(Arc::new(app)), store, trail)
}

/// `method path` with `key` (or none), from client `n` (each its own, so no failure limit is
/// met).
async fn call(
    router: &axum::Router,
    (method, path): (&str, &str),
    key: Option<&str>,
    n: u8,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let mut request = request.body(Body::empty()).expect("request");
    let peer = SocketAddr::from((Ipv4Addr::new(192, 0, 2, n), 40_000));
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_router_serves_exactly_what_its_document_says() {
    let dirs = (
        TempDir::new().expect("temp dir"),
        TempDir::new().expect("temp dir"),
    );
    let (router, ..) = serve(&dirs);
    let mut client = 0u8;
    let mut next = || {
        client += 1;
        client
    };
    let (status, document) = call(&router, ("GET", "/v1/openapi.json"), None, next()).await;
    assert_eq!(status, StatusCode::OK, "served without a key");
    let generated: Value = serde_json::from_str(&openapi_json()).expect("JSON");
    assert_eq!(document, generated);
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 25, "{:?}", paths.keys());
    for (template, operations) in paths {
        let path = filled(template);
        let operations = operations.as_object().expect("operations");
        for method in METHODS {
            let (status, body) = call(&router, (method, &path), None, next()).await;
            let Some(operation) = operations.get(&method.to_ascii_lowercase()) else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not documented but answers {status}"
                );
                continue;
            };
            assert_ne!(
                body["error"]["message"], "route not found",
                "{method} {path}"
            );
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            // No `security` means the document's default: the bearer key.
            let open = operation["security"] == Value::Array(Vec::new());
            let refused = status == StatusCode::UNAUTHORIZED;
            assert_eq!(
                refused,
                !open,
                "{method} {path} answers {status} {body} without a key; the document says it \
                 {} one",
                if open { "needs no" } else { "needs" }
            );
            if refused {
                assert!(operation["responses"]["401"].is_object(), "{method} {path}");
            }
        }
    }
    let (status, _) = call(&router, ("GET", "/v1/nothing"), None, next()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// `template` with each `{param}` filled with `x`.
fn filled(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// A key of tenant `acme` with `scopes`.
fn key(store: &Store, trail: &AuditTrail, scopes: Vec<Scope>) -> String {
    let acme: TenantId = "acme".parse().expect("tenant id");
    let issued = api_keys::issue(store, trail, Some(&acme), scopes, None).expect("key");
    issued.key.to_string()
}

#[tokio::test]
async fn every_operation_needs_the_scope_its_document_names() {
    let dirs = (
        TempDir::new().expect("temp dir"),
        TempDir::new().expect("temp dir"),
    );
    let (router, store, trail) = serve(&dirs);
    store
        .create_tenant(&"acme".parse().expect("tenant id"))
        .expect("tenant");
    let every_scope = key(&store, &trail, Scope::ALL.to_vec());
    let generated: Value = serde_json::from_str(&openapi_json()).expect("JSON");
    let mut checked = 0;
    for (template, operations) in generated["paths"].as_object().expect("paths") {
        let path = filled(template);
        for (method, operation) in operations.as_object().expect("operations") {
            let method = method.to_ascii_uppercase();
            let named = operation["x-airlock-scope"].as_str();
            let open = operation["security"] == Value::Array(Vec::new());
            assert_eq!(named.is_none(), open, "{method} {path} names no scope");
            let Some(named) = named else { continue };
            checked += 1;
            let refused = |(status, body): (StatusCode, Value)| {
                status == StatusCode::FORBIDDEN && body["error"]["code"] == "forbidden"
            };
            if named == "admin" {
                let reply = call(&router, (&method, &path), Some(&every_scope), 1).await;
                assert!(refused(reply), "{method} {path} lets a tenant key in");
                continue;
            }
            let needed: Vec<Scope> = named
                .split(", ")
                .map(|s| serde_json::from_value(json!(s)).expect("a scope"))
                .collect();
            let exactly = key(&store, &trail, needed.clone());
            let reply = call(&router, (&method, &path), Some(&exactly), 1).await;
            assert!(!refused(reply), "{method} {path} needs more than {named}");
            for missing in &needed {
                let fewer = Scope::ALL.into_iter().filter(|s| s != missing).collect();
                let reply = call(
                    &router,
                    (&method, &path),
                    Some(&key(&store, &trail, fewer)),
                    1,
                )
                .await;
                assert!(refused(reply), "{method} {path} runs without {missing}");
            }
        }
    }
    assert!(checked >= 25, "{checked}");
}

/// `POST /v1/backup` with `body`, through the operator's socket or from the network with `key`.
async fn backup(router: &axum::Router, body: Value, via: Result<(), &str>) -> (StatusCode, Value) {
    let mut request = Request::builder().method(Method::POST).uri("/v1/backup");
    if let Err(key) = via {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let mut request = request.body(Body::from(body.to_string())).expect("request");
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    request.extensions_mut().insert(ConnectInfo(peer));
    if via.is_ok() {
        request.extensions_mut().insert(crate::local::Operator);
    }
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A backup writes a file on this host: from the network, even with the admin key, there is
/// no such route; through the operator's socket it is written, sealed, and never over a file.
#[tokio::test]
async fn a_backup_is_taken_through_the_operators_socket_only() {
    let dirs = (
        TempDir::new().expect("temp dir"),
        TempDir::new().expect("temp dir"),
    );
    let (router, store, trail) = serve(&dirs);
    let admin = api_keys::issue(&store, &trail, None, Vec::new(), None).expect("admin key");
    let out = TempDir::new().expect("temp dir");
    let to = out.path().join("backup");
    let body = json!({"to": to});

    let (status, _) = backup(&router, body.clone(), Err(admin.key.as_ref())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!to.exists());
    let (status, reply) = backup(&router, json!({"to": "relative"}), Ok(())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");

    let (status, manifest) = backup(&router, body.clone(), Ok(())).await;
    assert_eq!(status, StatusCode::CREATED, "{manifest}");
    assert_eq!(manifest["digest"].as_str().map(str::len), Some(64));
    assert!(to.exists());
    let (status, reply) = backup(&router, body, Ok(())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
}
