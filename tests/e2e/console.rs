//! The operator console over HTTP (docs/api.md, "The console"): the headers every page
//! carries, sign-in with a key that becomes an `HttpOnly`, `SameSite=Strict` session, a
//! tenant kept to its own tenant, forms refused without the session's anti-CSRF token or from
//! another origin, a failed run retried from its page, text escaped, and a revoked key's
//! session ended.

use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{Method, StatusCode, redirect};
use serde_json::json;

use crate::operator::Operator;
use crate::serving::{Body, Server, TENANT_SCOPES};

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
