//! A real browser for the console's tests: Debian's headless Chromium driven through
//! chromedriver over the W3C WebDriver protocol (the few commands the tests use, over the
//! HTTP client the tests already have). Without `chromium` and `chromedriver` the browser
//! tests are skipped, saying so, unless `AIRLOCK_REQUIRE_CHROMIUM` is set (`scripts/test`
//! installs both and sets it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One headless Chromium session, ended (and its driver stopped) when dropped.
pub struct Chrome {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

fn installed(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
}

impl Chrome {
    /// A browser `width` pixels wide, or `None` (said on stderr) without Chromium.
    pub async fn start(width: u32) -> Option<Self> {
        let (Some(chromium), Some(driver)) = (installed("chromium"), installed("chromedriver"))
        else {
            assert!(
                std::env::var_os("AIRLOCK_REQUIRE_CHROMIUM").is_none(),
                "AIRLOCK_REQUIRE_CHROMIUM is set but chromium or chromedriver is missing"
            );
            eprintln!(
                "skipped: no chromium and chromedriver (apt install chromium chromium-driver)"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::TempDir::new().expect("a profile dir");
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},900"),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let created = exchange(http.post(format!("{base}/session")), Some(capabilities)).await;
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        Some(Self {
            driver: child,
            base,
            session,
            http,
            _profile: profile,
        })
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let reply = exchange(self.http.request(method, url), body).await;
        assert!(
            reply["value"].get("error").is_none(),
            "webdriver {path}: {reply}"
        );
        reply["value"].clone()
    }

    pub async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn url(&self) -> String {
        let url = self.command(reqwest::Method::GET, "/url", None).await;
        url.as_str().unwrap_or_default().to_string()
    }

    /// The page's HTML as the browser holds it now.
    pub async fn source(&self) -> String {
        let source = self.command(reqwest::Method::GET, "/source", None).await;
        source.as_str().unwrap_or_default().to_string()
    }

    /// The page's HTML once it holds `text` (a click's navigation may still be under way),
    /// waiting up to 10 s.
    pub async fn source_with(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let source = self.source().await;
            if source.contains(text) || Instant::now() > deadline {
                return source;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The elements `css` selects.
    pub async fn all(&self, css: &str) -> Vec<String> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()
            .map(|elements| {
                elements
                    .iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn one(&self, css: &str) -> String {
        self.all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element {css}"))
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.one(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.one(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Saves the window as a PNG at `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("base64 PNG");
        std::fs::write(path, bytes).expect("screenshot written");
    }
}

/// Sends `request` with `body` as JSON; the JSON answer.
async fn exchange(request: reqwest::RequestBuilder, body: Option<Value>) -> Value {
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).expect("JSON")),
        None => request,
    };
    let bytes = request
        .send()
        .await
        .expect("chromedriver answers")
        .bytes()
        .await
        .expect("a body");
    serde_json::from_slice(&bytes).expect("JSON")
}

impl Chrome {
    /// Ends the session (the browser exits) and stops the driver.
    pub async fn quit(self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
