//! OAuth connections through the real server (issue 7; catalogue CR-11…13): a mock Slack on
//! loopback TLS plays authorization server and API; this test plays the person's browser. The
//! connect flow from a one-time start link, bound to the browser's cookie, with PKCE and a
//! single-use state, its refusals, the provider account listed, one refresh for fifty
//! concurrent invocations, a revoked refresh token, per-user connections, tokens that do not
//! outlive their client or tenant, and a token URL moved by an upgrade.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::egress::UPSTREAM_IP;
use crate::operator::Operator;
use crate::serving::{Body, Server, TENANT_SCOPES, records_of};
use crate::support::read_example;
use airlock_testkit::{Recorded, Reply, TestCa, Upstream};

const CLIENT: &str = r#"{"client_id": "111.222", "client_secret": "cs-canary-7f3a"}"#;
const TOKEN_PATH: &str = "/api/oauth.v2.access";

/// What the mock authorization server knows.
#[derive(Default)]
struct Provider {
    /// Codes it issued: code → (PKCE challenge, whose account).
    codes: HashMap<String, (String, String)>,
    /// Live refresh tokens → whose account.
    refresh: HashMap<String, String>,
    /// Lifetime of the access tokens it issues.
    lifetime: u64,
    /// Scopes it says it granted.
    granted: String,
    /// Refuse every refresh (the person revoked the app).
    revoked: bool,
    issued: u32,
}

impl Provider {
    /// Tokens for `who`, with their Slack account (`U-who` in workspace `T-acme`).
    fn issue(&mut self, who: &str) -> Reply {
        self.issued += 1;
        let refresh = format!("xoxe-1-{who}-{}", self.issued);
        self.refresh.insert(refresh.clone(), who.to_string());
        Reply::json(
            200,
            json!({"ok": true, "access_token": format!("xoxb-{who}-{}", self.issued),
                   "token_type": "bot", "expires_in": self.lifetime,
                   "refresh_token": refresh, "scope": self.granted,
                   "authed_user": {"id": format!("U-{who}")}, "team": {"id": "T-acme"}}),
        )
    }

    fn answer(&mut self, request: &Recorded) -> Reply {
        if request.path_and_query != TOKEN_PATH || request.sni.as_deref() != Some("slack.com") {
            return Reply::json(
                200,
                json!({"ok": true, "channel": "C024BE91L", "ts": "1700000000.000100"}),
            );
        }
        let form = form(request);
        let refused = || Reply::json(200, json!({"ok": false, "error": "invalid_grant"}));
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let Some((challenge, who)) = form.get("code").and_then(|c| self.codes.remove(c))
                else {
                    return refused();
                };
                let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
                if computed != challenge {
                    return refused();
                }
                self.issue(&who)
            }
            Some("refresh_token") if !self.revoked => {
                // Strict rotation: a refresh token works once.
                match form
                    .get("refresh_token")
                    .and_then(|r| self.refresh.remove(r))
                {
                    Some(who) => self.issue(&who),
                    None => refused(),
                }
            }
            _ => refused(),
        }
    }
}

/// A form body's fields, percent-decoded.
fn form(request: &Recorded) -> HashMap<String, String> {
    String::from_utf8_lossy(&request.body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let byte = text.as_bytes()[i];
        if byte == b'%'
            && let Some(b) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if byte == b'+' { b' ' } else { byte });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query parameters of a URL.
fn query(url: &str) -> HashMap<String, String> {
    url.split_once('?')
        .map_or("", |(_, q)| q)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect()
}

/// A server whose egress reaches the mock Slack, an operator with slack-notifier installed for
/// acme as `slack` (and, per user, as `slack-users`), and acme's key.
pub(crate) struct Setup {
    pub(crate) op: Operator,
    pub(crate) server: Server,
    key: String,
    mock: Upstream,
    provider: Arc<Mutex<Provider>>,
    /// A browser's HTTP client: it follows no redirect (the provider is the mock).
    browser: Client,
    _ca: TestCa,
}

/// A person's browser: the cookies Airlock set in it (`name=value`).
#[derive(Clone, Default)]
struct Browser {
    cookies: Vec<String>,
}

/// What a browser got from opening a start link.
struct Opened {
    status: StatusCode,
    /// Where it was sent (the provider's authorization URL).
    location: Option<String>,
    /// The `Set-Cookie` headers, as sent.
    set_cookie: Vec<String>,
    body: Value,
    /// The browser, holding the cookies set.
    browser: Browser,
}

pub(crate) async fn setup() -> Setup {
    setup_with(&[]).await
}

/// [`setup`] with `airlock serve` given `serve` as well.
async fn setup_with(serve: &[&str]) -> Setup {
    let ca = TestCa::new().expect("test CA");
    let provider = Arc::new(Mutex::new(Provider {
        lifetime: 43_200,
        granted: "chat:write".into(),
        ..Provider::default()
    }));
    let answering = provider.clone();
    let mock = Upstream::start(
        &ca,
        &["slack.com", "tokens.evil.test"],
        UPSTREAM_IP,
        move |request| answering.lock().expect("provider").answer(request),
    )
    .expect("upstream starts");
    let op = Operator::new();
    let ca_pem = ca.write_pem(op.keys.path()).expect("CA written");
    let tenant_bundle = op.example("slack-notifier", "slack_notifier.wasm");
    let manifest = read_example("slack-notifier", "airlock.toml")
        .replace(
            "scopes = [\"chat:write\"]",
            "scopes = [\"chat:write\"]\nper-user = true",
        )
        .replace("version = \"0.1.0\"", "version = \"0.1.1\"")
        .replace(
            "[publisher]\nname = \"Acme Integrations\"",
            "[publisher]\nname = \"Airlock Examples\"",
        );
    let users_bundle = op.sign(
        "slack-notifier",
        "slack_notifier.wasm",
        &manifest,
        "users.airlock",
    );
    let resolve = format!("slack.com={}", mock.addr());
    let evil = format!("tokens.evil.test={}", mock.addr());
    let ca_path = ca_pem.display().to_string();
    let server = Server::start(
        &op,
        &[
            "--resolve",
            &resolve,
            "--resolve",
            &evil,
            "--allow-private",
            "127.0.0.0/8",
            "--extra-root-ca",
            &ca_path,
        ],
        &[&["--dev-insecure"], serve].concat(),
    );
    let mut scopes = TENANT_SCOPES.to_vec();
    scopes.push("credentials:write");
    let key = server.tenant("acme", &scopes).await;
    for (bundle, installation) in [(&tenant_bundle, "slack"), (&users_bundle, "slack-users")] {
        install_slack(&server, &key, bundle, installation).await;
    }
    Setup {
        op,
        server,
        key,
        mock,
        provider,
        browser: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        _ca: ca,
    }
}

/// Installs the slack-notifier `bundle` as `installation` for `key`'s tenant and registers
/// the OAuth client.
async fn install_slack(server: &Server, key: &str, bundle: &Path, installation: &str) {
    let digest = server.upload(bundle).await;
    let installed = server
        .post(
            "/v1/installations",
            key,
            json!({"bundle": digest, "installation": installation,
                   "grant": {"egress": [{"url": "https://slack.com/api/chat.postMessage", "methods": ["POST"]}]}}),
        )
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let registered = server
        .call(
            Method::PUT,
            &format!("/v1/installations/{installation}/credentials/slack"),
            Some(key),
            Body::Json(json!({ "value": CLIENT })),
        )
        .await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
}

impl Setup {
    /// `connect` with the tenant's key; returns the start link.
    async fn start_url(&self, installation: &str, request: Value) -> String {
        let reply = self
            .server
            .post(
                &format!("/v1/installations/{installation}/credentials/slack/connect"),
                &self.key,
                request,
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        let url = reply.body["start_url"].as_str().expect("start_url");
        assert!(
            url.starts_with(&format!("{}/v1/oauth/start/", self.server.base)),
            "{url}"
        );
        url.to_string()
    }

    /// A fresh browser opens `link`.
    async fn open(&self, link: &str) -> Opened {
        let response = self.browser.get(link).send().await.expect("answers");
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let set_cookie: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let browser = Browser {
            cookies: set_cookie
                .iter()
                .filter_map(|c| c.split(';').next())
                .map(str::to_string)
                .collect(),
        };
        let bytes = response.bytes().await.expect("body");
        Opened {
            status,
            location,
            set_cookie,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            browser,
        }
    }

    /// Starts a consent in a fresh browser; returns that browser and the parameters of the
    /// authorization URL it was sent to.
    async fn connect(
        &self,
        installation: &str,
        request: Value,
    ) -> (Browser, HashMap<String, String>) {
        let link = self.start_url(installation, request).await;
        let opened = self.open(&link).await;
        assert_eq!(opened.status, StatusCode::FOUND, "{}", opened.body);
        let url = opened.location.expect("a redirect");
        assert!(
            url.starts_with("https://slack.com/oauth/v2/authorize?"),
            "{url}"
        );
        (opened.browser, query(&url))
    }

    /// The person consents: the provider issues `code` for `who` under `challenge`.
    fn consent(&self, code: &str, challenge: &str, who: &str) {
        self.provider
            .lock()
            .expect("provider")
            .codes
            .insert(code.into(), (challenge.into(), who.into()));
    }

    /// `browser` comes back to the callback; the answer and its `Set-Cookie` headers.
    async fn callback_from(
        &self,
        browser: &Browser,
        redirect_uri: &str,
        params: &[(&str, &str)],
    ) -> (StatusCode, Value, Vec<String>) {
        let url = reqwest::Url::parse_with_params(redirect_uri, params).expect("url");
        let mut request = self.browser.get(url);
        if !browser.cookies.is_empty() {
            request = request.header("cookie", browser.cookies.join("; "));
        }
        let response = request.send().await.expect("answers");
        let status = response.status();
        let cleared = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let bytes = response.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            cleared,
        )
    }

    async fn callback(
        &self,
        browser: &Browser,
        redirect_uri: &str,
        params: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let (status, body, _) = self.callback_from(browser, redirect_uri, params).await;
        (status, body)
    }

    /// The refusal reason of a callback with `code` (or the provider's `error=`) on a fresh
    /// consent's state, from the browser that started it.
    async fn refused_after(&self, answer: (&str, &str)) -> String {
        let (browser, params) = self.connect("slack", json!({})).await;
        let (status, body) = self
            .callback(
                &browser,
                &params["redirect_uri"],
                &[answer, ("state", &params["state"])],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        body["error"]["reason"].as_str().unwrap_or("").to_string()
    }

    /// Connects `installation` (for `user`) as `who`; asserts it worked.
    pub(crate) async fn connected(
        &self,
        installation: &str,
        user: Option<&str>,
        who: &str,
    ) -> Value {
        let request = user.map_or(json!({}), |u| json!({ "user": u }));
        let (browser, params) = self.connect(installation, request).await;
        let code = format!("code-{who}");
        self.consent(&code, &params["code_challenge"], who);
        let (status, body) = self
            .callback(
                &browser,
                &params["redirect_uri"],
                &[("code", &code), ("state", &params["state"])],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub(crate) async fn post_alert(
        &self,
        installation: &str,
        user: Option<&str>,
    ) -> (StatusCode, Value) {
        let path = match user {
            Some(u) => format!("/v1/installations/{installation}/actions/post-alert?user={u}"),
            None => format!("/v1/installations/{installation}/actions/post-alert"),
        };
        let reply = self
            .server
            .post(
                &path,
                &self.key,
                json!({"channel": "C024BE91L", "text": "disk full", "severity": "critical"}),
            )
            .await;
        (reply.status, reply.body)
    }

    /// The bearer tokens chat.postMessage saw, in order.
    fn posted_with(&self) -> Vec<String> {
        self.mock
            .requests()
            .iter()
            .filter(|r| r.path_and_query == "/api/chat.postMessage")
            .map(|r| r.header("authorization").join(","))
            .collect()
    }

    fn token_calls(&self) -> usize {
        self.mock
            .requests()
            .iter()
            .filter(|r| r.path_and_query == TOKEN_PATH)
            .count()
    }

    /// The requests that reached `host`.
    fn sent_to(&self, host: &str) -> usize {
        self.mock
            .requests()
            .iter()
            .filter(|r| r.sni.as_deref() == Some(host))
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_connects_through_consent_and_posts_with_a_token_it_never_sees() {
    let s = setup().await;
    let (browser, params) = s.connect("slack", json!({})).await;
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], "111.222");
    assert_eq!(params["scope"], "chat:write");
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["code_challenge"].len(), 43);
    assert!(params["state"].len() >= 43, "32 random bytes");
    assert!(params["redirect_uri"].ends_with("/v1/oauth/callback"));

    // Wrong state, then a code obtained under someone else's PKCE challenge (an injected code):
    // refused, and the real state is untouched by either.
    let (status, body) = s
        .callback(
            &browser,
            &params["redirect_uri"],
            &[("code", "x"), ("state", "forged")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["reason"], "unknown-state");
    s.consent("stolen", "attackers-own-challenge", "mallory");
    assert_eq!(s.refused_after(("code", "stolen")).await, "exchange-failed");
    // An expired (unknown to the provider) code; the person declining at the provider.
    assert_eq!(
        s.refused_after(("code", "expired")).await,
        "exchange-failed"
    );
    assert_eq!(
        s.refused_after(("error", "access_denied")).await,
        "provider-access-denied"
    );

    // The real consent, once; its state does not work a second time.
    s.consent("code-acme", &params["code_challenge"], "acme");
    let back = [("code", "code-acme"), ("state", params["state"].as_str())];
    let (status, body) = s.callback(&browser, &params["redirect_uri"], &back).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scopes"], json!(["chat:write"]));
    let (status, body) = s.callback(&browser, &params["redirect_uri"], &back).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["reason"], "unknown-state");

    let (status, output) = s.post_alert("slack", None).await;
    assert_eq!(status, StatusCode::OK, "{output}");
    assert_eq!(s.posted_with(), ["Bearer xoxb-acme-1"]);
    let connections = s
        .server
        .get("/v1/installations/slack/credentials", &s.key)
        .await;
    let listed = &connections.body["connections"][0];
    assert_eq!(listed["status"], "connected", "{}", connections.body);
    assert_eq!(listed["refreshable"], true);
    let everything = format!("{} {}", connections.body, output);
    assert!(!everything.contains("xox"), "{everything}");

    // A provider that grants more than was asked: connected, and recorded as widened.
    s.provider.lock().expect("provider").granted = "chat:write,admin".into();
    let widened = s.connected("slack", None, "acme").await;
    assert_eq!(widened["widened"], json!(["admin"]));

    // The client deleted: the token held for it goes too, so nothing more is sent.
    let (status, _) = s.post_alert("slack", None).await;
    assert_eq!(status, StatusCode::OK);
    let sent = s.posted_with().len();
    let deleted = s
        .server
        .call(
            Method::DELETE,
            "/v1/installations/slack/credentials/slack",
            Some(&s.key),
            Body::None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let (status, body) = s.post_alert("slack", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(s.posted_with().len(), sent);
    // The tenant deleted and made again under the same ids, with the client registered but
    // never connected: it inherits no token.
    s.server
        .call(
            Method::PUT,
            "/v1/installations/slack/credentials/slack",
            Some(&s.key),
            Body::Json(json!({ "value": CLIENT })),
        )
        .await;
    s.connected("slack", None, "acme").await;
    assert_eq!(s.post_alert("slack", None).await.0, StatusCode::OK);
    let sent = s.posted_with().len();
    let gone = s
        .server
        .call(
            Method::DELETE,
            "/v1/tenants/acme",
            Some(&s.server.admin),
            Body::None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.body);
    let mut scopes = TENANT_SCOPES.to_vec();
    scopes.push("credentials:write");
    let key = s.server.tenant("acme", &scopes).await;
    let bundle = s.op.example("slack-notifier", "slack_notifier.wasm");
    install_slack(&s.server, &key, &bundle, "slack").await;
    let reply = s
        .server
        .post(
            "/v1/installations/slack/actions/post-alert",
            &key,
            json!({"channel": "C024BE91L", "text": "disk full", "severity": "critical"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.body);
    assert_eq!(s.posted_with().len(), sent);

    s.server.stop();
    let changes = records_of(&s.op, "connection-changed");
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[1]["widened"], json!(["admin"]));
    let refusals: Vec<String> = records_of(&s.op, "connection-refused")
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        refusals,
        [
            "unknown-state",
            "exchange-failed",
            "exchange-failed",
            "provider-access-denied",
            "unknown-state"
        ]
    );
    let trail = crate::support::stdout(&s.op.ok(&["audit", "export"]));
    for secret in [
        "xoxb-",
        "xoxe-",
        "cs-canary-7f3a",
        &params["state"],
        &params["code_challenge"],
    ] {
        assert!(!trail.contains(secret), "{secret} in the trail");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_completes_only_in_the_browser_that_started_it() {
    let s = setup().await;
    let alice = json!({"user": "alice"});
    let link = s.start_url("slack-users", alice.clone()).await;
    assert!(!link.contains(&s.key), "no key in the link");
    let opened = s.open(&link).await;
    assert_eq!(opened.status, StatusCode::FOUND, "{}", opened.body);
    assert_eq!(opened.set_cookie.len(), 1);
    let cookie = &opened.set_cookie[0];
    assert!(cookie.starts_with("__Host-airlock-consent-"), "{cookie}");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    // The link works once: opened again (forwarded after use), it starts nothing.
    let again = s.open(&link).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
    assert_eq!(again.body["error"]["reason"], "unknown-start");
    assert!(again.set_cookie.is_empty() && again.location.is_none());

    // Alice forwards the provider's URL to Mallory, who consents with her own account: her
    // browser comes back without Alice's cookie, and nothing is connected under Alice's name.
    let params = query(&opened.location.expect("sent to the provider"));
    s.consent("code-mallory", &params["code_challenge"], "mallory");
    let mallory = Browser::default();
    let answer = [
        ("code", "code-mallory"),
        ("state", params["state"].as_str()),
    ];
    let (status, body) = s.callback(&mallory, &params["redirect_uri"], &answer).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["reason"], "browser-mismatch");
    // The state is spent: not even Alice's own browser can use it now.
    let (status, body) = s
        .callback(&opened.browser, &params["redirect_uri"], &answer)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["reason"], "unknown-state");
    // A cookie of the right name with another value is refused too.
    let (browser, params) = s.connect("slack-users", alice.clone()).await;
    let forged = Browser {
        cookies: browser
            .cookies
            .iter()
            .map(|c| format!("{}=forged-nonce", c.split('=').next().unwrap_or_default()))
            .collect(),
    };
    s.consent("code-mallory-2", &params["code_challenge"], "mallory");
    let answer = [
        ("code", "code-mallory-2"),
        ("state", params["state"].as_str()),
    ];
    let (status, body) = s.callback(&forged, &params["redirect_uri"], &answer).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["reason"], "browser-mismatch");
    let listed = s
        .server
        .get("/v1/installations/slack-users/credentials", &s.key)
        .await;
    assert_eq!(listed.body["connections"], json!([]), "{}", listed.body);
    assert_eq!(s.token_calls(), 0, "no code was exchanged");

    // Alice completes one in her own browser: connected, the cookie cleared, and her Slack
    // account listed with the connection.
    let (browser, params) = s.connect("slack-users", alice).await;
    s.consent("code-alice", &params["code_challenge"], "alice");
    let answer = [("code", "code-alice"), ("state", params["state"].as_str())];
    let (status, body, cleared) = s
        .callback_from(&browser, &params["redirect_uri"], &answer)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let name = browser.cookies[0].split('=').next().unwrap_or_default();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with(&format!("{name}=;")) && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    let listed = s
        .server
        .get("/v1/installations/slack-users/credentials", &s.key)
        .await;
    let connection = &listed.body["connections"][0];
    assert_eq!(connection["user"], "alice", "{}", listed.body);
    assert_eq!(
        connection["account"],
        json!({"id": "U-alice", "workspace": "T-acme", "source": "token-response"})
    );

    let Setup { op, server, .. } = s;
    server.stop();
    let refusals: Vec<String> = records_of(&op, "connection-refused")
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        refusals,
        [
            "unknown-start",
            "browser-mismatch",
            "unknown-state",
            "browser-mismatch"
        ]
    );
    // The provider account identifies a third party: listed to the tenant, never audited.
    let trail = crate::support::stdout(&op.ok(&["audit", "export"]));
    assert!(!trail.contains("U-alice"), "the account in the trail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_that_moves_the_token_url_needs_the_admin_and_sends_it_no_secret() {
    let s = setup().await;
    s.connected("slack", None, "acme").await;
    assert_eq!(s.post_alert("slack", None).await.0, StatusCode::OK);
    let posted = s.posted_with().len();
    let manifest = read_example("slack-notifier", "airlock.toml")
        .replace(
            "[publisher]\nname = \"Acme Integrations\"",
            "[publisher]\nname = \"Airlock Examples\"",
        )
        .replace("version = \"0.1.0\"", "version = \"0.2.0\"")
        .replace(
            "https://slack.com/api/oauth.v2.access",
            "https://tokens.evil.test/api/oauth.v2.access",
        );
    let moved = s.op.sign(
        "slack-notifier",
        "slack_notifier.wasm",
        &manifest,
        "moved.airlock",
    );
    let digest = s.server.upload(&moved).await;

    // The tenant's upgrade waits, naming the credential and where its secret would go.
    let upgrade = json!({"bundle": digest, "installation": "slack"});
    let reply = s.server.post("/v1/installations", &s.key, upgrade).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let admin_only = reply.body["installation"]["pending"]["admin_only"].to_string();
    assert!(
        admin_only.contains("`slack`")
            && admin_only.contains("https://tokens.evil.test/api/oauth.v2.access"),
        "{}",
        reply.body
    );
    // The tenant cannot approve it, with or without a grant, nor install it with one.
    let grant =
        json!({"egress": [{"url": "https://slack.com/api/chat.postMessage", "methods": ["POST"]}]});
    for (path, body) in [
        ("/v1/installations/slack/approve", json!({})),
        ("/v1/installations/slack/approve", json!({ "grant": grant })),
        (
            "/v1/installations",
            json!({"bundle": digest, "installation": "slack", "grant": grant}),
        ),
    ] {
        let refused = s.server.post(path, &s.key, body).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
        assert_eq!(refused.body["error"]["code"], "admin-only");
        let message = refused.body["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("`slack`") && message.contains("https://tokens.evil.test"),
            "{message}"
        );
    }
    let shown = s.server.get("/v1/installations/slack", &s.key).await;
    assert_eq!(shown.body["version"], "0.1.0");

    // The operator approves. The client stored for slack.com is not bound to the new token
    // endpoint: nothing is posted (not even with the token held in memory), and neither the
    // client secret nor the refresh token is sent there.
    let approved = s
        .server
        .post(
            "/v1/installations/slack/approve?tenant=acme",
            &s.server.admin,
            json!({}),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["installation"]["version"], "0.2.0");
    let (status, body) = s.post_alert("slack", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let connect = s
        .server
        .post(
            "/v1/installations/slack/credentials/slack/connect",
            &s.key,
            json!({}),
        )
        .await;
    assert_eq!(connect.status, StatusCode::CONFLICT, "{}", connect.body);
    assert_eq!(connect.body["error"]["code"], "credential-unbound");
    // The client stored again binds it to the new endpoint; the connection made at slack.com
    // still does not go there: its refresh token stays where it came from.
    let stored = s
        .server
        .call(
            Method::PUT,
            "/v1/installations/slack/credentials/slack",
            Some(&s.key),
            Body::Json(json!({ "value": CLIENT })),
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    let (status, body) = s.post_alert("slack", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(s.posted_with().len(), posted);
    assert_eq!(s.sent_to("tokens.evil.test"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_invocations_at_expiry_share_one_refresh_and_a_revoked_one_asks_for_consent() {
    let s = setup().await;
    // Tokens that are due for refresh at once (less than the 60 s margin left).
    s.provider.lock().expect("provider").lifetime = 30;
    s.connected("slack", None, "acme").await;
    let before = s.token_calls();
    let mut runs = Vec::new();
    let s = Arc::new(s);
    for _ in 0..50 {
        let s = s.clone();
        runs.push(tokio::spawn(
            async move { s.post_alert("slack", None).await },
        ));
    }
    for run in runs {
        let (status, body) = run.await.expect("joined");
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(
        s.token_calls() - before,
        1,
        "one refresh for fifty invocations"
    );
    let posted = s.posted_with();
    assert_eq!(posted.len(), 50);
    assert!(
        posted.iter().all(|t| t == "Bearer xoxb-acme-2"),
        "{posted:?}"
    );

    // The person revokes the app: the next refresh is refused, the connection needs consent
    // again, the guest gets a typed error, and nobody keeps asking.
    s.provider.lock().expect("provider").lifetime = 1;
    s.connected("slack", None, "acme").await;
    s.provider.lock().expect("provider").revoked = true;
    let before = s.token_calls();
    for _ in 0..3 {
        let (status, body) = s.post_alert("slack", None).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert_eq!(body["error"]["code"], "guest-error");
    }
    assert_eq!(
        s.token_calls() - before,
        1,
        "one refused refresh, no retry storm"
    );
    let connections = s
        .server
        .get("/v1/installations/slack/credentials", &s.key)
        .await;
    assert_eq!(
        connections.body["connections"][0]["status"], "needs-reconsent",
        "{}",
        connections.body
    );
    // Consent again: it works again.
    s.provider.lock().expect("provider").revoked = false;
    s.provider.lock().expect("provider").lifetime = 3600;
    s.connected("slack", None, "acme").await;
    let (status, body) = s.post_alert("slack", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_posts_with_their_own_connection_and_never_anothers() {
    let s = setup().await;
    // A per-user credential needs a user, a tenant-wide one refuses one, and no one may ask
    // for more than is declared.
    for (installation, request) in [
        ("slack-users", json!({})),
        ("slack", json!({"user": "alice"})),
        (
            "slack-users",
            json!({"user": "alice", "scopes": ["chat:write", "admin"]}),
        ),
    ] {
        let path = format!("/v1/installations/{installation}/credentials/slack/connect");
        let reply = s.server.post(&path, &s.key, request).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.body
        );
    }

    s.connected("slack-users", Some("alice"), "alice").await;
    s.connected("slack-users", Some("bob@example.com"), "bob")
        .await;
    for (user, want) in [
        ("alice", "Bearer xoxb-alice-1"),
        ("bob@example.com", "Bearer xoxb-bob-2"),
        ("alice", "Bearer xoxb-alice-1"),
    ] {
        let (status, body) = s.post_alert("slack-users", Some(user)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(s.posted_with().last().map(String::as_str), Some(want));
    }
    // Without a user, or as a user who never connected: nothing is sent, even when the
    // client record holds a live installation-wide refresh token (never a user's).
    s.provider
        .lock()
        .expect("provider")
        .refresh
        .insert("xoxe-1-shared".into(), "shared".into());
    let with_refresh = json!({"client_id": "111.222", "client_secret": "cs-canary-7f3a",
                              "refresh_token": "xoxe-1-shared"});
    let stored = s
        .server
        .call(
            Method::PUT,
            "/v1/installations/slack-users/credentials/slack",
            Some(&s.key),
            Body::Json(json!({ "value": with_refresh.to_string() })),
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    let sent = s.posted_with().len();
    let (status, _) = s.post_alert("slack-users", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let (status, _) = s.post_alert("slack-users", Some("carol")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(s.posted_with().len(), sent);
    let connections = s
        .server
        .get("/v1/installations/slack-users/credentials", &s.key)
        .await;
    let listed = connections.body["connections"].as_array().expect("list");
    let users: Vec<&str> = listed.iter().filter_map(|c| c["user"].as_str()).collect();
    assert_eq!(users, ["alice", "bob@example.com"]);
    // The references the trail names them by.
    let refs: Vec<Value> = listed.iter().map(|c| c["user_ref"].clone()).collect();
    // Bob disconnects: his invocations stop, Alice's go on.
    let gone = s
        .server
        .call(
            Method::DELETE,
            "/v1/installations/slack-users/credentials/slack/connection?user=bob@example.com",
            Some(&s.key),
            Body::None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.post_alert("slack-users", Some("bob@example.com")).await.0,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        s.post_alert("slack-users", Some("alice")).await.0,
        StatusCode::OK
    );
    let Setup { op, server, .. } = s;
    server.stop();
    // The trail names users by reference, never by id: it outlives the tenant's data key.
    let users: Vec<Value> = records_of(&op, "invocation")
        .iter()
        .chain(&records_of(&op, "connection-changed"))
        .filter_map(|r| r.get("user").cloned())
        .collect();
    for reference in &refs {
        assert!(
            reference.as_str().is_some_and(|r| r.starts_with("u-")),
            "{reference}"
        );
        assert!(users.contains(reference), "{users:?}");
    }
    assert_ne!(refs[0], refs[1]);
    assert!(
        users
            .iter()
            .all(|u| u.as_str().is_some_and(|u| u.starts_with("u-"))),
        "a user id in the trail: {users:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_callbacks_are_cut_off_before_they_flood_the_trail() {
    let op = Operator::new();
    let server = Server::start(&op, &[], &[]);
    let mut statuses = Vec::new();
    for n in 0..15 {
        let path = format!("/v1/oauth/callback?code=c&state=forged-{n}");
        statuses.push(
            server
                .call(Method::GET, &path, None, Body::None)
                .await
                .status,
        );
    }
    assert!(
        statuses[..10].iter().all(|s| *s == StatusCode::BAD_REQUEST),
        "{statuses:?}"
    );
    assert!(
        statuses[10..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Only callbacks are cut off: the same address still reaches the API with a good key.
    let api = server.get("/v1/tenants", &server.admin).await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    server.stop();
    assert_eq!(records_of(&op, "connection-refused").len(), 10);
}

/// Forged callbacks from one client, behind the proxy or straight to the server, are limited;
/// a real consent still completes, from any client, that one included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_callbacks_never_stop_a_real_consent() {
    let s = setup_with(&["--trusted-proxy", "127.0.0.1/32"]).await;
    let callback = async |params: &[(&str, &str)], client: Option<&str>, browser: &Browser| {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/v1/oauth/callback", s.server.base),
            params,
        )
        .expect("url");
        let mut request = s.server.http.get(url);
        if let Some(client) = client {
            request = request.header("x-forwarded-for", client);
        }
        if !browser.cookies.is_empty() {
            request = request.header("cookie", browser.cookies.join("; "));
        }
        request.send().await.expect("answers").status()
    };
    let stranger = Browser { cookies: vec![] };
    let forge_until_limited = async |client: Option<&str>| {
        for n in 0..12 {
            let state = format!("forged-{n}");
            let status = callback(&[("code", "c"), ("state", &state)], client, &stranger).await;
            if status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(n, 10, "{client:?} limited after ten forgeries");
                return;
            }
            assert_eq!(status, StatusCode::BAD_REQUEST, "{client:?} forgery {n}");
        }
        panic!("{client:?} never limited");
    };
    let consent = async |client: Option<&str>, who: &str| {
        let (browser, params) = s.connect("slack", json!({})).await;
        let code = format!("code-{who}");
        s.consent(&code, &params["code_challenge"], who);
        callback(
            &[("code", &code), ("state", &params["state"])],
            client,
            &browser,
        )
        .await
    };

    // Behind the proxy: the forging client is limited, and real consents complete from
    // another client and from the forging client itself.
    forge_until_limited(Some("203.0.113.7")).await;
    assert_eq!(consent(Some("198.51.100.1"), "ada").await, StatusCode::OK);
    assert_eq!(consent(Some("203.0.113.7"), "bob").await, StatusCode::OK);
    // Straight to the server (the peer is the client): the same.
    forge_until_limited(None).await;
    assert_eq!(consent(None, "cy").await, StatusCode::OK);
    let forged = callback(
        &[("code", "c"), ("state", "forged-late")],
        Some("203.0.113.7"),
        &stranger,
    )
    .await;
    assert_eq!(forged, StatusCode::TOO_MANY_REQUESTS);

    s.server.stop();
    let refused = records_of(&s.op, "connection-refused");
    assert_eq!(refused.len(), 20, "limited forgeries are not recorded");
    assert_eq!(
        refused
            .iter()
            .filter(|r| r["peer"] == "203.0.113.7")
            .count(),
        10
    );
    assert_eq!(
        refused.iter().filter(|r| r["peer"] == "127.0.0.1").count(),
        10
    );
    let connected = records_of(&s.op, "connection-changed");
    assert_eq!(connected.len(), 3, "{connected:?}");
}
