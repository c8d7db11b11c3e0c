//! The router against `docs/openapi.json`: every documented operation is routed, and every
//! routed path answers only the documented methods (anything else is 405), so neither can
//! drift from the other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tempfile::TempDir;
use tower::ServiceExt as _;

use super::router;
use crate::audit::AuditTrail;
use crate::audit::checkpoint::AuditDir;
use crate::engine::EngineSettings;
use crate::runtime::Runtime;
use crate::server::app::{App, ServeLimits};
use crate::store::Store;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Documented paths (`{param}` filled with `x`) and their methods.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .expect("docs/openapi.json");
    let spec: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let paths = spec["paths"].as_object().expect("paths");
    paths
        .iter()
        .map(|(path, ops)| {
            let filled: String = path
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let methods = ops
                .as_object()
                .expect("operations")
                .keys()
                .map(|m| m.to_ascii_uppercase())
                .collect();
            (filled, methods)
        })
        .collect()
}

/// The paths `router()` names, read from its source.
fn routed() -> BTreeSet<String> {
    let source = include_str!("mod.rs");
    source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|literal| literal.starts_with('/'))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_routed_path_is_documented() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .expect("docs/openapi.json");
    let spec: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let documented: BTreeSet<String> = spec["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    assert_eq!(routed(), documented);
}

#[tokio::test]
async fn the_router_serves_exactly_what_openapi_documents() {
    let data = TempDir::new().expect("temp dir");
    let audit = TempDir::new().expect("temp dir");
    let store = Store::open(data.path(), None).expect("store");
    let trail = AuditTrail::open(
        &store,
        AuditDir::open(audit.path(), data.path()).expect("audit dir"),
    )
    .expect("trail");
    let runtime = Runtime::new(data.path(), EngineSettings::default()).expect("runtime");
    let app = Arc::new(
        App::new(
            runtime,
            store,
            trail,
            ServeLimits::default(),
            "http://127.0.0.1:1",
        )
        .expect("app"),
    );
    let router = router(app);
    let documented = documented();
    assert!(documented.len() >= 14, "{documented:?}");
    for (path, methods) in &documented {
        for method in METHODS {
            let request = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).expect("method"))
                .uri(path)
                .body(Body::empty())
                .expect("request");
            let response = router.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            // A route's own 404 (a webhook endpoint that does not exist) is not a missing route.
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            let unrouted = String::from_utf8_lossy(&body).contains("route not found");
            if methods.contains(method) {
                assert!(
                    !unrouted && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but answers {status}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not documented but answers {status}"
                );
            }
        }
    }
    let unknown = Request::builder()
        .uri("/v1/nothing")
        .body(Body::empty())
        .expect("request");
    let status = router.oneshot(unknown).await.expect("infallible").status();
    assert_eq!(status, StatusCode::NOT_FOUND);
}
