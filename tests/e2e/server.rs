//! `airlock serve` end to end: the real binary on 127.0.0.1 (port 0), a real HTTP client, real
//! signed bundles. Every request is authorized from its key alone; another tenant's ids are not
//! found; load and a noisy neighbour lose no audit record and hold no one else up.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::operator::Operator;
use crate::serving::{
    Body, Server, TENANT_SCOPES, assert_trail_verifies, mapper_config, mapper_input, records_of,
};
use crate::support::{stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_authorized_from_its_key_alone() {
    let op = Operator::new();
    let mapper = op.example("contact-mapper", "contact_mapper.wasm");
    let server = Server::start(&op, &[], &[]);
    let digest = server.upload(&mapper).await;
    let acme = server.tenant("acme", &TENANT_SCOPES).await;
    let globex = server
        .tenant("globex", &["invoke", "installations:read", "audit:read"])
        .await;
    let invoke_only = server.key("acme", &["invoke"], None).await;
    let expiring = server.key("acme", &["invoke"], Some("1s")).await;
    let revoked = server.key("acme", &["invoke"], None).await;
    let revoked_id = revoked.split('_').nth(1).expect("key id").to_string();
    let reply = server
        .call(
            Method::DELETE,
            &format!("/v1/api-keys/{revoked_id}"),
            Some(&server.admin),
            Body::None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);

    let installed = server.install_mapper(&acme, &digest).await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    assert_eq!(installed.body["installation"]["tenant"], "acme");
    let action = "/v1/installations/mapper/actions/map-contact";
    let ok = server.post(action, &invoke_only, mapper_input()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["email"], "ada@example.com", "{}", ok.body);
    assert!(ok.record.is_some(), "the audit record's number is returned");
    // The caller may ask for the guest's log with the result; it is kept nowhere.
    let logged = server
        .post(&format!("{action}?log=true"), &invoke_only, mapper_input())
        .await;
    assert_eq!(logged.status, StatusCode::OK, "{}", logged.body);
    assert_eq!(logged.body["output"]["email"], "ada@example.com");
    assert_eq!(
        logged.body["log"]["lines"][0]["message"], "mapped contact",
        "{}",
        logged.body
    );

    // No key, another scheme, a malformed, expired or revoked key: 401, and nothing runs.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let unauthorized: [(Option<String>, &str); 5] = [
        (None, "send an API key"),
        (Some("Basic YWRtaW46YWRtaW4=".into()), "only Bearer"),
        (Some("Bearer airlock_nonsense".into()), "not valid"),
        (Some(format!("Bearer {expiring}")), "expired"),
        (Some(format!("Bearer {revoked}")), "revoked"),
    ];
    for (header, says) in &unauthorized {
        let mut request = server
            .http
            .post(format!("{}{action}", server.base))
            .body(mapper_input().to_string());
        if let Some(h) = header {
            request = request.header("authorization", h);
        }
        let response = request.send().await.expect("answer");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{header:?}");
        assert!(response.headers().contains_key("www-authenticate"));
        let body: Value = response.json_body().await;
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{header:?}: {body}"
        );
    }

    // A valid key without the scope, or not the admin's: 403.
    let reply = server.get("/v1/installations", &invoke_only).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("installations:read"))
    );
    let reply = server
        .post("/v1/tenants", &acme, json!({"id": "mine"}))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = server.get("/metrics", &acme).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // Another tenant's installation id is not found (not forbidden: existence is not told),
    // and naming the other tenant is refused whatever exists.
    let reply = server.post(action, &globex, mapper_input()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    let missing = server
        .post(
            "/v1/installations/nothing-here/actions/map-contact",
            &globex,
            mapper_input(),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.body["error"]["message"]
            .as_str()
            .map(|m| m.replace("mapper", "X")),
        missing.body["error"]["message"]
            .as_str()
            .map(|m| m.replace("nothing-here", "X")),
        "the same answer for another tenant's id and for none"
    );
    let reply = server.get("/v1/installations/mapper", &globex).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = server
        .post(&format!("{action}?tenant=acme"), &globex, mapper_input())
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = server.get("/v1/installations", &globex).await;
    assert_eq!(reply.body["installations"], json!([]), "{}", reply.body);

    // Audit is scoped to the key's tenant; a filter cannot widen it.
    let mine = server.get("/v1/audit", &globex).await;
    let records = mine.body["records"].as_array().expect("records");
    assert!(
        records.iter().all(|r| r.to_string().contains("globex")),
        "{}",
        mine.body
    );
    // Read through the tenant's index: only its own records are examined, and a time past
    // the last record examines none.
    assert_eq!(
        mine.body["examined"].as_u64(),
        Some(records.len() as u64),
        "{}",
        mine.body
    );
    let future = server
        .get("/v1/audit?since=2999-01-01T00:00:00Z", &globex)
        .await;
    assert_eq!(
        (&future.body["records"], &future.body["examined"]),
        (&json!([]), &json!(0)),
        "{}",
        future.body
    );
    let widened = server.get("/v1/audit?tenant=acme", &globex).await;
    assert_eq!(widened.status, StatusCode::FORBIDDEN);
    let theirs = server.get("/v1/audit", &acme).await;
    assert!(
        theirs.body["records"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["type"] == "invocation")),
        "{}",
        theirs.body
    );

    // The admin sees the refusals, each a security event with its reason.
    let refused = server
        .get("/v1/audit?security=true&limit=1000", &server.admin)
        .await;
    let reasons: Vec<String> = refused.body["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["type"] == "access-refused")
        .map(|r| r["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    for reason in [
        "no-key",
        "not-bearer",
        "invalid-key",
        "expired-key",
        "revoked-key",
        "admin-only",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }
    assert!(
        reasons.iter().any(|r| r.starts_with("missing-scope:")),
        "{reasons:?}"
    );

    // Failed attempts from one address are limited: after 10 a minute, 429 with Retry-After.
    let mut limited = None;
    for _ in 0..12 {
        let reply = server
            .get("/v1/installations", "airlock_0000000000000000_bad")
            .await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.expect("limited within 12 failures");
    assert!(limited.retry_after.is_some());
    assert_eq!(limited.authenticate, None);
    server.stop();
    assert_trail_verifies(&op);
    let refused = records_of(&op, "access-refused");
    assert_eq!(
        refused
            .iter()
            .filter(|r| r["reason"]
                .as_str()
                .is_some_and(|s| s.contains("now limited")))
            .count(),
        1,
        "crossing the limit is recorded once"
    );
}

/// `n` sequential mapper invocations by `key`; their latencies, sorted.
pub(crate) async fn quiet_calls(server: &Server, key: &str, n: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let at = Instant::now();
        let reply = server
            .post(
                "/v1/installations/mapper/actions/map-contact",
                key,
                mapper_input(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        latencies.push(at.elapsed());
    }
    latencies.sort();
    latencies
}

/// JSON of a reqwest response.
trait JsonBody {
    async fn json_body(self) -> Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> Value {
        let bytes = self.bytes().await.expect("body");
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }
}

const CANARY: &str = "canary-7f31c2-serve";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installations_get_only_their_grant_and_credentials_go_in_but_never_out() {
    let op = Operator::new();
    let ca = airlock_testkit::TestCa::new().expect("test CA");
    let mock = airlock_testkit::Upstream::start(
        &ca,
        &["vault.allowed.test"],
        crate::egress::UPSTREAM_IP,
        airlock_testkit::Reply::echo_headers,
    )
    .expect("upstream starts");
    let pem = ca
        .write_pem(op.data())
        .expect("CA written")
        .display()
        .to_string();
    let pin = format!("vault.allowed.test={}", mock.addr());
    let switches = [
        "--resolve",
        &pin,
        "--allow-private",
        "127.0.0.0/8",
        "--extra-root-ca",
        &pem,
    ];

    // Dev switches are refused unless confirmed, and so is plain HTTP beyond loopback.
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend(switches);
    let out = op.airlock(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--dev-insecure"));
    let out = op.airlock(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a loopback address"));

    let v1 = op.exfil("0.1.0", "");
    let v2 = op.exfil(
        "0.2.0",
        "[[egress]]\nurl = \"https://more.allowed.test\"\nmethods = [\"GET\"]\n",
    );
    let server = Server::start(&op, &switches, &["--dev-insecure"]);
    let (d1, d2) = (server.upload(&v1).await, server.upload(&v2).await);
    let key = server
        .tenant(
            "acme",
            &[
                "invoke",
                "installations:read",
                "installations:write",
                "credentials:write",
            ],
        )
        .await;
    let vault = json!({"egress": [{"url": "https://vault.allowed.test", "methods": ["GET"]}]});

    // A grant wider than the manifest is refused, naming the entry.
    for (grant, says) in [
        (
            json!({"egress": [{"url": "https://evil.test", "methods": ["GET"]}]}),
            "https://evil.test",
        ),
        (
            json!({"egress": [{"url": "https://vault.allowed.test", "methods": ["DELETE"]}]}),
            "DELETE",
        ),
    ] {
        let reply = server
            .post(
                "/v1/installations",
                &key,
                json!({"bundle": d1, "grant": grant}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.body
        );
        assert_eq!(reply.body["error"]["code"], "grant-refused");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says))
        );
    }
    let reply = server
        .post(
            "/v1/installations",
            &key,
            json!({"bundle": d1, "grant": vault}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let reply = server
        .post(
            "/v1/installations",
            &key,
            json!({"bundle": "00".repeat(32)}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    let reply = server
        .post(
            "/v1/installations",
            &key,
            json!({"bundle": "../../etc/passwd"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // Credentials: stored for a declared name, typed, never shown.
    let token = "/v1/installations/exfil/credentials/token";
    let put = async |path: &str, value: &str| {
        server
            .call(
                Method::PUT,
                path,
                Some(&key),
                Body::Json(json!({"value": value})),
            )
            .await
    };
    assert_eq!(put(token, CANARY).await.status, StatusCode::CREATED);
    let rotated = put(token, CANARY).await;
    assert_eq!(rotated.body["outcome"], "rotated");
    let bad = put(token, "abc\r\nX-Evil: 1").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.to_string().contains("carriage return at byte 3"),
        "{}",
        bad.body
    );
    assert!(!bad.body.to_string().contains("X-Evil"));
    let undeclared = put("/v1/installations/exfil/credentials/nope", CANARY).await;
    assert_eq!(undeclared.status, StatusCode::UNPROCESSABLE_ENTITY);
    let list = server
        .get("/v1/installations/exfil/credentials", &key)
        .await;
    assert_eq!(
        list.body["credentials"][0]["name"], "token",
        "{}",
        list.body
    );
    assert!(!list.body.to_string().contains(CANARY));

    // The host injects it; the guest's view is redacted; the caller never sees it.
    let fetch = server
        .post(
            "/v1/installations/exfil/actions/fetch",
            &key,
            json!({"url": "https://vault.allowed.test/"}),
        )
        .await;
    assert_eq!(fetch.status, StatusCode::OK, "{}", fetch.body);
    assert_eq!(
        mock.requests()[0].header("authorization"),
        [format!("Bearer {CANARY}")]
    );
    assert!(!fetch.body.to_string().contains(CANARY), "{}", fetch.body);
    let denied = server
        .post(
            "/v1/installations/exfil/actions/fetch",
            &key,
            json!({"url": "https://api.allowed.test/"}),
        )
        .await;
    assert_eq!(denied.status, StatusCode::OK, "{}", denied.body);
    assert!(
        denied.body.to_string().contains("HttpRequestDenied"),
        "{}",
        denied.body
    );
    assert_eq!(
        mock.requests().len(),
        1,
        "declared but not granted: never sent"
    );

    // An upgrade that asks for more waits; the old version keeps running until approved.
    let reply = server
        .post("/v1/installations", &key, json!({"bundle": d2}))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["outcome"], "pending");
    let shown = server.get("/v1/installations/exfil", &key).await;
    assert_eq!(shown.body["version"], "0.1.0");
    assert!(
        shown.body["pending"]["additions"]
            .to_string()
            .contains("more.allowed.test"),
        "{}",
        shown.body
    );
    let reply = server
        .post(
            "/v1/installations",
            &key,
            json!({"bundle": d1, "allow_downgrade": true}),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "downgrades are the operator's call"
    );
    let approved = server
        .post(
            "/v1/installations/exfil/approve",
            &key,
            json!({"grant": vault}),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["installation"]["version"], "0.2.0");
    let again = server
        .post(
            "/v1/installations/exfil/actions/fetch",
            &key,
            json!({"url": "https://vault.allowed.test/"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(mock.requests().len(), 2);

    // A change of config or grant alone: PATCH.
    let patched = server
        .call(
            Method::PATCH,
            "/v1/installations/exfil",
            Some(&key),
            Body::Json(json!({"grant": {"egress": []}})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["outcome"], "reconfigured");

    // Revoking the publisher key through the API stops the installation at once.
    let keys = server.get("/v1/trust", &server.admin).await;
    let id = keys.body["keys"][0]["key_id"]
        .as_str()
        .expect("key id")
        .to_string();
    let revoked = server
        .call(
            Method::DELETE,
            &format!("/v1/trust/{id}"),
            Some(&server.admin),
            Body::None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    let refused = server
        .post(
            "/v1/installations/exfil/actions/fetch",
            &key,
            json!({"url": "https://vault.allowed.test/"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(
        refused.body["error"]["reason"], "revoked-key",
        "{}",
        refused.body
    );
    assert_eq!(mock.requests().len(), 2);
    server.stop();
    assert_trail_verifies(&op);
    for file in crate::support::files_under(op.data()) {
        let bytes = std::fs::read(&file).expect("read");
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "{} holds the canary",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_invocations_from_twenty_clients_lose_nothing() {
    const TENANTS: usize = 4;
    const CLIENTS: usize = 20;
    const EACH: usize = 100;
    let op = Operator::new();
    let mapper = op.example("contact-mapper", "contact_mapper.wasm");
    let server = Server::start(&op, &[], &[]);
    let digest = server.upload(&mapper).await;
    let mut keys = Vec::new();
    for t in 0..TENANTS {
        let key = server
            .tenant(&format!("load-{t}"), &["invoke", "installations:write"])
            .await;
        let reply = server.install_mapper(&key, &digest).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        keys.push(key);
    }
    let server = std::sync::Arc::new(server);
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let server = server.clone();
        let key = keys[c % TENANTS].clone();
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(EACH);
            let mut failures = Vec::new();
            for _ in 0..EACH {
                let at = Instant::now();
                let reply = server
                    .post(
                        "/v1/installations/mapper/actions/map-contact",
                        &key,
                        mapper_input(),
                    )
                    .await;
                latencies.push(at.elapsed());
                if reply.status != StatusCode::OK {
                    failures.push(format!("{} {}", reply.status, reply.body));
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    for client in clients {
        let (l, f) = client.await.expect("client task");
        latencies.extend(l);
        failures.extend(f);
    }
    let elapsed = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    latencies.sort();
    let total = CLIENTS * EACH;
    let p = |q: f64| latencies[((total as f64 * q) as usize).min(total - 1)];
    eprintln!(
        "load: {total} invocations, {CLIENTS} clients, {TENANTS} tenants in {elapsed:.2?}: \
         {:.0}/s, p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        total as f64 / elapsed.as_secs_f64(),
        p(0.50),
        p(0.99),
        latencies[total - 1]
    );
    let server = std::sync::Arc::into_inner(server).expect("clients are done");
    server.stop();
    assert_trail_verifies(&op);
    let invocations: Vec<Value> = records_of(&op, "invocation")
        .into_iter()
        .filter(|r| r["trigger"] == "api")
        .collect();
    assert_eq!(invocations.len(), total, "one audit record per invocation");
    for t in 0..TENANTS {
        let tenant = format!("load-{t}");
        let n = invocations
            .iter()
            .filter(|r| r["tenant"] == tenant.as_str())
            .count();
        assert_eq!(n, total / TENANTS, "{tenant}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_tenant_fills_its_own_queue_and_holds_no_one_else_up() {
    let op = Operator::new();
    let hostile = op.example("hostile", "hostile.wasm");
    let mapper = op.example("contact-mapper", "contact_mapper.wasm");
    let server = Server::start(
        &op,
        &[],
        &["--tenant-concurrent", "2", "--tenant-queue", "2"],
    );
    let (dh, dm) = (server.upload(&hostile).await, server.upload(&mapper).await);
    let noisy = server
        .tenant("noisy", &["invoke", "installations:write"])
        .await;
    let quiet = server
        .tenant("quiet", &["invoke", "installations:write"])
        .await;
    let reply = server
        .post("/v1/installations", &noisy, json!({"bundle": dh}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let reply = server
        .post(
            "/v1/installations",
            &quiet,
            json!({"bundle": dm, "installation": "mapper", "config": mapper_config()}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);

    let baseline = quiet_calls(&server, &quiet, 20).await;

    // Eight infinite loops at once: two run, two wait, four are refused at once.
    let server = std::sync::Arc::new(server);
    let mut loops = Vec::new();
    for _ in 0..8 {
        let (server, noisy) = (server.clone(), noisy.clone());
        loops.push(tokio::spawn(async move {
            let reply = server
                .post(
                    "/v1/installations/hostile/actions/spin-forever",
                    &noisy,
                    json!({}),
                )
                .await;
            (Instant::now(), reply)
        }));
    }
    // Wait until both of its slots are busy.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = server
            .http
            .get(format!("{}/metrics", server.base))
            .bearer_auth(&server.admin)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metrics.contains("airlock_server_invocations_running 2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the loops never started:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Meanwhile the quiet tenant's invocations run, each done long before the first loop is.
    let quiet_start = Instant::now();
    let under_load = quiet_calls(&server, &quiet, 20).await;
    let last_quiet = Instant::now();
    let mut busy = 0;
    let mut first_loop_done = None::<Instant>;
    for handle in loops {
        let (at, reply) = handle.await.expect("loop task");
        match reply.status {
            StatusCode::TOO_MANY_REQUESTS => {
                busy += 1;
                assert_eq!(reply.retry_after.as_deref(), Some("1"));
                assert_eq!(reply.body["error"]["code"], "busy");
            }
            StatusCode::GATEWAY_TIMEOUT => {
                assert_eq!(
                    reply.body["error"]["code"], "limit-timeout",
                    "{}",
                    reply.body
                );
                first_loop_done = Some(first_loop_done.map_or(at, |t| t.min(at)));
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!(busy, 4, "two run, two queue, the rest are refused");
    let first_loop_done = first_loop_done.expect("the loops ended by their timeout");
    eprintln!(
        "noisy neighbour: quiet tenant p50 {:?} / max {:?} alone, p50 {:?} / max {:?} beside two \
         infinite loops; first loop stopped after {:?}",
        baseline[baseline.len() / 2],
        baseline[baseline.len() - 1],
        under_load[under_load.len() / 2],
        under_load[under_load.len() - 1],
        first_loop_done.duration_since(quiet_start)
    );
    assert!(
        last_quiet < first_loop_done,
        "the quiet tenant finished before the noisy one's first loop was stopped"
    );
    let server = std::sync::Arc::into_inner(server).expect("tasks are done");
    server.stop();
}

/// `/metrics` is one OpenMetrics exposition: the trail's counters and the server's own gauges,
/// from one registry, served as OpenMetrics (docs/api.md), every line valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_one_valid_openmetrics_exposition() {
    let op = Operator::new();
    let mapper = op.example("contact-mapper", "contact_mapper.wasm");
    let server = Server::start(&op, &[], &[]);
    let digest = server.upload(&mapper).await;
    let acme = server.tenant("acme", &TENANT_SCOPES).await;
    let installed = server.install_mapper(&acme, &digest).await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let action = "/v1/installations/mapper/actions/map-contact";
    let ok = server.post(action, &acme, mapper_input()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);

    let response = server
        .http
        .get(format!("{}/metrics", server.base))
        .bearer_auth(&server.admin)
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.expect("text");
    let parsed =
        airlock_testkit::openmetrics::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        parsed.value("airlock_invocations_total", &[("outcome", "ok")]),
        Some(1.0),
        "{text}"
    );
    for (family, kind) in [
        ("airlock_server_invocations_running", "gauge"),
        ("airlock_server_busy", "counter"),
        ("airlock_audit_available", "gauge"),
        ("airlock_webhook_refusals_unrecorded", "counter"),
        ("airlock_cluster_nodes", "gauge"),
        ("airlock_server_max_concurrent", "gauge"),
        ("airlock_server_tenant_concurrent", "gauge"),
        ("airlock_audit_lost_races", "counter"),
    ] {
        assert_eq!(
            parsed.types.get(family).map(String::as_str),
            Some(kind),
            "{text}"
        );
    }
    assert_eq!(
        parsed.value("airlock_server_invocations_running", &[]),
        Some(0.0)
    );
    assert_eq!(parsed.value("airlock_server_busy_total", &[]), Some(0.0));
    assert_eq!(parsed.value("airlock_audit_available", &[]), Some(1.0));
    // One node on the embedded store: the caps are its own, its chain head uncontended.
    assert_eq!(parsed.value("airlock_cluster_nodes", &[]), Some(1.0));
    assert_eq!(
        parsed.value("airlock_server_max_concurrent", &[]),
        Some(64.0)
    );
    assert_eq!(
        parsed.value("airlock_server_tenant_concurrent", &[]),
        Some(8.0)
    );
    assert_eq!(
        parsed.value("airlock_audit_lost_races_total", &[]),
        Some(0.0)
    );
    server.stop();
}

/// What the acceptance check does: `curl -sf $BASE/v1/openapi.json`, with no key, is
/// `docs/openapi.json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_without_a_key_and_is_docs_openapi_json() {
    let op = Operator::new();
    let server = Server::start(&op, &[], &[]);
    let reply = server
        .call(Method::GET, "/v1/openapi.json", None, Body::None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .expect("docs/openapi.json");
    let docs: Value = serde_json::from_str(&docs).expect("docs/openapi.json is JSON");
    assert_eq!(reply.body, docs);
    assert_eq!(
        reply.body["paths"]["/v1/openapi.json"]["get"]["security"],
        json!([])
    );
    server.stop();
}

/// While the server holds the store, the CLI's listing verbs read through its operator socket
/// (mode 0600, in the data dir) and see what the API changed; a verb that would change state
/// refuses and names the API. Once the server stops the socket is gone and the CLI opens the
/// store itself again, with the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_through_the_running_server_and_changes_nothing_behind_it() {
    use std::os::unix::fs::PermissionsExt as _;

    let op = Operator::new();
    let mapper = op.example("contact-mapper", "contact_mapper.wasm");
    let server = Server::start(&op, &[], &[]);
    let digest = server.upload(&mapper).await;
    let acme = server.tenant("acme", &TENANT_SCOPES).await;
    let installed = server.install_mapper(&acme, &digest).await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let run = std::fs::metadata(op.data().join("run")).expect("the socket's directory");
    assert_eq!(run.permissions().mode() & 0o777, 0o700);
    let socket = op.data().join("run").join("serve.sock");
    let mode = std::fs::metadata(&socket)
        .expect("the socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let listed = op.airlock(&["install", "list", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let served: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(served[0]["tenant"], "acme", "{served}");
    assert_eq!(served[0]["installation"], "mapper", "{served}");
    let tenants = op.airlock(&["tenant", "list"]);
    assert!(tenants.status.success(), "{}", stderr(&tenants));
    assert!(
        stdout(&tenants).contains("1 installation(s)"),
        "{}",
        stdout(&tenants)
    );
    let trusted = op.airlock(&["trust", "list", "--json"]);
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    let keys: Value = serde_json::from_slice(&trusted.stdout).expect("JSON");
    assert_eq!(keys[0]["publisher"], "Airlock Examples", "{keys}");

    let refused = op.airlock(&["tenant", "create", "other"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("airlock serve is running"),
        "{}",
        stderr(&refused)
    );

    server.stop();
    assert!(
        !socket.exists(),
        "the server removes its socket when it stops"
    );
    let after = op.airlock(&["install", "list", "--json"]);
    assert!(after.status.success(), "{}", stderr(&after));
    let stored: Value = serde_json::from_slice(&after.stdout).expect("JSON");
    assert_eq!(stored, served);
    let after = op.airlock(&["trust", "list", "--json"]);
    let stored: Value = serde_json::from_slice(&after.stdout).expect("JSON");
    assert_eq!(stored, keys);
}

/// `/readyz` needs no key, reads the store and the trail, and says ready with nothing failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reads_the_store_and_the_trail_without_a_key() {
    let op = Operator::new();
    let server = Server::start(&op, &[], &[]);
    let reply = server.call(Method::GET, "/readyz", None, Body::None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, json!({"status": "ready", "failing": []}));
    server.stop();
}
