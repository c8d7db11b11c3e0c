//! OAuth 2.0 run by the host (catalogue CR-11…13): tokens come from a mock authorization
//! server on loopback TLS, one token call serves every concurrent request of a credential,
//! tenants never share tokens, and a revoked refresh token fails closed without a retry storm.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use airlock_host_api::credentials::{CredentialScope, CredentialType, Secret};
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_store::{Storage as _, Store};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use tempfile::TempDir;

use crate::egress::{Egress, upstreams};
use airlock_store::Credentials;
use airlock_testkit::{Recorded, Reply, TestCa, Upstream};

const TOKEN_PATH: &str = "/oauth/token";

/// A client-credentials value for `client`.
fn client_secret(client: &str) -> String {
    json!({"client_id": client, "client_secret": format!("cs-{client}-canary")}).to_string()
}

/// The value of `name=` in a form body.
fn form_value(request: &Recorded, name: &str) -> Option<String> {
    String::from_utf8_lossy(&request.body)
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_string))
}

/// An authorization server that issues `at-<n>-<client>` tokens after `delay`, and an API
/// that echoes request headers.
fn server(delay: Duration) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let issued = AtomicUsize::new(0);
    move |request| {
        if request.path_and_query != TOKEN_PATH {
            return Reply::echo_headers(request);
        }
        let basic = request.header("authorization").join("");
        let decoded = basic
            .strip_prefix("Basic ")
            .and_then(|b| STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let client = decoded.split(':').next().unwrap_or("none").to_string();
        let n = issued.fetch_add(1, Ordering::SeqCst);
        Reply::json(
            200,
            json!({"access_token": format!("at-{n}-{client}"), "token_type": "Bearer", "expires_in": 3600}),
        )
        .delay(delay)
    }
}

fn token_calls(requests: &[Recorded]) -> Vec<&Recorded> {
    requests
        .iter()
        .filter(|r| r.path_and_query == TOKEN_PATH)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_invocations_cause_one_token_call() {
    let (mock, egress) = upstreams(
        &["oauth.allowed.test", "auth.allowed.test"],
        server(Duration::from_millis(300)),
    );
    let egress = Arc::new(egress);
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let egress = egress.clone();
        runs.spawn(async move {
            let input = json!({"url": "https://oauth.allowed.test/items"});
            let secret = client_secret("acme");
            egress
                .run_with("exfil", "fetch", input, &[("service", &secret)])
                .await
        });
    }
    let mut outputs = Vec::new();
    while let Some(ran) = runs.join_next().await {
        let ran = ran.expect("invocation task");
        let report = ran.result.expect("exfil reports").to_value();
        assert_eq!(report["attempts"][0]["outcome"], "ok 200", "{report}");
        outputs.push(report.to_string());
    }
    let requests = mock.requests();
    let tokens = token_calls(&requests);
    assert_eq!(
        tokens.len(),
        1,
        "single flight: one token call for 50 requests"
    );
    let token = &tokens[0];
    assert_eq!(token.method, "POST");
    assert_eq!(
        form_value(token, "grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(
        form_value(token, "scope").as_deref(),
        Some("items%3Aread%20items%3Awrite")
    );
    let api: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.path_and_query != TOKEN_PATH)
        .collect();
    assert_eq!(api.len(), 50);
    for request in api {
        assert_eq!(request.header("authorization"), ["Bearer at-0-acme"]);
    }
    for output in outputs {
        assert!(
            !output.contains("at-0-acme"),
            "the token reached the guest: {output}"
        );
        assert!(!output.contains("cs-acme-canary"));
    }
}

#[tokio::test]
async fn tenants_never_share_a_token() {
    let (mock, egress) = upstreams(
        &["oauth.allowed.test", "auth.allowed.test"],
        server(Duration::ZERO),
    );
    for tenant in ["acme", "globex", "acme"] {
        let scope = CredentialScope::new(tenant, "crm-sync");
        let secret = client_secret(tenant);
        let ran = egress
            .run_as(
                scope,
                "exfil",
                "fetch",
                json!({"url": "https://oauth.allowed.test/"}),
                &[("service", &secret)],
            )
            .await;
        assert!(ran.result.is_ok(), "{:?}", ran.result);
    }
    let requests = mock.requests();
    assert_eq!(
        token_calls(&requests).len(),
        2,
        "one per tenant; acme's is reused"
    );
    let sent: Vec<String> = requests
        .iter()
        .filter(|r| r.path_and_query != TOKEN_PATH)
        .map(|r| r.header("authorization").join(""))
        .collect();
    assert_eq!(
        sent,
        ["Bearer at-0-acme", "Bearer at-1-globex", "Bearer at-0-acme"]
    );
}

/// Slack: `oauth.v2.access` refreshes a rotating token (answering with Slack's `bot` type), and
/// `chat.postMessage` must see the refreshed token.
fn slack(revoked: bool) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |request| match request.path_and_query.as_str() {
        "/api/oauth.v2.access" if revoked => {
            Reply::json(200, json!({"ok": false, "error": "invalid_refresh_token"}))
        }
        "/api/oauth.v2.access" => Reply::json(
            200,
            json!({"ok": true, "access_token": "xoxe.xoxb-fresh", "token_type": "bot",
                   "expires_in": 43200, "refresh_token": "xoxe-1-rotated"}),
        ),
        _ => Reply::json(
            200,
            json!({"ok": true, "channel": "C024BE91L", "ts": "1700000000.000100"}),
        ),
    }
}

/// Runs slack-notifier's `post-alert` with a stored refresh token.
async fn post_alert(egress: &Egress) -> airlock_runtime::Invocation {
    let secret = json!({"client_id": "111.222", "client_secret": "slack-cs",
                        "refresh_token": "xoxe-1-original"})
    .to_string();
    let alert = json!({"channel": "C024BE91L", "text": "disk full", "severity": "critical"});
    egress
        .run_with("slack-notifier", "post-alert", alert, &[("slack", &secret)])
        .await
}

#[tokio::test]
async fn slack_notifier_posts_with_a_refreshed_token_it_never_sees() {
    let (mock, egress) = upstreams(&["slack.com"], slack(false));
    let ran = post_alert(&egress).await;
    let output = ran.result.as_ref().expect("posted").to_value();
    assert_eq!(output["ts"], "1700000000.000100");
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].path_and_query, "/api/oauth.v2.access");
    assert_eq!(
        form_value(&requests[0], "refresh_token").as_deref(),
        Some("xoxe-1-original")
    );
    assert_eq!(requests[1].path_and_query, "/api/chat.postMessage");
    assert_eq!(
        requests[1].header("authorization"),
        ["Bearer xoxe.xoxb-fresh"]
    );
    assert!(!format!("{:?} {:?}", ran.result, ran.log).contains("xoxe"));
}

#[tokio::test]
async fn a_revoked_refresh_token_fails_closed_once() {
    let (mock, egress) = upstreams(&["slack.com"], slack(true));
    for _ in 0..3 {
        let ran = post_alert(&egress).await;
        let error = ran.result.expect_err("cannot post without a token");
        assert_eq!(error.class(), "guest-error");
        assert_eq!(
            ran.egress[0].reason.as_deref(),
            Some("credential-needs-reauth")
        );
    }
    let requests = mock.requests();
    assert_eq!(
        requests.len(),
        1,
        "one refused refresh, then no retry storm"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.path_and_query != "/api/chat.postMessage")
    );
}

/// An authorization server with strict rotation: only the latest refresh token works, each use
/// issues the next (`rt-1`, `rt-2`, …), and reuse is `invalid_grant`.
fn rotating() -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let latest = std::sync::Mutex::new(0u32);
    move |request| {
        if request.path_and_query != "/api/oauth.v2.access" {
            return Reply::json(200, json!({"ok": true, "ts": "1700000000.000200"}));
        }
        let mut latest = latest.lock().expect("lock");
        if form_value(request, "refresh_token") != Some(format!("rt-{latest}")) {
            return Reply::json(400, json!({"error": "invalid_grant"}));
        }
        *latest += 1;
        Reply::json(
            200,
            json!({"access_token": format!("at-{latest}"), "token_type": "bot",
                   "expires_in": 3600, "refresh_token": format!("rt-{latest}")}),
        )
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_for_the_next_process() {
    let ca = TestCa::new().expect("test CA");
    let mock = Upstream::start(
        &ca,
        &["slack.com"],
        "127.0.0.2".parse().expect("ip"),
        rotating(),
    )
    .expect("upstream starts");
    let pins = [format!("slack.com={}", mock.addr())];
    let data = TempDir::new().expect("temp");
    let store = Store::open(data.path(), None).expect("store");
    let (tenant, installation): (TenantId, InstallationId) =
        ("acme".parse().expect("id"), "slack-1".parse().expect("id"));
    let value = json!({"client_id": "111.222", "client_secret": "cs", "refresh_token": "rt-0"});
    let secret = Secret::new(CredentialType::OAuth2, value.to_string()).expect("valid");
    store
        .set_credential(
            &tenant,
            &installation,
            "slack",
            vec!["https://slack.com".to_string()],
            &secret,
            CredentialType::OAuth2,
        )
        .expect("stored");
    let alert = json!({"channel": "C024BE91L", "text": "disk full"});
    // Two runtimes with their own token caches stand for a host restarting between calls.
    for expected in ["Bearer at-1", "Bearer at-2"] {
        let egress = Egress::new(&pins, true, Some(&ca));
        let scope = CredentialScope::new(tenant.to_string(), installation.to_string());
        let credentials = egress
            .runtime
            .credentials(scope, store.secrets(&tenant, &installation));
        let integration = egress.load("slack-notifier");
        let config = integration.validate_config(None).expect("no config");
        let ran = egress
            .runtime
            .invoke_as(
                &integration,
                &config,
                &egress.runtime.local_caller(credentials),
                "post-alert",
                &alert.to_string(),
            )
            .await;
        assert!(ran.result.is_ok(), "{:?} {:?}", ran.result, ran.egress);
        let posted = mock.requests().pop().expect("posted");
        assert_eq!(posted.header("authorization"), [expected]);
    }
    let listed = store
        .list_credentials(&tenant, &installation)
        .expect("list");
    assert!(listed[0].rotated.is_some(), "the rotation is recorded");
}
