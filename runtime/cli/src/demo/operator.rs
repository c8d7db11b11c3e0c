//! The demo's operator step: the real server (`airlock serve`'s routes, auth, admission and
//! audit) on 127.0.0.1, over a throwaway data dir that trusts the demo key. Through its API, a
//! tenant connects the Slack example by OAuth consent (authorization code with PKCE, started
//! at a one-time link that binds the consent to the browser's cookie) against a loopback
//! stand-in for slack.com, and posts through the brokered token; then a webhook endpoint runs
//! the contact mapper for a signed delivery, and refuses a replay and a forgery.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use airlock_host_api::audit::AuditEvent;
use airlock_testkit::{TestCa, Upstream};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::super::state::State;
use super::{Demo, LOOPBACK, Signer, pinned_to, step};
use airlock_audit::AuditTrail;
use airlock_platform::api_keys::{self, Scope};
use airlock_platform::install::{InstallRequest, Installer};
use airlock_platform::tenants;
use airlock_platform::trust as trust_service;
use airlock_runtime::clock::now_unix;
use airlock_runtime::engine::EngineSettings;
use airlock_runtime::ids::TenantId;
use airlock_runtime::runtime::Runtime;
use airlock_server::{App, ServeLimits};

const SLACK: &str = "slack.com";

/// What the stand-in authorization server knows: codes issued, by PKCE challenge.
#[derive(Default)]
struct Consents {
    codes: HashMap<String, String>,
    token: Option<String>,
    posted: usize,
}

/// Runs the step over a fresh data dir; failures are recorded in `demo`.
pub(super) async fn show(
    demo: &mut Demo,
    signer: &Signer,
    examples: &Path,
    settings: &EngineSettings,
) -> anyhow::Result<()> {
    step("An operator server on loopback: OAuth consent, brokered tokens, signed webhooks");
    let dirs = (tempfile::TempDir::new()?, tempfile::TempDir::new()?);
    let (data, audit_dir) = (dirs.0.path(), dirs.1.path());
    let consents = Arc::new(Mutex::new(Consents::default()));
    let ca = TestCa::new()?;
    let slack = Upstream::start_http(&ca, &[SLACK], LOOPBACK, stand_in(consents.clone()))?;
    let settings = pinned_to(settings, SLACK, (slack.addr(), &ca), data)?;
    let (store, trail) = State {
        data: data.to_path_buf(),
        store: None,
        master_key: None,
        audit_dir: Some(audit_dir.to_path_buf()),
    }
    .open()?;
    let runtime = Runtime::new(data, settings)?;
    let tenant: TenantId = "demo".parse()?;
    tenants::create(&*store, &trail, &tenant)?;
    trust_service::add(&*store, &trail, &signer.public, "Acme Integrations")?;
    let installer = Installer {
        runtime: &runtime,
        store: &*store,
        trail: &trail,
    };
    for (example, config) in [
        ("slack-notifier", None),
        ("contact-mapper", Some("sample-config.json")),
    ] {
        let dir = examples.join(example);
        let (bundle, origin) = signer.bundle(&dir)?;
        let config = config
            .map(|c| std::fs::read_to_string(dir.join(c)))
            .transpose()?;
        // The operator approves everything each example declares.
        let declared: Vec<_> = airlock_runtime::manifest::LoadedManifest::load(&dir)?
            .manifest
            .egress
            .iter()
            .map(|e| e.rule().clone())
            .collect();
        installer.install(InstallRequest {
            tenant: tenant.clone(),
            installation: None,
            bundle,
            origin,
            grant: Some(airlock_platform::install::Grant::everything(&declared)),
            config,
            allow_downgrade: false,
            approver: airlock_platform::install::Approver::Admin,
        })?;
    }
    let scopes = Scope::ALL.to_vec();
    let key = api_keys::issue(&*store, &trail, Some(&tenant), scopes, None)?.key;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Arc::new(App::new(
        runtime,
        store.clone(),
        trail.clone(),
        ServeLimits::default(),
        &format!("http://{addr}"),
    )?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(airlock_server::serve(listener, None, app, async {
        let _ = stopped.await;
    }));
    println!(
        "  airlock serve on http://{addr} over a throwaway data dir; a stand-in for {SLACK} on {} plays Slack's OAuth server and API",
        slack.addr()
    );
    let api = Api { addr, key: &key };
    connect_and_post(demo, &api, &consents).await?;
    webhooks(demo, &api).await?;
    let _ = stop.send(());
    server.await??;
    summarize(demo, &trail)?;
    Ok(())
}

/// The tenant registers the OAuth client, consents, and posts through the brokered token.
async fn connect_and_post(
    demo: &mut Demo,
    api: &Api<'_>,
    consents: &Mutex<Consents>,
) -> anyhow::Result<()> {
    let client = json!({"value": json!({"client_id": "1234.5678", "client_secret": "demo-client-secret"}).to_string()});
    let (status, _) = api
        .json(
            Method::PUT,
            "/v1/installations/slack-notifier/credentials/slack",
            client,
        )
        .await?;
    demo.check(
        status == StatusCode::CREATED,
        "the operator registered the platform's Slack OAuth client (sealed like any credential)",
    );
    let started = browse(api).await?;
    let params = query(&started.authorize);
    let cookie = started.cookie.as_deref().unwrap_or_default();
    demo.check(
        started.cookie.is_some()
            && ["HttpOnly", "Secure", "SameSite=Lax"].iter().all(|a| cookie.contains(a))
            && params.get("code_challenge_method").map(String::as_str) == Some("S256"),
        &format!("connect returns a one-time link on Airlock; the browser that opens it gets an HttpOnly, Secure, SameSite=Lax cookie and goes to https://{SLACK}/oauth/v2/authorize with scope chat:write, a PKCE challenge and a single-use state"),
    );
    let (status, again) = api
        .call(Method::GET, &started.path, None, &[], Vec::new())
        .await?;
    demo.check(
        status == StatusCode::BAD_REQUEST,
        &format!(
            "the same link opened again (forwarded, say) is refused: {}",
            again["error"]["reason"]
        ),
    );
    // The browser: the person consents, the provider sends them back with a code.
    let callback = consent(consents, &params);
    let cookie = started.cookie.unwrap_or_default();
    let nonce = cookie.split(';').next().unwrap_or_default().to_string();
    let with_cookie = [(COOKIE.as_str(), nonce)];
    let (status, connected) = api
        .call(Method::GET, &callback, None, &with_cookie, Vec::new())
        .await?;
    demo.check(
        status == StatusCode::OK,
        &format!(
            "the callback, from the browser holding the cookie, exchanged the code with the PKCE verifier: connected, scopes {}",
            connected["scopes"]
        ),
    );
    let (status, again) = api
        .call(Method::GET, &callback, None, &with_cookie, Vec::new())
        .await?;
    demo.check(
        status == StatusCode::BAD_REQUEST,
        &format!(
            "the same callback again is refused: {}",
            again["error"]["reason"]
        ),
    );
    // A provider URL forwarded to someone else: their browser has no cookie.
    let forwarded = browse(api).await?;
    let callback = consent(consents, &query(&forwarded.authorize));
    let (status, refused) = api
        .call(Method::GET, &callback, None, &[], Vec::new())
        .await?;
    demo.check(
        status == StatusCode::BAD_REQUEST,
        &format!(
            "the provider's URL forwarded to another person: their consent comes back without the cookie and connects nothing: {}",
            refused["error"]["reason"]
        ),
    );
    let (_, listed) = api
        .call(
            Method::GET,
            "/v1/installations/slack-notifier/credentials",
            Some(api.key),
            &[],
            Vec::new(),
        )
        .await?;
    let account = &listed["connections"][0]["account"];
    demo.check(
        account["id"] == "U0DEMO1" && account["workspace"] == "T0DEMO1",
        &format!(
            "the connection lists the Slack account it connected, {} in workspace {} (sealed at rest, never in the trail)",
            account["id"], account["workspace"]
        ),
    );
    let alert = json!({"channel": "C024BE91L", "text": "disk almost full", "severity": "warning"});
    let (status, output) = api
        .json(
            Method::POST,
            "/v1/installations/slack-notifier/actions/post-alert",
            alert,
        )
        .await?;
    let held = consents.lock().unwrap_or_else(PoisonError::into_inner);
    let token = held.token.clone().unwrap_or_default();
    let leaked = !token.is_empty() && output.to_string().contains(&token);
    demo.check(
        status == StatusCode::OK && held.posted == 1 && !leaked,
        &format!("post-alert posted with the brokered token ({SLACK} saw it once); the guest never saw it: {output}"),
    );
    Ok(())
}

/// A consent started in the person's browser.
struct Started {
    /// The one-time link's path on Airlock.
    path: String,
    /// Where the link sent the browser: the provider's authorization URL.
    authorize: String,
    /// The `Set-Cookie` the link answered with.
    cookie: Option<String>,
}

/// `connect`, then the browser opens the start link it returned.
async fn browse(api: &Api<'_>) -> anyhow::Result<Started> {
    let (_, started) = api
        .json(
            Method::POST,
            "/v1/installations/slack-notifier/credentials/slack/connect",
            json!({}),
        )
        .await?;
    let url = started["start_url"].as_str().unwrap_or_default();
    let path = url
        .strip_prefix(&format!("http://{}", api.addr))
        .unwrap_or(url)
        .to_string();
    let (status, headers, _) = api.send(Method::GET, &path, None, &[], Vec::new()).await?;
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    anyhow::ensure!(
        status == StatusCode::FOUND,
        "the start link answered {status}"
    );
    Ok(Started {
        path,
        authorize: header(LOCATION).unwrap_or_default(),
        cookie: header(SET_COOKIE),
    })
}

/// The person consents at the stand-in: it issues a code for the PKCE challenge in `params`;
/// returns the callback path the browser is sent back to.
fn consent(consents: &Mutex<Consents>, params: &HashMap<String, String>) -> String {
    let code = format!("code-{}", hex::encode(rand::random::<[u8; 8]>()));
    let challenge = params.get("code_challenge").cloned().unwrap_or_default();
    consents
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .codes
        .insert(code.clone(), challenge);
    let state = params.get("state").cloned().unwrap_or_default();
    format!(
        "/v1/oauth/callback?code={code}&state={}",
        percent_encoding::utf8_percent_encode(&state, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// A webhook endpoint runs the mapper for a signed delivery; a replay and a forgery do not.
async fn webhooks(demo: &mut Demo, api: &Api<'_>) -> anyhow::Result<()> {
    let request = json!({"installation": "contact-mapper", "action": "map-contact"});
    let (status, endpoint) = api.json(Method::POST, "/v1/webhooks", request).await?;
    let secret = endpoint["secret"].as_str().unwrap_or_default().to_string();
    let path = endpoint["path"].as_str().unwrap_or_default().to_string();
    demo.check(
        status == StatusCode::CREATED && secret.starts_with("whsec_"),
        &format!("webhook endpoint {path} (Standard Webhooks); its 32-byte secret is shown once"),
    );
    let body = json!({"Id": "0035g00000XyZ1AAA", "FirstName": "Grace", "LastName": "Hopper", "Email": "Grace@Example.COM"}).to_string();
    let key = STANDARD.decode(secret.trim_start_matches("whsec_"))?;
    let id = format!("msg_{}", hex::encode(rand::random::<[u8; 8]>()));
    let timestamp = now_unix().to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let signature = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let headers = [
        ("webhook-id", id),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", signature),
    ];
    let deliver = async |body: &str| {
        api.call(
            Method::POST,
            &path,
            None,
            &headers,
            body.as_bytes().to_vec(),
        )
        .await
    };
    let (status, output) = deliver(&body).await?;
    demo.check(
        status == StatusCode::OK,
        &format!("a signed delivery ran map-contact: {output}"),
    );
    let (status, replay) = deliver(&body).await?;
    demo.check(
        status == StatusCode::CONFLICT,
        &format!(
            "the same delivery again: {} {}",
            status.as_u16(),
            replay["error"]["code"]
        ),
    );
    let forged = body.replace("Grace", "Mallory");
    let (status, refused) = deliver(&forged).await?;
    demo.check(
        status == StatusCode::UNAUTHORIZED,
        &format!(
            "a tampered body: {} {}",
            status.as_u16(),
            refused["error"]["reason"]
        ),
    );
    Ok(())
}

/// What the operator's trail recorded in this step.
fn summarize(demo: &mut Demo, trail: &AuditTrail) -> anyhow::Result<()> {
    let mut kinds: Vec<String> = Vec::new();
    for line in trail.lines() {
        let (_, line) = line?;
        if let Ok(record) = airlock_audit::record::open(&line) {
            let kind = match &record.envelope.event {
                AuditEvent::Invocation(r) => format!("invocation ({:?})", r.trigger).to_lowercase(),
                other => other.kind().to_string(),
            };
            kinds.push(kind);
        }
    }
    let count = |k: &str| kinds.iter().filter(|x| x.as_str() == k).count();
    println!(
        "  the operator's trail: {} records, among them connection-changed ×{}, connection-refused ×{}, webhook-refused ×{}, invocations by webhook ×{}",
        kinds.len(),
        count("connection-changed"),
        count("connection-refused"),
        count("webhook-refused"),
        count("invocation (webhook)"),
    );
    demo.check(
        count("connection-changed") == 1
            && count("webhook-refused") == 2
            && count("invocation (webhook)") == 1,
        "every connection, refusal and webhook run is on the record",
    );
    Ok(())
}

/// The server's API, as a tenant key sees it.
struct Api<'a> {
    addr: SocketAddr,
    key: &'a str,
}

impl Api<'_> {
    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let headers = [("content-type", "application/json".to_string())];
        self.call(
            method,
            path,
            Some(self.key),
            &headers,
            body.to_string().into_bytes(),
        )
        .await
    }

    /// One HTTP/1.1 request on a new connection; the JSON answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let (status, _, body) = self.send(method, path, key, headers, body).await?;
        Ok((status, body))
    }

    /// One HTTP/1.1 request on a new connection; the answer's status, headers and JSON.
    async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> anyhow::Result<(StatusCode, HeaderMap, Value)> {
        let stream = tokio::net::TcpStream::connect(self.addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string());
        if let Some(key) = key {
            request = request.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(body)))?)
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

/// The query parameters of a URL, decoded.
fn query(url: &str) -> HashMap<String, String> {
    url.split_once('?')
        .map_or("", |(_, q)| q)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                percent_decode_str(v).decode_utf8_lossy().into_owned(),
            )
        })
        .collect()
}

/// Slack's stand-in: `oauth.v2.access` exchanges a code it issued, if the PKCE verifier
/// matches its challenge; `chat.postMessage` accepts only the token it issued.
fn stand_in(
    consents: Arc<Mutex<Consents>>,
) -> impl Fn(&Request<Bytes>) -> Response<Bytes> + Send + Sync + 'static {
    move |request: &Request<Bytes>| {
        let mut held = consents.lock().unwrap_or_else(PoisonError::into_inner);
        let (status, body) = match request.uri().path() {
            "/api/oauth.v2.access" => {
                let form = query(&format!("?{}", String::from_utf8_lossy(request.body())));
                let verified = form
                    .get("code")
                    .and_then(|c| held.codes.remove(c))
                    .zip(form.get("code_verifier"))
                    .is_some_and(|(challenge, verifier)| {
                        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge
                    });
                if verified
                    && form.get("grant_type").map(String::as_str) == Some("authorization_code")
                {
                    let token = format!("xoxb-demo-{}", hex::encode(rand::random::<[u8; 12]>()));
                    held.token = Some(token.clone());
                    (
                        StatusCode::OK,
                        json!({"ok": true, "access_token": token, "token_type": "bot", "scope": "chat:write",
                               "authed_user": {"id": "U0DEMO1"}, "team": {"id": "T0DEMO1"}}),
                    )
                } else {
                    (
                        StatusCode::OK,
                        json!({"ok": false, "error": "invalid_grant"}),
                    )
                }
            }
            "/api/chat.postMessage" => {
                let bearer = request
                    .headers()
                    .get(AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if held
                    .token
                    .as_ref()
                    .is_some_and(|t| bearer == Some(format!("Bearer {t}")))
                {
                    held.posted += 1;
                    (
                        StatusCode::OK,
                        json!({"ok": true, "channel": "C024BE91L", "ts": "1700000000.000100"}),
                    )
                } else {
                    (
                        StatusCode::OK,
                        json!({"ok": false, "error": "invalid_auth"}),
                    )
                }
            }
            _ => (
                StatusCode::NOT_FOUND,
                json!({"ok": false, "error": "unknown_method"}),
            ),
        };
        Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "application/json")
            .body(Bytes::from(body.to_string()))
            .unwrap_or_default()
    }
}
