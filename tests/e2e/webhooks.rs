//! Inbound webhooks end to end (catalogue WH-01…12): the real server, endpoints made through
//! the API and the CLI, deliveries signed here the way Standard Webhooks, GitHub and Slack
//! sign them, sent as raw bytes.

use std::io::{Read, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::operator::Operator;
use crate::serving::{
    Body, Server, TENANT_SCOPES, assert_trail_verifies, mapper_config, mapper_input, records_of,
};
use crate::support::stdout;

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Standard Webhooks headers for `body` under `secret` (`whsec_…`).
pub(crate) fn standard(
    secret: &str,
    id: &str,
    ts: u64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64");
    let ts = ts.to_string();
    let signature = mac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts),
        (
            "webhook-signature",
            format!("v1,{}", STANDARD.encode(signature)),
        ),
    ]
}

/// GitHub's headers for `body` under `secret`.
fn github(secret: &str, delivery: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("x-github-delivery", delivery.to_string()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hex::encode(mac(secret.as_bytes(), &[body]))),
        ),
    ]
}

/// Slack's headers for `body` under `secret`, at `ts`.
fn slack(secret: &str, ts: u64, body: &[u8]) -> Vec<(&'static str, String)> {
    let ts = ts.to_string();
    let signature = mac(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body]);
    vec![
        ("x-slack-request-timestamp", ts),
        (
            "x-slack-signature",
            format!("v0={}", hex::encode(signature)),
        ),
    ]
}

/// What a delivery got back.
pub(crate) struct Delivered {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    /// `airlock-audit-record`: the number of the run's invocation record.
    pub(crate) record: Option<u64>,
}

impl Delivered {
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub(crate) fn reason(&self) -> &str {
        self.body["error"]["reason"].as_str().unwrap_or("")
    }
}

/// Posts `body` with `headers` to `path`, no API key.
pub(crate) async fn deliver(
    server: &Server,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Delivered {
    let mut request = server
        .http
        .post(format!("{}{path}", server.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let record = response
        .headers()
        .get("airlock-audit-record")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bytes = response.bytes().await.expect("body");
    Delivered {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        record,
    }
}

/// Writes `request` on a fresh connection and returns the response's status line: for requests
/// whose body is deliberately never (fully) sent.
async fn raw_exchange(address: String, request: String) -> String {
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream.write_all(request.as_bytes()).expect("send");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut reply = [0u8; 64];
        let n = stream.read(&mut reply).expect("a response");
        String::from_utf8_lossy(&reply[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    })
    .await
    .expect("join")
}

/// A server with contact-mapper installed for `acme` as `mapper`; returns it and acme's key.
async fn mapper_server(op: &Operator) -> (Server, String) {
    let mapper = op.example("contact-mapper", "contact_mapper.wasm");
    let server = Server::start(op, &[], &[]);
    let digest = server.upload(&mapper).await;
    let acme = server.tenant("acme", &TENANT_SCOPES).await;
    let installed = server.install_mapper(&acme, &digest).await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    (server, acme)
}

/// An endpoint running the mapper's action, made through the API; returns (path, secret, id).
async fn mapper_endpoint(server: &Server, key: &str) -> (String, String, String) {
    endpoint(
        server,
        key,
        json!({"installation": "mapper", "action": "map-contact"}),
    )
    .await
}

/// Creates an endpoint through the API; returns (path, secret, id).
pub(crate) async fn endpoint(
    server: &Server,
    key: &str,
    request: Value,
) -> (String, String, String) {
    let reply = server.post("/v1/webhooks", key, request).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let field = |name: &str| reply.body[name].as_str().expect(name).to_string();
    (field("path"), field("secret"), field("id"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_run_the_action_once_and_everything_else_is_refused_unparsed() {
    let op = Operator::new();
    let (server, acme) = mapper_server(&op).await;
    let (path, secret, id) = mapper_endpoint(&server, &acme).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let key_bytes = STANDARD.decode(&secret[6..]).expect("base64");
    assert_eq!(key_bytes.len(), 32, "32 random bytes (WH-09)");
    assert_eq!(path, format!("/v1/hooks/{id}"));
    let listed = server.get("/v1/webhooks", &acme).await;
    assert_eq!(listed.body["webhooks"][0]["id"], id.as_str());
    assert!(
        !listed.body.to_string().contains(&secret[6..]),
        "the secret is shown once, never listed"
    );
    let body = serde_json::to_vec(&mapper_input()).expect("JSON");

    // WH-01: accepted and run, with the action's output as the response.
    let valid = standard(&secret, "msg_1", now(), &body);
    let first = deliver(&server, &path, &valid, &body).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["email"], "ada@example.com");
    // WH-04: the same delivery again, at once and later, is never run twice.
    for _ in 0..2 {
        let again = deliver(&server, &path, &valid, &body).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
        assert_eq!(again.code(), "duplicate-delivery");
    }

    // WH-02: one byte changed; re-serialized with other whitespace; a BOM.
    let mut flipped = body.clone();
    flipped[10] ^= 0x01;
    let pretty = serde_json::to_vec_pretty(&mapper_input()).expect("JSON");
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(&body);
    for tampered in [&flipped, &pretty, &bom] {
        let headers = standard(&secret, "msg_2", now(), &body);
        let refused = deliver(&server, &path, &headers, tampered).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
        assert_eq!(refused.reason(), "signature-mismatch");
    }
    // WH-03: 301 s old or ahead is refused; 299 s old is accepted.
    for (ts, want) in [
        (now() - 301, StatusCode::UNAUTHORIZED),
        (now() + 301, StatusCode::UNAUTHORIZED),
        (now() - 299, StatusCode::OK),
    ] {
        let headers = standard(&secret, &format!("msg_ts_{ts}"), ts, &body);
        let reply = deliver(&server, &path, &headers, &body).await;
        assert_eq!(reply.status, want, "{}", reply.body);
    }
    // WH-06: no signature, an unsupported algorithm only.
    let unsigned = deliver(&server, &path, &valid[..2], &body).await;
    assert_eq!(unsigned.reason(), "missing-header");
    let mut ed25519 = standard(&secret, "msg_3", now(), &body);
    ed25519[2].1 = "v1a,AAAA".into();
    let refused = deliver(&server, &path, &ed25519, &body).await;
    assert_eq!(refused.reason(), "algorithm-not-accepted");

    // WH-12: a malformed body with a bad signature is refused for its signature, unparsed; with
    // a good one it reaches the action's input validation.
    let malformed = b"{not json";
    let other_secret = format!("whsec_{}", STANDARD.encode([7u8; 32]));
    let malformed_under = async |secret: &str, id: &str| {
        let headers = standard(secret, id, now(), malformed);
        deliver(&server, &path, &headers, malformed).await
    };
    let forged = malformed_under(&other_secret, "msg_4").await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{}", forged.body);
    assert_eq!(forged.reason(), "signature-mismatch");
    let signed = malformed_under(&secret, "msg_5").await;
    assert_eq!(
        signed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        signed.body
    );
    assert_eq!(signed.code(), "input-rejected", "{}", signed.body);
    // A delivery the action refused stays consumed; one that failed on our side (5xx: here
    // the guest's own error) is released, so the sender's retry runs instead of meeting 409.
    let again = malformed_under(&secret, "msg_5").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    let unreachable =
        serde_json::to_vec(&json!({"Id": "c-9", "FirstName": "Nobody"})).expect("JSON");
    let headers = standard(&secret, "msg_6", now(), &unreachable);
    for _ in 0..2 {
        let failed = deliver(&server, &path, &headers, &unreachable).await;
        assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", failed.body);
        assert_eq!(failed.code(), "guest-error", "{}", failed.body);
    }

    // WH-11: another tenant cannot see or manage the endpoint; unknown ids are not found.
    let globex = server
        .tenant(
            "globex",
            &["invoke", "installations:read", "installations:write"],
        )
        .await;
    let theirs = server
        .call(
            Method::POST,
            &format!("/v1/webhooks/{id}/rotate"),
            Some(&globex),
            Body::None,
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{}", theirs.body);
    let listed = server.get("/v1/webhooks", &globex).await;
    assert_eq!(listed.body["webhooks"], json!([]));
    let unknown = format!("/v1/hooks/wh-{}", "0".repeat(32));
    let headers = standard(&secret, "msg_6", now(), &body);
    assert_eq!(
        deliver(&server, &unknown, &headers, &body).await.status,
        StatusCode::NOT_FOUND
    );

    server.stop();
    assert_trail_verifies(&op);
    let runs: Vec<Value> = records_of(&op, "invocation")
        .into_iter()
        .filter(|r| r["trigger"] == "webhook")
        .collect();
    // msg_1, the 299-s-old one, msg_5 (refused by the input schema, but run), and msg_6 twice
    // (its guest error released it).
    assert_eq!(runs.len(), 5, "{runs:#?}");
    let refused = records_of(&op, "webhook-refused");
    let reasons: Vec<&str> = refused
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"replayed"), "{reasons:?}");
    assert!(
        reasons.contains(&"timestamp-outside-tolerance"),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"missing-header webhook-signature"),
        "{reasons:?}"
    );
    assert!(
        refused
            .iter()
            .all(|r| r["tenant"] == "acme" && r["endpoint"] == id.as_str())
    );
    let trail = stdout(&op.ok(&["audit", "export"]));
    for customer in ["Lovelace", "LOVELACE", "Analytical", &secret[6..]] {
        assert!(!trail.contains(customer), "{customer} in the trail");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_overlaps_then_retires_the_old_secret() {
    let op = Operator::new();
    let (server, acme) = mapper_server(&op).await;
    let (path, first, id) = mapper_endpoint(&server, &acme).await;
    let body = serde_json::to_vec(&mapper_input()).expect("JSON");
    let mut n = 0;
    let mut status_under = async |secret: &str| {
        n += 1;
        let headers = standard(secret, &format!("rot_{n}"), now(), &body);
        deliver(&server, &path, &headers, &body).await.status
    };
    let rotate_path = format!("/v1/webhooks/{id}/rotate");
    let rotate =
        |overlap: u64| server.post(&rotate_path, &acme, json!({"overlap_seconds": overlap}));
    // WH-08: during the overlap both secrets verify.
    let rotated = rotate(3600).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let second = rotated.body["secret"].as_str().expect("secret").to_string();
    assert_ne!(first, second);
    assert_eq!(rotated.body["secrets"].as_array().map(Vec::len), Some(2));
    assert_eq!(status_under(&first).await, StatusCode::OK);
    assert_eq!(status_under(&second).await, StatusCode::OK);
    // Rotated again with no overlap: only the newest verifies.
    let rotated = rotate(0).await;
    let third = rotated.body["secret"].as_str().expect("secret").to_string();
    assert_eq!(rotated.body["secrets"].as_array().map(Vec::len), Some(1));
    assert_eq!(status_under(&first).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_under(&second).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_under(&third).await, StatusCode::OK);
    let too_long = rotate(8 * 24 * 3600).await;
    assert_eq!(too_long.status, StatusCode::UNPROCESSABLE_ENTITY);

    // WH-09: only Slack takes a secret, and not a weak or reused one.
    let offered = server
        .post(
            "/v1/webhooks",
            &acme,
            json!({"installation": "mapper", "action": "map-contact", "secret": "whsec_mine"}),
        )
        .await;
    assert_eq!(
        offered.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        offered.body
    );
    let weak = server
        .post(
            "/v1/webhooks",
            &acme,
            json!({"installation": "mapper", "action": "map-contact", "scheme": "slack", "secret": "abc123"}),
        )
        .await;
    assert_eq!(
        weak.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        weak.body
    );
    let signing = "8f742231b10e8888abcd99yyyzzz85a5";
    let slack_request = json!({"installation": "mapper", "action": "map-contact", "scheme": "slack", "secret": signing});
    let (slack_path, shown, _) = endpoint(&server, &acme, slack_request.clone()).await;
    assert_eq!(shown, signing);
    let reused = server.post("/v1/webhooks", &acme, slack_request).await;
    assert_eq!(reused.status, StatusCode::CONFLICT, "{}", reused.body);
    let no_action = server
        .post(
            "/v1/webhooks",
            &acme,
            json!({"installation": "mapper", "action": "drop-tables"}),
        )
        .await;
    assert_eq!(no_action.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Slack's v0 scheme: signed, accepted once; a replay of the same request is refused.
    let headers = slack(signing, now(), &body);
    let ok = deliver(&server, &slack_path, &headers, &body).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let replay = deliver(&server, &slack_path, &headers, &body).await;
    assert_eq!(replay.status, StatusCode::CONFLICT);
    let stale = deliver(
        &server,
        &slack_path,
        &slack(signing, now() - 400, &body),
        &body,
    )
    .await;
    assert_eq!(stale.reason(), "timestamp-outside-tolerance");

    // Deleted: deliveries are not found.
    let deleted = server
        .call(
            Method::DELETE,
            &format!("/v1/webhooks/{id}"),
            Some(&acme),
            Body::None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(status_under(&third).await, StatusCode::NOT_FOUND);
    server.stop();
    let changes = records_of(&op, "webhook-changed");
    let kinds: Vec<&str> = changes
        .iter()
        .filter_map(|r| r["change"].as_str())
        .collect();
    assert_eq!(kinds, ["set", "rotated", "rotated", "set", "deleted"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_deliveries_made_with_the_cli_are_deduplicated_by_signature() {
    let op = Operator::new();
    let mapper = op.example("contact-mapper", "contact_mapper.wasm");
    let config = op.keys.path().join("config.json");
    std::fs::write(&config, mapper_config().to_string()).expect("config");
    let installed = op.install(
        &mapper,
        &[
            "--installation",
            "mapper",
            "--config",
            &format!("@{}", config.display()),
        ],
    );
    assert_eq!(
        installed.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&installed)
    );
    let out = op.ok(&[
        "webhook",
        "create",
        "--tenant",
        "acme",
        "--installation",
        "mapper",
        "--action",
        "map-contact",
        "--scheme",
        "github",
    ]);
    let secret = stdout(&out).trim().to_string();
    assert!(secret.starts_with("whsec_"));
    let listed: Value = serde_json::from_str(&stdout(
        &op.ok(&["webhook", "list", "--tenant", "acme", "--json"]),
    ))
    .expect("JSON");
    let path = listed[0]["path"].as_str().expect("path").to_string();
    assert!(!listed.to_string().contains(&secret));
    let bad = op.airlock(&[
        "webhook",
        "create",
        "--tenant",
        "acme",
        "--installation",
        "mapper",
        "--action",
        "nope",
    ]);
    assert_eq!(bad.status.code(), Some(2));

    let server = Server::start(&op, &[], &[]);
    let body = serde_json::to_vec(&mapper_input()).expect("JSON");
    let headers = github(&secret, "72d3162e-cc78-11e3-81ab-4c9367dc0958", &body);
    let ok = deliver(&server, &path, &headers, &body).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    // WH-05: GitHub signs no timestamp and no delivery id; the signature is remembered for 7
    // days, so a replay under a fresh `X-GitHub-Delivery` is refused too.
    let replay = deliver(&server, &path, &headers, &body).await;
    assert_eq!(replay.status, StatusCode::CONFLICT);
    let mut renamed = headers.clone();
    renamed[0].1 = "a-brand-new-delivery-id".into();
    let replay = deliver(&server, &path, &renamed, &body).await;
    assert_eq!(replay.status, StatusCode::CONFLICT, "{}", replay.body);
    let sha1 = vec![
        ("x-github-delivery", "d-2".to_string()),
        ("x-hub-signature", format!("sha1={}", "0".repeat(40))),
    ];
    assert_eq!(
        deliver(&server, &path, &sha1, &body).await.reason(),
        "algorithm-not-accepted"
    );
    let upper = vec![
        ("x-github-delivery", "d-3".to_string()),
        (
            "x-hub-signature-256",
            headers[1].1.to_uppercase().replace("SHA256=", "sha256="),
        ),
    ];
    assert_eq!(
        deliver(&server, &path, &upper, &body).await.reason(),
        "malformed-header"
    );

    // WH-10: too large is refused before a byte of the body is sent (a client still writing
    // would race the server's close); a trickled body times out.
    let address = server.base.trim_start_matches("http://").to_string();
    let oversized = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        (1 << 20) + 1
    );
    let status_line = raw_exchange(address.clone(), oversized).await;
    assert!(status_line.contains("413"), "{status_line}");
    let started = Instant::now();
    let trickle = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{{");
    let status_line = raw_exchange(address, trickle).await;
    assert!(status_line.contains("408"), "{status_line}");
    assert!(started.elapsed() < Duration::from_secs(20));
    server.stop();

    let out = op.ok(&[
        "webhook",
        "rotate",
        "--tenant",
        "acme",
        listed[0]["id"].as_str().expect("id"),
        "--overlap",
        "1h",
    ]);
    assert!(stdout(&out).trim().starts_with("whsec_"));
    op.ok(&[
        "webhook",
        "delete",
        "--tenant",
        "acme",
        listed[0]["id"].as_str().expect("id"),
    ]);
    let listed = stdout(&op.ok(&["webhook", "list", "--tenant", "acme", "--json"]));
    assert_eq!(listed.trim(), "[]");
    assert_trail_verifies(&op);
}

/// An endpoint's secret lets its holder run the action, so a key that may not invoke can
/// neither make an endpoint nor rotate one; and a delivery to no endpoint is refused before
/// its body is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_secret_needs_the_invoke_scope_and_unknown_endpoints_read_no_body() {
    let op = Operator::new();
    let (server, acme) = mapper_server(&op).await;
    let manager = server
        .key("acme", &["installations:read", "installations:write"], None)
        .await;
    let request = json!({"installation": "mapper", "action": "map-contact"});
    let refused = server.post("/v1/webhooks", &manager, request).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`invoke`")),
        "{}",
        refused.body
    );
    let (path, secret, id) = mapper_endpoint(&server, &acme).await;
    let rotate = format!("/v1/webhooks/{id}/rotate");
    let refused = server
        .call(Method::POST, &rotate, Some(&manager), Body::None)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    // Managing without a secret still works with installations:write alone.
    let listed = server.get("/v1/webhooks", &manager).await;
    assert_eq!(listed.body["webhooks"][0]["id"], id.as_str());
    let body = serde_json::to_vec(&mapper_input()).expect("JSON");
    let headers = standard(&secret, "msg_1", now(), &body);
    assert_eq!(
        deliver(&server, &path, &headers, &body).await.status,
        StatusCode::OK,
        "the secret from creation still verifies"
    );

    // The head of a delivery to an endpoint that does not exist, its body never sent: 404 at
    // once, not a wait for the body.
    let unknown = format!("/v1/hooks/wh-{}", "0".repeat(32));
    let started = Instant::now();
    let head = format!("POST {unknown} HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n");
    let address = server.base.trim_start_matches("http://").to_string();
    let status_line = raw_exchange(address, head).await;
    assert!(status_line.contains("404"), "{status_line}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered before the body timeout"
    );
    server.stop();
    assert_trail_verifies(&op);
    let reasons: Vec<Value> = records_of(&op, "access-refused")
        .into_iter()
        .map(|r| r["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        vec![json!("missing-scope:invoke"), json!("missing-scope:invoke")]
    );
}
