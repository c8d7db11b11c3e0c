//! The operator console over HTTP (docs/api.md, "The console"): the headers every page
//! carries, sign-in with a key that becomes an `HttpOnly`, `SameSite=Strict` session, a
//! tenant kept to its own tenant, forms refused without the session's anti-CSRF token or from
//! another origin, a failed run retried from its page, text escaped, and a revoked key's
//! session ended.

use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{Method, StatusCode, redirect};
use serde_json::json;

use crate::browser::Chrome;
use crate::operator::Operator;
use crate::serving::{Body, Server, TENANT_SCOPES};
use crate::support::read_example;

/// A browser: no redirects followed, the session cookie carried by hand.
struct Browser<'a> {
    server: &'a Server,
    http: reqwest::Client,
    cookie: Option<String>,
}

/// What a page answered.
struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Option<String>,
    csp: Option<String>,
    frame: Option<String>,
    html: String,
}

impl Page {
    /// The anti-CSRF token the page's forms carry.
    fn csrf(&self) -> String {
        let at = self
            .html
            .find("name=\"csrf\" value=\"")
            .expect("a form with a token");
        let rest = &self.html[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').expect("closed")].to_string()
    }
}

impl<'a> Browser<'a> {
    fn new(server: &'a Server) -> Self {
        Self {
            server,
            http: reqwest::Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .expect("client"),
            cookie: None,
        }
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        form: &[(&str, &str)],
        origin: bool,
    ) -> Page {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.server.base));
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        if origin {
            request = request.header(ORIGIN, &self.server.base);
        }
        if method == Method::POST {
            request = request.form(form);
        }
        let response = request.send().await.expect("the server answers");
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let page = Page {
            status: response.status(),
            location: header(LOCATION),
            set_cookie: header(SET_COOKIE),
            csp: header(CONTENT_SECURITY_POLICY),
            frame: header(reqwest::header::X_FRAME_OPTIONS),
            html: String::new(),
        };
        let html = response.text().await.expect("body");
        if let Some(set) = &page.set_cookie {
            self.cookie = set
                .split(';')
                .next()
                .map(str::to_string)
                .filter(|c| !c.ends_with('='));
        }
        Page { html, ..page }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, &[], false).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, form, true).await
    }

    async fn sign_in(&mut self, key: &str) -> Page {
        self.post("/console/sign-in", &[("key", key)]).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_with_a_key_and_keeps_each_tenant_to_its_own() {
    let op = Operator::new();
    let server = Server::start(&op, &[], &[]);
    let acme = server.tenant("acme", &TENANT_SCOPES).await;
    let beta = server.tenant("beta", &TENANT_SCOPES).await;
    for (tenant, key) in [("acme", &acme), ("beta", &beta)] {
        let digest = server.upload(&op.example("hostile", "hostile.wasm")).await;
        let installed = server
            .post(
                "/v1/installations",
                key,
                json!({"bundle": digest, "installation": format!("{tenant}-tools")}),
            )
            .await;
        assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    }

    let mut browser = Browser::new(&server);
    let signed_out = browser.get("/console/").await;
    assert_eq!(signed_out.status, StatusCode::OK);
    assert!(
        signed_out.html.starts_with("<!DOCTYPE html>"),
        "{}",
        signed_out.html
    );
    let csp = signed_out.csp.expect("a policy");
    for part in [
        "default-src 'self'",
        "script-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert_eq!(signed_out.frame.as_deref(), Some("DENY"));
    let style = browser.get("/console/style.css").await;
    assert_eq!(style.status, StatusCode::OK);
    assert!(
        style.csp.is_some(),
        "every console response carries the policy"
    );

    let wrong = browser.sign_in("airlock_not-a-key").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.html.contains("the API key is not valid"),
        "{}",
        wrong.html
    );
    assert!(wrong.set_cookie.is_none());
    let elsewhere = browser
        .send(Method::POST, "/console/sign-in", &[("key", &acme)], false)
        .await;
    assert_eq!(
        elsewhere.status,
        StatusCode::FORBIDDEN,
        "no Origin: {}",
        elsewhere.html
    );
    assert!(browser.cookie.is_none());

    let signed = browser.sign_in(&acme).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    let cookie = signed.set_cookie.expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(
        !cookie.contains(&acme),
        "the key never reaches the browser: {cookie}"
    );
    let overview = browser.get("/console/").await;
    assert!(overview.html.contains("tenant acme"), "{}", overview.html);

    let installations = browser.get("/console/installations").await;
    assert!(
        installations.html.contains("acme-tools"),
        "{}",
        installations.html
    );
    assert!(
        !installations.html.contains("beta-tools"),
        "{}",
        installations.html
    );
    for path in [
        "/console/installations?tenant=beta",
        "/console/runs?tenant=beta",
    ] {
        let theirs = browser.get(path).await;
        assert_eq!(
            theirs.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            theirs.html
        );
        assert!(
            theirs.html.contains("acts for tenant acme only"),
            "{}",
            theirs.html
        );
    }

    // A planted script in a filter comes back as text.
    let planted = browser
        .get("/console/runs?status=%3Cscript%3Ealert(1)%3C/script%3E")
        .await;
    assert_eq!(planted.status, StatusCode::BAD_REQUEST, "{}", planted.html);
    assert!(!planted.html.contains("<script>"), "{}", planted.html);
    assert!(planted.html.contains("&lt;script&gt;"), "{}", planted.html);

    // A dead run, retried from its page: not without the session's token, nor from
    // elsewhere.
    let queued = server
        .post(
            "/v1/installations/acme-tools/actions/spin-forever?async=true",
            &acme,
            json!({}),
        )
        .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.body);
    let run = queued.body["run"].as_str().expect("run").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.get(&format!("/v1/runs/{run}"), &acme).await.body["status"] != "dead" {
        assert!(std::time::Instant::now() < deadline, "run {run} never died");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let page = browser.get("/console/runs?status=dead").await;
    assert!(page.html.contains(&run), "{}", page.html);
    assert!(
        page.html
            .contains(&format!("aria-label=\"Retry run {run}\"")),
        "a labelled retry button: {}",
        page.html
    );
    let token = page.csrf();
    let retry = format!("/console/runs/{run}/retry");
    let forged = browser.post(&retry, &[("tenant", "acme")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.html);
    assert!(
        forged.html.contains("anti-forgery token"),
        "{}",
        forged.html
    );
    let stale = browser
        .post(&retry, &[("csrf", "0000"), ("tenant", "acme")])
        .await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
    let cross = browser
        .send(
            Method::POST,
            &retry,
            &[("csrf", &token), ("tenant", "acme")],
            false,
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let unchanged = server.get(&format!("/v1/runs/{run}"), &acme).await;
    assert_eq!(unchanged.body["status"], "dead", "nothing was done");
    let retried = browser
        .post(&retry, &[("csrf", &token), ("tenant", "acme")])
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER, "{}", retried.html);
    let again = server.get(&format!("/v1/runs/{run}"), &acme).await;
    assert_eq!(again.body["trigger"], "retry", "{}", again.body);

    // Revoking the key ends its sessions at once.
    let keys = server.get("/v1/api-keys?tenant=acme", &server.admin).await;
    let id = keys.body["keys"][0]["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let revoked = server
        .call(
            Method::DELETE,
            &format!("/v1/api-keys/{id}"),
            Some(&server.admin),
            Body::None,
        )
        .await;
    assert!(revoked.status.is_success(), "{}", revoked.body);
    let after = browser.get("/console/installations").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location.as_deref(), Some("/console/"));

    // The admin signs in, sees every tenant's installations, and signs out.
    let mut admin = Browser::new(&server);
    assert_eq!(
        admin.sign_in(&server.admin).await.status,
        StatusCode::SEE_OTHER
    );
    let all = admin.get("/console/installations").await;
    assert!(all.html.contains("acme-tools") && all.html.contains("beta-tools"));
    let token = all.csrf();
    let out = admin.post("/console/sign-out", &[("csrf", &token)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.set_cookie.is_some_and(|c| c.contains("Max-Age=0")));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_console_serves_no_console() {
    let op = Operator::new();
    let server = Server::start(&op, &[], &["--no-console"]);
    let mut browser = Browser::new(&server);
    assert_eq!(browser.get("/console/").await.status, StatusCode::NOT_FOUND);
    server.stop();
}

/// Where this run's screenshots go; with `AIRLOCK_BLESS=1` they also replace the committed set
/// under `docs/console/` that the README shows.
fn screenshot_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn shoot(chrome: &Chrome, name: &str) {
    let path = screenshot_dir().join(format!("{name}.png"));
    chrome.screenshot(&path).await;
    if std::env::var_os("AIRLOCK_BLESS").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
        std::fs::create_dir_all(&docs).expect("docs/console");
        std::fs::copy(&path, docs.join(format!("{name}.png"))).expect("blessed");
    }
}

/// In headless Chromium: the admin signs in, approves a pending upgrade and sees the version
/// move, retries a dead run, finds the hostile guest's limit kills among the security events,
/// a publisher named `<script>…` renders as text with no script in the page, and the audit
/// trail verifies from its page; a tenant pauses a schedule, and typing another tenant's URL
/// is refused; the pages fit a phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_an_admin_approves_retries_and_reads_events_and_no_planted_script_runs() {
    let Some(chrome) = Chrome::start(1280).await else {
        return;
    };
    let op = Operator::new();
    let server = Server::start(&op, &[], &[]);
    let acme = server.tenant("acme", &TENANT_SCOPES).await;
    server.tenant("beta", &TENANT_SCOPES).await;
    let first = server.upload(&op.example("hostile", "hostile.wasm")).await;
    let installed = server
        .post(
            "/v1/installations",
            &acme,
            json!({"bundle": first, "installation": "tools"}),
        )
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let manifest = read_example("hostile", "airlock.toml")
        .replace("version = \"0.1.0\"", "version = \"0.2.0\"")
        .replace(
            "# A small store that outlives invocations",
            "[[egress]]\nurl = \"https://upgrade.hostile.test\"\nmethods = [\"GET\"]\n\n# A small store that outlives invocations",
        );
    let upgrade = op.sign("hostile", "hostile.wasm", &manifest, "hostile-2.airlock");
    let second = server.upload(&upgrade).await;
    let pending = server
        .post(
            "/v1/installations",
            &acme,
            json!({"bundle": second, "installation": "tools"}),
        )
        .await;
    assert_eq!(
        pending.status,
        StatusCode::ACCEPTED,
        "held: {}",
        pending.body
    );
    let queued = server
        .post(
            "/v1/installations/tools/actions/spin-forever?async=true",
            &acme,
            json!({}),
        )
        .await;
    let run = queued.body["run"].as_str().expect("run").to_string();
    let scheduled = server
        .post(
            "/v1/installations/tools/schedules",
            &acme,
            json!({"cron": "0 3 * * *", "timezone": "Europe/Berlin",
                   "input": {"op": "get", "key": "cursor"}}),
        )
        .await;
    assert_eq!(scheduled.status, StatusCode::CREATED, "{}", scheduled.body);
    let schedule = scheduled.body["id"].as_str().expect("id").to_string();
    let described = read_example("hostile", "airlock.toml").replace(
        "description = \"Misbehaves on purpose",
        "description = \"<script>document.title='owned'</script> Misbehaves on purpose",
    );
    let planted_bundle = op.sign("hostile", "hostile.wasm", &described, "planted.airlock");
    let digest = server.upload(&planted_bundle).await;
    let installed = server
        .post(
            "/v1/installations",
            &acme,
            json!({"bundle": digest, "installation": "planted"}),
        )
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let key = op.keys.path().join("planted.key");
    let line = op.ok(&["keygen", "--out", &key.display().to_string()]);
    let line = String::from_utf8_lossy(&line.stdout).trim().to_string();
    let planted = "<script>document.title='owned'</script>";
    let trusted = server
        .post(
            "/v1/trust",
            &server.admin,
            json!({"public_key": line, "publisher": planted}),
        )
        .await;
    assert!(trusted.status.is_success(), "{}", trusted.body);

    let base = &server.base;
    chrome.open(&format!("{base}/console/")).await;
    shoot(&chrome, "sign-in").await;
    chrome.type_into("#key", &server.admin).await;
    chrome.click("button[type=submit]").await;
    let signed = chrome.source_with("operator").await;
    assert!(signed.contains("operator"), "signed in: {signed}");
    shoot(&chrome, "overview").await;
    chrome.open(&format!("{base}/console/tenants")).await;
    assert!(chrome.source_with("beta").await.contains("beta"));
    shoot(&chrome, "tenants").await;

    chrome
        .open(&format!("{base}/console/installations/tools?tenant=acme"))
        .await;
    let detail = chrome.source_with("upgrade.hostile.test").await;
    assert!(
        detail.contains("upgrade.hostile.test"),
        "the diff: {detail}"
    );
    shoot(&chrome, "pending-upgrade").await;
    chrome.click("form[action$='/approve'] button").await;
    let approved = chrome.source_with("hostile 0.2.0").await;
    assert!(
        approved.contains("hostile 0.2.0")
            && approved.contains("Pending upgrade</h2><p class=\"muted\">None."),
        "moved to the new version: {approved}"
    );
    let record = server.get("/v1/installations/tools", &acme).await;
    assert_eq!(record.body["version"], "0.2.0", "{}", record.body);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.get(&format!("/v1/runs/{run}"), &acme).await.body["status"] != "dead" {
        assert!(std::time::Instant::now() < deadline, "run {run} never died");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    chrome
        .open(&format!("{base}/console/runs?tenant=acme&status=dead"))
        .await;
    shoot(&chrome, "runs").await;
    chrome
        .click(&format!("button[aria-label='Retry run {run}']"))
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let retried = server.get(&format!("/v1/runs/{run}"), &acme).await;
        if retried.body["trigger"] == "retry" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not retried: {}",
            retried.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    chrome.open(&format!("{base}/console/events")).await;
    let events = chrome.source_with("limit-timeout").await;
    assert!(
        events.contains("limit-timeout"),
        "the hostile guest's kills: {events}"
    );
    shoot(&chrome, "events").await;

    chrome.open(&format!("{base}/console/trust")).await;
    assert!(
        chrome
            .source_with("&lt;script&gt;")
            .await
            .contains("&lt;script&gt;"),
        "shown as text"
    );
    assert!(
        chrome.all("script").await.is_empty(),
        "no script element in the page"
    );
    assert_ne!(chrome.url().await, "", "still on the page");
    shoot(&chrome, "publishers").await;

    chrome
        .open(&format!("{base}/console/installations/planted?tenant=acme"))
        .await;
    let described = chrome.source_with("<title>Installation planted").await;
    assert!(
        chrome.all("script").await.is_empty(),
        "no script element: {described}"
    );
    assert!(
        described.contains("&lt;script&gt;document.title"),
        "{described}"
    );
    assert!(
        described.contains("<title>Installation planted"),
        "the title stands: {described}"
    );

    chrome.open(&format!("{base}/console/metrics")).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    while !chrome.source().await.contains("Invocations that succeeded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no chart after two samples"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        chrome.open(&format!("{base}/console/metrics")).await;
    }
    shoot(&chrome, "metrics").await;

    chrome.open(&format!("{base}/console/audit")).await;
    chrome
        .click("form[action='/console/audit/verify'] button")
        .await;
    let verified = chrome.source_with("Verified.").await;
    assert!(
        verified.contains("Verified."),
        "the trail verifies: {verified}"
    );
    shoot(&chrome, "audit").await;
    chrome.quit().await;

    // A tenant, on a phone, typing another tenant's URL.
    let Some(phone) = Chrome::start(390).await else {
        return;
    };
    phone.open(&format!("{base}/console/")).await;
    phone.type_into("#key", &acme).await;
    phone.click("button[type=submit]").await;
    phone.source_with("tenant acme").await;
    phone
        .open(&format!("{base}/console/runs?tenant=acme"))
        .await;
    shoot(&phone, "runs-phone").await;
    phone
        .open(&format!("{base}/console/hooks?tenant=acme"))
        .await;
    phone
        .click(&format!("button[aria-label='pause schedule {schedule}']"))
        .await;
    let paused = phone.source_with("Resume").await;
    assert!(paused.contains("Resume"), "{paused}");
    shoot(&phone, "schedules-phone").await;
    let listed = server.get("/v1/schedules", &acme).await;
    assert_eq!(
        listed.body["schedules"][0]["paused"], true,
        "{}",
        listed.body
    );
    phone
        .open(&format!("{base}/console/installations?tenant=beta"))
        .await;
    assert!(
        phone
            .source_with("acts for tenant acme only")
            .await
            .contains("acts for tenant acme only"),
        "refused, saying why"
    );
    phone.quit().await;
    server.stop();
}
