//! Credential injection end to end (security catalogue §5.3): the `exfil` and `github-issues`
//! guests call TLS mocks on loopback; the host injects each credential on exactly the requests
//! its rule matches and scrubs every echo of it before the guest reads a byte. A canary value
//! must never reach guest output, guest memory or the guest log.

use std::io::Write;

use airlock_runtime::{Invocation, Output};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::egress::upstreams;
use airlock_testkit::{Recorded, Reply};

const CANARY: &str = "canary-7f3a9c2e-tok";

/// The exfil report, which every exfil action returns.
fn report(ran: &Invocation) -> Value {
    ran.result
        .as_ref()
        .expect("exfil reports, never fails")
        .to_value()
}

/// Asserts `needle` appears nowhere the guest could have put it: output, log, or (when the
/// report holds a memory scan) its linear memory.
fn assert_unseen(ran: &Invocation, needle: &str) {
    let output = format!("{:?}", ran.result);
    assert!(
        !output.contains(needle),
        "guest output holds {needle:?}: {output}"
    );
    let log = format!("{:?}", ran.log);
    assert!(!log.contains(needle), "guest log holds {needle:?}");
    if let Ok(report) = ran.result.as_ref().map(Output::to_value)
        && let Some(hits) = report.get("memory_hits")
    {
        assert_eq!(hits, 0, "guest memory holds {needle:?}");
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

/// A `fetch` input that also scans guest memory for `canary`.
fn fetch_scanning(url: &str, canary: &str) -> Value {
    let mask = 0x5a;
    let masked: String = canary
        .bytes()
        .map(|b| format!("{:02x}", b ^ mask))
        .collect();
    json!({"url": url, "scan": {"masked": masked, "mask": mask}})
}

/// Echoes the request headers in the body, in a response header and in `Location`.
fn echo_everywhere(request: &Recorded) -> Reply {
    let auth = request.header("authorization").join(",");
    Reply::echo_headers(request)
        .header("x-echo", &auth)
        .header("location", &format!("https://evil.test/?t={auth}"))
        .chunked()
}

#[tokio::test]
async fn a_bearer_token_goes_out_once_and_every_echo_is_redacted() {
    let (mock, egress) = upstreams(&["vault.allowed.test"], echo_everywhere);
    let ran = egress
        .run_with(
            "exfil",
            "fetch",
            fetch_scanning("https://vault.allowed.test/headers", CANARY),
            &[("token", CANARY)],
        )
        .await;
    let report = report(&ran);
    assert_eq!(report["attempts"][0]["outcome"], "ok 200", "{report}");
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        [format!("Bearer {CANARY}")],
        "exactly one injected header"
    );
    assert_eq!(seen[0].header("accept-encoding"), ["identity"]);
    assert_unseen(&ran, CANARY);
    assert_eq!(report["memory_hits"], 0);
    let body = report["body"].as_str().expect("body");
    assert!(body.contains("Bearer [REDACTED]"), "{body}");
    let headers = report["headers"].to_string();
    assert!(
        headers.contains("https://evil.test/?t=Bearer [REDACTED]"),
        "{headers}"
    );
    assert_eq!(ran.redactions, 3, "body, x-echo and location");
    assert_eq!(ran.egress[0].redactions, 3, "counted on the exchange too");
    assert_eq!(ran.egress[0].credential.as_deref(), Some("token"));

    // The scan finds what is there: the redacted echo the guest did receive.
    let control = egress
        .run_with(
            "exfil",
            "fetch",
            fetch_scanning("https://vault.allowed.test/headers", "Bearer [REDACTED]"),
            &[("token", CANARY)],
        )
        .await;
    assert!(self::report(&control)["memory_hits"].as_u64() > Some(0));
}

#[tokio::test]
async fn a_compressed_echo_is_decoded_and_redacted() {
    let (mock, egress) = upstreams(&["vault.allowed.test"], |request| {
        let echo = format!("token={}", request.header("authorization").join(","));
        Reply::bytes(200, gzip(echo.repeat(500).as_bytes()))
            .header("content-encoding", "gzip")
            .chunked()
    });
    let ran = egress
        .run_with(
            "exfil",
            "fetch",
            json!({"url": "https://vault.allowed.test/gz"}),
            &[("token", CANARY)],
        )
        .await;
    let report = report(&ran);
    assert_eq!(report["attempts"][0]["outcome"], "ok 200", "{report}");
    assert_eq!(mock.requests().len(), 1);
    let body = report["body"].as_str().expect("decoded body");
    assert!(body.starts_with("token=Bearer [REDACTED]"), "{body}");
    assert_unseen(&ran, CANARY);
    assert_eq!(ran.redactions, 500);
    let headers = report["headers"].to_string();
    assert!(!headers.contains("content-encoding"), "{headers}");
}

#[tokio::test]
async fn a_credential_is_sent_only_to_its_rules_exact_origin() {
    let (mock, egress) = upstreams(&["vault.allowed.test", "api.allowed.test"], |_| {
        Reply::status(204)
    });
    // Same host on another port, and another allowed host: both allowed, neither credentialed.
    for url in [
        "https://vault.allowed.test:8443/",
        "https://api.allowed.test/",
        "https://vault.allowed.test/",
    ] {
        let ran = egress
            .run_with("exfil", "fetch", json!({"url": url}), &[("token", CANARY)])
            .await;
        assert_eq!(report(&ran)["attempts"][0]["outcome"], "ok 204", "{url}");
    }
    let seen: Vec<Vec<String>> = mock
        .requests()
        .iter()
        .map(|r| {
            r.header("authorization")
                .iter()
                .map(|s| s.to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        seen,
        [vec![], vec![], vec![format!("Bearer {CANARY}")]],
        "only https://vault.allowed.test:443 gets the token"
    );
    // Plain http to the credentialed host is refused outright (EG-15, CR-18).
    let ran = egress
        .run_with(
            "exfil",
            "fetch",
            json!({"url": "http://vault.allowed.test/"}),
            &[("token", CANARY)],
        )
        .await;
    assert_eq!(report(&ran)["attempts"][0]["outcome"], "HttpRequestDenied");
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test]
async fn the_guest_cannot_set_or_choose_the_injected_header() {
    let (mock, egress) = upstreams(&["keyed.allowed.test"], Reply::echo_headers);
    for header in [
        "X-Api-Key",
        "x-api-key",
        // Read as `X-Api-Key` by servers that turn both into `HTTP_X_API_KEY`.
        "X_Api_Key",
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
    ] {
        let input = json!({
            "url": "https://keyed.allowed.test/",
            "headers": [[header, "attacker"]],
        });
        let ran = egress
            .run_with("exfil", "fetch", input, &[("key", CANARY)])
            .await;
        assert_eq!(
            report(&ran)["attempts"][0]["outcome"],
            "HeaderForbidden",
            "{header}"
        );
    }
    assert!(
        mock.requests().is_empty(),
        "refused before anything was sent"
    );
    let ran = egress
        .run_with(
            "exfil",
            "fetch",
            json!({"url": "https://keyed.allowed.test/"}),
            &[("key", CANARY)],
        )
        .await;
    let seen = mock.requests();
    assert_eq!(seen[0].header("x-api-key"), [CANARY]);
    assert!(seen[0].header("authorization").is_empty());
    assert_unseen(&ran, CANARY);
    assert!(
        report(&ran)["body"]
            .as_str()
            .expect("body")
            .contains("[REDACTED]")
    );
}

#[tokio::test]
async fn a_query_key_is_the_hosts_alone_and_never_reaches_events() {
    let secret = "k/ey+with=chars";
    let (mock, egress) = upstreams(&["query.allowed.test"], |request| {
        Reply::json(200, json!({"path": request.path_and_query}))
    });
    let ran = egress
        .run_with(
            "exfil",
            "fetch",
            json!({"url": "https://query.allowed.test/items?page=2"}),
            &[("query-key", secret)],
        )
        .await;
    assert_eq!(
        mock.requests()[0].path_and_query,
        "/items?page=2&api_key=k%2Fey%2Bwith%3Dchars"
    );
    assert_unseen(&ran, secret);
    assert_unseen(&ran, "k%2Fey%2Bwith%3Dchars");
    let events = serde_json::to_string(&ran.egress).expect("events serialise");
    assert!(!events.contains("api_key"), "{events}");
    assert_eq!(
        ran.egress[0].target.as_deref(),
        Some("https://query.allowed.test/items")
    );
    // A parameter of the injected name the guest sent itself, however encoded, is refused.
    for url in [
        "https://query.allowed.test/items?api_key=evil&page=2",
        "https://query.allowed.test/items?page=2&API%5FKEY=evil",
    ] {
        let ran = egress
            .run_with(
                "exfil",
                "fetch",
                json!({"url": url}),
                &[("query-key", secret)],
            )
            .await;
        assert_eq!(report(&ran)["attempts"][0]["outcome"], "HttpRequestDenied");
        assert_eq!(ran.egress[0].reason.as_deref(), Some("guest-credential"));
    }
    assert_eq!(mock.requests().len(), 1);
}

/// On a request the host injects a credential into, a credential of the guest's own (another
/// header or query parameter an upstream reads one from) could make the upstream act as another
/// account: the request is refused. Cursors and data keys are not credentials; a request with
/// no injected credential may carry the guest's own.
#[tokio::test]
async fn a_credentialed_request_carrying_the_guests_own_credential_is_refused() {
    let (mock, egress) = upstreams(
        &["vault.allowed.test", "api.allowed.test"],
        Reply::echo_headers,
    );
    let fetch = |input: Value| egress.run_with("exfil", "fetch", input, &[("token", CANARY)]);
    let headers = [
        "X-Auth-Token",
        "X-Access-Token",
        "Private-Token",
        "X-Amz-Security-Token",
        "Ocp-Apim-Subscription-Key",
        "X-Goog-Api-Key",
        "X-Client-Secret",
        "x_vault_token",
    ];
    for header in headers {
        let url = "https://vault.allowed.test/items";
        let ran = fetch(json!({"url": url, "headers": [[header, "attacker"]]})).await;
        assert_eq!(
            report(&ran)["attempts"][0]["outcome"],
            "HttpRequestDenied",
            "{header}"
        );
        assert_eq!(ran.egress[0].reason.as_deref(), Some("guest-credential"));
        assert_eq!(
            ran.egress[0].rule,
            Some(2),
            "judged against the credentialed rule"
        );
    }
    let params = [
        "access_token",
        "api_key",
        "apiKey",
        "key",
        "token",
        "client_secret",
        "X-Amz-Signature",
        "AWSAccessKeyId",
        "api%5Fkey",
    ];
    for param in params {
        let url = format!("https://vault.allowed.test/items?page=2&{param}=attacker");
        let ran = fetch(json!({"url": url})).await;
        assert_eq!(
            report(&ran)["attempts"][0]["outcome"],
            "HttpRequestDenied",
            "{param}"
        );
        assert_eq!(ran.egress[0].reason.as_deref(), Some("guest-credential"));
    }
    assert_eq!(mock.accepts(), 0, "nothing went out");

    let ran = fetch(json!({
        "url": "https://vault.allowed.test/items?page_token=p2&nextPageToken=n&author=a&sort_key=s",
        "headers": [["Idempotency-Key", "i-1"], ["X-Request-Id", "r-1"]],
    }))
    .await;
    assert_eq!(report(&ran)["attempts"][0]["outcome"], "ok 200");
    let ran = fetch(json!({
        "url": "https://api.allowed.test/items?api_key=own",
        "headers": [["X-Auth-Token", "own"]],
    }))
    .await;
    assert_eq!(report(&ran)["attempts"][0]["outcome"], "ok 200");
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].header("authorization"),
        [format!("Bearer {CANARY}")]
    );
    assert_eq!(seen[0].header("idempotency-key"), ["i-1"]);
    assert_eq!(seen[1].header("authorization"), Vec::<&str>::new());
    assert_eq!(seen[1].header("x-auth-token"), ["own"]);
    assert_eq!(seen[1].path_and_query, "/items?api_key=own");
}

/// A response in two content codings, or in a transfer coding the HTTP client does not remove,
/// would reach the guest still encoded after the redactor read it: refused when a credential
/// went out. Without one there is nothing to redact, and it passes as sent.
#[tokio::test]
async fn a_response_in_more_than_one_coding_is_refused_not_half_decoded() {
    let (mock, egress) = upstreams(&["vault.allowed.test", "api.allowed.test"], |request| {
        let echo = format!("token={}", request.header("authorization").join(","));
        let once = gzip(echo.as_bytes());
        let twice = gzip(&once);
        match request.path_and_query.as_str() {
            "/repeated" => Reply::bytes(200, twice)
                .header("content-encoding", "gzip")
                .header("content-encoding", "gzip"),
            "/listed" => Reply::bytes(200, twice).header("content-encoding", "gzip, gzip"),
            "/identity-first" => Reply::bytes(200, once)
                .header("content-encoding", "identity")
                .header("content-encoding", "gzip"),
            // Deliberately framed by hand: hyper chunks it and leaves the gzip coding on.
            "/transfer-coded" => {
                Reply::bytes(200, once).header("transfer-encoding", "gzip, chunked")
            }
            _ => Reply::bytes(200, once).header("content-encoding", "gzip"),
        }
    });
    for (path, reason) in [
        ("/repeated", "unsupported-content-encoding"),
        ("/listed", "unsupported-content-encoding"),
        ("/identity-first", "unsupported-content-encoding"),
        ("/transfer-coded", "unsupported-transfer-encoding"),
    ] {
        let url = format!("https://vault.allowed.test{path}");
        let ran = egress
            .run_with("exfil", "fetch", json!({"url": url}), &[("token", CANARY)])
            .await;
        assert_eq!(
            report(&ran)["attempts"][0]["outcome"],
            "HttpProtocolError",
            "{path}: {}",
            report(&ran)
        );
        assert_eq!(ran.egress[0].reason.as_deref(), Some(reason), "{path}");
        assert_unseen(&ran, CANARY);
    }
    // One coding is decoded and redacted.
    let ran = egress
        .run_with(
            "exfil",
            "fetch",
            json!({"url": "https://vault.allowed.test/once"}),
            &[("token", CANARY)],
        )
        .await;
    assert_eq!(report(&ran)["body"], "token=Bearer [REDACTED]");
    // No credential: the guest gets the body and both codings to undo itself.
    let ran = egress
        .run_with(
            "exfil",
            "fetch",
            json!({"url": "https://api.allowed.test/repeated"}),
            &[("token", CANARY)],
        )
        .await;
    assert_eq!(report(&ran)["attempts"][0]["outcome"], "ok 200");
    let report = report(&ran);
    let codings: Vec<&Value> = report["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|pair| pair[0] == "content-encoding")
        .map(|pair| &pair[1])
        .collect();
    assert_eq!(codings, [&json!("gzip"), &json!("gzip")]);
    assert_eq!(mock.requests().len(), 6);
}

#[tokio::test]
async fn basic_auth_is_encoded_once_and_its_forms_are_redacted() {
    let login = "alice:open sesame";
    let encoded = STANDARD.encode(login);
    let (mock, egress) = upstreams(&["basic.allowed.test"], |request| {
        let auth = request.header("authorization").join(",");
        Reply::status(200).body(format!("{auth} / password=open sesame"))
    });
    let ran = egress
        .run_with(
            "exfil",
            "fetch",
            json!({"url": "https://basic.allowed.test/"}),
            &[("login", login)],
        )
        .await;
    assert_eq!(
        mock.requests()[0].header("authorization"),
        [format!("Basic {encoded}")]
    );
    assert_unseen(&ran, &encoded);
    assert_unseen(&ran, "open sesame");
    assert_eq!(
        report(&ran)["body"],
        "Basic [REDACTED] / password=[REDACTED]"
    );
}

/// The username of a basic credential is scrubbed too: on its own when it is at least
/// `SecretForms::MIN_USERNAME` (8) bytes long, and always within `user:password`, percent-encoded
/// or not; a shorter one on its own is left, as it could be any word of the body.
#[tokio::test]
async fn a_basic_username_is_redacted_as_well_as_its_password() {
    let (_mock, egress) = upstreams(&["basic.allowed.test"], |_| {
        Reply::json(
            200,
            json!({
                "user": "svc-acme@sync.test",
                "query": "u=svc-acme%40sync.test",
                "pair": "svc-acme%40sync.test%3Apw-9f2e1c",
                "short": "bob",
                "short-pair": "bob:pw-9f2e1c",
            }),
        )
        .header("x-user", "svc-acme@sync.test")
    });
    let url = json!({"url": "https://basic.allowed.test/me"});
    let ran = egress
        .run_with(
            "exfil",
            "fetch",
            url.clone(),
            &[("login", "svc-acme@sync.test:pw-9f2e1c")],
        )
        .await;
    let body: Value =
        serde_json::from_str(report(&ran)["body"].as_str().expect("body")).expect("JSON body");
    assert_eq!(body["user"], "[REDACTED]");
    assert_eq!(body["query"], "u=[REDACTED]");
    assert_eq!(body["pair"], "[REDACTED]");
    assert_eq!(body["short"], "bob");
    assert_unseen(&ran, "svc-acme@sync.test");
    assert_unseen(&ran, "svc-acme%40sync.test");
    assert_unseen(&ran, "pw-9f2e1c");

    let ran = egress
        .run_with("exfil", "fetch", url, &[("login", "bob:pw-9f2e1c")])
        .await;
    let body: Value =
        serde_json::from_str(report(&ran)["body"].as_str().expect("body")).expect("JSON body");
    assert_eq!(body["short"], "bob", "a short username alone is left");
    assert_eq!(body["short-pair"], "[REDACTED]");
    assert_unseen(&ran, "bob:pw-9f2e1c");
}

#[tokio::test]
async fn github_issues_lists_every_page_with_the_injected_token() {
    let (mock, egress) = upstreams(&["api.github.com"], |request| {
        let page2 = request.path_and_query.contains("page=2");
        let issues = if page2 {
            json!([{"number": 2, "title": "second", "html_url": "https://github.com/acme/widgets/issues/2"}])
        } else {
            json!([
                {"number": 1, "title": "first", "html_url": "https://github.com/acme/widgets/issues/1"},
                {"number": 3, "title": "a PR", "html_url": "https://github.com/acme/widgets/pull/3", "pull_request": {}}
            ])
        };
        let response = Reply::json(200, issues);
        if page2 {
            response
        } else {
            response.header(
                "link",
                "<https://api.github.com/repositories/42/issues?state=open&page=2>; rel=\"next\"",
            )
        }
    });
    let ran = egress
        .run_with(
            "github-issues",
            "list-open",
            json!({"owner": "acme", "repo": "widgets"}),
            &[("github", CANARY)],
        )
        .await;
    let output = ran.result.as_ref().expect("lists issues").to_value();
    assert_eq!(output["pages"], 2, "{output}");
    let numbers: Vec<&Value> = output["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| &i["number"])
        .collect();
    assert_eq!(numbers, [&json!(1), &json!(2)]);
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(
            request.header("authorization"),
            [format!("Bearer {CANARY}")]
        );
    }
    assert_eq!(
        seen[1].path_and_query,
        "/repositories/42/issues?state=open&page=2"
    );
    assert_unseen(&ran, CANARY);
}
