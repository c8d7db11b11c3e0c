//! Brokered egress end to end: real guests (`exfil`, `github-issues`) make wasi:http requests
//! through the broker to a TLS mock on loopback, while an "internal victim" listener proves that
//! refused requests never connect anywhere (security catalogue §5.2, §7).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use airlock_audit::{AuditDir, AuditTrail};
use airlock_host_api::audit::{Subject, Trigger};
use airlock_host_api::credentials::{CredentialScope, Secret, StaticSecrets};
use airlock_runtime::engine::EgressOptions;
use airlock_runtime::{Caller, EngineSettings, Integration, Invocation, Runtime};
use airlock_store::Store;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::mock::Victim;
use crate::support::{airlock, airlock_with, example, run_against_mocks, stderr, stdout};
use airlock_testkit::{Reply, TestCa, Upstream};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The "public upstream" lives on another loopback address than the victim.
pub(crate) const UPSTREAM_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

pub(crate) struct Egress {
    _data: TempDir,
    pub(crate) runtime: Runtime,
}

impl Egress {
    /// A runtime with the given dev switches: `pins` as `--resolve`, loopback allowed when
    /// `allow_loopback`, and `ca` trusted for TLS.
    pub(crate) fn new(pins: &[String], allow_loopback: bool, ca: Option<&TestCa>) -> Self {
        let egress = EgressOptions {
            resolve: pins.iter().map(|p| p.parse().expect("pin")).collect(),
            allow_private: if allow_loopback {
                "127.0.0.0/8".parse().expect("cidr")
            } else {
                Default::default()
            },
            ..EgressOptions::default()
        };
        Self::with_options(egress, ca)
    }

    /// A runtime with these egress options, and `ca` trusted for TLS.
    pub(crate) fn with_options(mut egress: EgressOptions, ca: Option<&TestCa>) -> Self {
        let data = TempDir::new().expect("temp dir");
        egress.extra_roots = ca
            .map(|ca| vec![ca.write_pem(data.path()).expect("CA written")])
            .unwrap_or_default();
        let settings = EngineSettings {
            egress,
            ..EngineSettings::default()
        };
        let runtime = Runtime::new(data.path(), settings).expect("runtime");
        Self {
            _data: data,
            runtime,
        }
    }

    /// The same runtime, recording into an audit trail in its data dir (checkpoint key in
    /// `audit_home`).
    pub(crate) fn with_audit(self, audit_home: &Path) -> (Self, AuditTrail) {
        let store = Store::open(self._data.path(), None).expect("store");
        let dir = AuditDir::open(audit_home, self._data.path()).expect("audit dir");
        let trail = AuditTrail::open(&store, dir).expect("audit trail");
        let egress = Self {
            runtime: self.runtime.with_audit(trail.clone()),
            _data: self._data,
        };
        (egress, trail)
    }

    /// The data dir.
    pub(crate) fn data(&self) -> &Path {
        self._data.path()
    }

    pub(crate) fn load(&self, name: &str) -> Integration {
        self.runtime.load(&example(name)).expect("loads")
    }

    /// The exfil guest's `fetch`: one GET of `url`.
    pub(crate) async fn fetch(&self, url: &str) -> Invocation {
        self.run("exfil", "fetch", json!({ "url": url })).await
    }

    pub(crate) async fn run(&self, name: &str, action: &str, input: Value) -> Invocation {
        self.run_with(name, action, input, &[]).await
    }

    /// Runs with these credential values (name, value), as `airlock run --secret` would.
    pub(crate) async fn run_with(
        &self,
        name: &str,
        action: &str,
        input: Value,
        secrets: &[(&str, &str)],
    ) -> Invocation {
        self.run_as(CredentialScope::local(), name, action, input, secrets)
            .await
    }

    /// Runs as one tenant's installation (`scope`) holding these credential values.
    pub(crate) async fn run_as(
        &self,
        scope: CredentialScope,
        name: &str,
        action: &str,
        input: Value,
        secrets: &[(&str, &str)],
    ) -> Invocation {
        let integration = self.load(name);
        let config = integration.validate_config(None).expect("no config");
        let values = secrets
            .iter()
            .map(|(name, value)| {
                let kind = integration.credentials()[*name].credential_type();
                let secret = Secret::new(kind, value.to_string()).expect("valid test secret");
                (name.to_string(), secret)
            })
            .collect();
        let caller = Caller {
            subject: Subject::new(scope.tenant.clone(), scope.installation.clone()),
            trigger: Trigger::Cli,
            credentials: self
                .runtime
                .credentials(scope, Arc::new(StaticSecrets::new(values))),
            kv: None,
        };
        self.runtime
            .invoke_as(&integration, &config, &caller, action, &input.to_string())
            .await
    }
}

/// A TLS mock for `name` on the upstream address, and a runtime pinning `name` to it; loopback
/// is allowed when `allow_loopback`, and the mock's CA trusted when `trusted`.
fn upstream(
    name: &str,
    allow_loopback: bool,
    trusted: bool,
    respond: impl Fn(&airlock_testkit::Recorded) -> Reply + Send + Sync + 'static,
) -> (Upstream, Egress) {
    let ca = TestCa::new().expect("test CA");
    let mock = Upstream::start(&ca, &[name], UPSTREAM_IP, respond).expect("upstream starts");
    let pin = format!("{name}={}", mock.addr());
    let egress = Egress::new(&[pin], allow_loopback, trusted.then_some(&ca));
    (mock, egress)
}

/// One trusted TLS mock serving every name in `names` (each pinned to it, whatever the port
/// asked), with loopback allowed: the usual setup for credential tests.
pub(crate) fn upstreams(
    names: &[&str],
    respond: impl Fn(&airlock_testkit::Recorded) -> Reply + Send + Sync + 'static,
) -> (Upstream, Egress) {
    let ca = TestCa::new().expect("test CA");
    let mock = Upstream::start(&ca, names, UPSTREAM_IP, respond).expect("upstream starts");
    let pins: Vec<String> = names
        .iter()
        .map(|name| format!("{name}={}", mock.addr()))
        .collect();
    (mock, Egress::new(&pins, true, Some(&ca)))
}

/// The `outcome` of each attempt in an exfil report.
pub(crate) fn outcomes(invocation: &Invocation) -> Vec<String> {
    let output = invocation
        .result
        .as_ref()
        .expect("exfil reports, never fails")
        .to_value();
    output["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or_default().to_string())
        .collect()
}

pub(crate) fn reasons(invocation: &Invocation) -> Vec<String> {
    invocation
        .egress
        .iter()
        .map(|e| e.reason.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn ssrf_attempts_are_denied_and_never_connect() {
    let victim = Victim::start(LOOPBACK);
    let port = victim.addr().port();
    // Even with loopback allowed (the loosest dev setting), literals and tricks stay denied.
    let egress = Egress::new(&[], true, None);
    for action in [
        "ip-literals",
        "metadata",
        "userinfo",
        "plain-http",
        "undeclared-host",
    ] {
        let ran = egress.run("exfil", action, json!({})).await;
        let outcomes = outcomes(&ran);
        assert!(!outcomes.is_empty());
        assert!(
            outcomes.iter().all(|o| o == "HttpRequestDenied"),
            "{action}: {outcomes:?}"
        );
    }
    let aimed_at_victim = [
        format!("https://127.0.0.1:{port}/"),
        format!("https://[::ffff:127.0.0.1]:{port}/"),
        format!("https://2130706433:{port}/"),
        format!("https://0x7f.1:{port}/"),
        format!("https://localhost:{port}/"),
        format!("https://api.allowed.test@127.0.0.1:{port}/"),
        format!("http://api.allowed.test:{port}/"),
        format!("https://api.allowed.test:{port}/"),
    ];
    for url in &aimed_at_victim {
        let ran = egress.fetch(url).await;
        assert_eq!(outcomes(&ran), ["HttpRequestDenied"], "{url}");
    }
    assert_eq!(
        victim.accepts(),
        0,
        "nothing may connect to the internal victim"
    );
}

#[tokio::test]
async fn an_allowed_name_pinned_to_loopback_is_denied_by_address() {
    let (mock, egress) = upstream("api.allowed.test", false, true, |_| {
        Reply::json(200, json!({"reached": true}))
    });
    let ran = egress.fetch("https://api.allowed.test/").await;
    assert_eq!(outcomes(&ran), ["DestinationIpProhibited"]);
    assert_eq!(reasons(&ran), ["destination-ip-prohibited:loopback"]);
    assert_eq!(mock.accepts(), 0);
}

#[tokio::test]
async fn a_brokered_request_reaches_the_upstream_in_canonical_form() {
    let (mock, egress) = upstream("api.allowed.test", true, true, |_| {
        Reply::json(200, json!({"reached": true}))
    });
    let ran = egress.fetch("https://API.Allowed.test./items?page=2").await;
    assert_eq!(outcomes(&ran), ["ok 200"], "{:?}", ran.result);
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("host"), ["api.allowed.test"]);
    assert_eq!(seen[0].sni.as_deref(), Some("api.allowed.test"));
    assert_eq!(seen[0].path_and_query, "/items?page=2");
    let event = &ran.egress[0];
    assert_eq!(event.status, Some(200));
    assert_eq!(event.rule, Some(0));
    assert_eq!(
        event.target.as_deref(),
        Some("https://api.allowed.test/items"),
        "no query in events"
    );
}

#[tokio::test]
async fn redirects_go_back_to_the_guest_and_its_follow_up_is_judged_anew() {
    let victim = Victim::start(LOOPBACK);
    let location = format!(
        "https://127.0.0.1:{}/latest/meta-data/",
        victim.addr().port()
    );
    let (mock, egress) = upstream("api.allowed.test", true, true, move |_| {
        Reply::redirect(302, &location)
    });
    let ran = egress
        .run(
            "exfil",
            "follow-redirect",
            json!({"url": "https://api.allowed.test/start"}),
        )
        .await;
    assert_eq!(
        outcomes(&ran),
        ["ok 302", "HttpRequestDenied"],
        "{:?}",
        ran.result
    );
    assert_eq!(
        mock.requests().len(),
        1,
        "the host never follows a redirect"
    );
    assert_eq!(victim.accepts(), 0);
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_handshake() {
    let (mock, egress) = upstream("api.allowed.test", true, false, |_| Reply::status(200));
    let ran = egress.fetch("https://api.allowed.test/").await;
    assert_eq!(outcomes(&ran), ["TlsCertificateError"]);
    assert_eq!(reasons(&ran), ["tls-certificate"]);
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn the_guest_cannot_set_credential_headers() {
    let (mock, egress) = upstream("api.allowed.test", true, true, Reply::echo_headers);
    let ran = egress.run("exfil", "set-authorization", json!({})).await;
    let outcomes = outcomes(&ran);
    assert!(
        outcomes.iter().all(|o| o == "HeaderForbidden"),
        "{outcomes:?}"
    );
    assert!(
        mock.requests()
            .iter()
            .all(|r| r.header("authorization").is_empty())
    );
}

/// Fields upstream frameworks and proxies honour to change a request's method, path, host,
/// scheme or client identity after the broker judged it, and hop-by-hop fields the broker's own
/// client owns: each is refused when the guest sets it, however it is spelled, and the upstream
/// never sees a request carrying one.
#[tokio::test]
async fn routing_and_override_headers_are_refused_and_never_reach_the_upstream() {
    let (mock, egress) = upstream("api.allowed.test", true, true, Reply::echo_headers);
    let refused = [
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X-Original-Method", "DELETE"),
        ("X-Original-URL", "/admin"),
        ("X-Original-URI", "/admin"),
        ("X-Rewrite-URL", "/admin"),
        ("X-Override-URL", "/admin"),
        ("X-Envoy-Original-Path", "/admin"),
        ("Forwarded", "for=10.0.0.1;host=internal.test;proto=http"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("X-Forwarded-Host", "internal.test"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-Forwarded-Port", "8080"),
        ("X-Forwarded-Server", "internal.test"),
        ("X-Forwarded-Scheme", "http"),
        ("X-Forwarded-Uri", "/admin"),
        ("X-Forwarded-Client-Cert", "Hash=00"),
        ("X-Host", "internal.test"),
        ("X-Real-IP", "10.0.0.1"),
        ("True-Client-IP", "10.0.0.1"),
        ("X-Client-IP", "10.0.0.1"),
        ("CF-Connecting-IP", "10.0.0.1"),
        ("X-Goog-Authenticated-User-Email", "admin@acme.test"),
        ("X-Remote-User", "admin"),
        ("Via", "1.1 internal"),
        ("TE", "trailers"),
        ("Trailer", "X-Auth-Token"),
        ("Expect", "100-continue"),
        ("Max-Forwards", "0"),
        ("Connection", "X-Api-Key"),
        ("Keep-Alive", "timeout=5"),
        ("Upgrade", "h2c"),
        ("Transfer-Encoding", "chunked"),
        ("Proxy", "http://10.0.0.1:3128"),
        ("Cookie2", "$Version=1"),
        // As servers that read `_` as `-` still honour them, and in any case.
        ("X_Forwarded_For", "10.0.0.1"),
        ("x_HTTP_method_OVERRIDE", "DELETE"),
        ("X-ORIGINAL-url", "/admin"),
    ];
    for (name, value) in refused {
        let input = json!({
            "url": "https://api.allowed.test/items",
            "headers": [["Accept", "*/*"], [name, value]],
        });
        let ran = egress.run("exfil", "fetch", input).await;
        let attempt = &ran.result.as_ref().expect("exfil reports").to_value()["attempts"][0];
        assert_eq!(attempt["outcome"], "HeaderForbidden", "{name}: {attempt}");
        assert_eq!(
            attempt["detail"],
            format!("HeaderForbidden: header {name:?}"),
            "the refusal names the header"
        );
    }
    // A folded value, or a length no body follows, never makes a request either.
    for (name, value, outcome) in [
        ("X-Note", "a\r\n b", "HeaderInvalidSyntax"),
        ("Content-Length", "5", "HttpRequestBodySize"),
    ] {
        let input = json!({"url": "https://api.allowed.test/items", "headers": [[name, value]]});
        let ran = egress.run("exfil", "fetch", input).await;
        assert_eq!(outcomes(&ran), [outcome], "{name}");
    }
    assert_eq!(mock.accepts(), 0, "nothing was sent: {:?}", mock.requests());

    // The same request without them goes out as the broker judged it.
    let input = json!({
        "url": "https://api.allowed.test/items",
        "headers": [["Accept", "*/*"], ["X-Request-Id", "r-1"]],
    });
    let ran = egress.run("exfil", "fetch", input).await;
    assert_eq!(outcomes(&ran), ["ok 200"], "{:?}", ran.result);
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path_and_query.as_str()),
        ("GET", "/items")
    );
    assert_eq!(seen[0].header("x-request-id"), ["r-1"]);
}

/// `_method` (Rails, Laravel, Symfony, Express) and method-override names in the query would
/// turn an allowed POST into a DELETE upstream: the broker refuses the request.
#[tokio::test]
async fn a_method_override_in_the_query_is_refused() {
    let (mock, egress) = upstream("api.allowed.test", true, true, |_| Reply::status(204));
    for query in [
        "_method=DELETE",
        "page=2&%5Fmethod=DELETE",
        "_METHOD=PUT",
        "page=2;_method=DELETE",
        "X-HTTP-Method-Override=DELETE",
        "x_http_method=DELETE",
    ] {
        let url = format!("https://api.allowed.test/items?{query}");
        let ran = egress
            .run("exfil", "fetch", json!({"url": url, "method": "POST"}))
            .await;
        assert_eq!(outcomes(&ran), ["HttpRequestDenied"], "{query}");
        assert_eq!(reasons(&ran), ["method-override"], "{query}");
        assert_eq!(ran.egress[0].rule, Some(0), "judged after its rule matched");
    }
    assert_eq!(mock.accepts(), 0);
    // `method` itself is data.
    let url = "https://api.allowed.test/items?method=card&payment_method=sepa";
    let ran = egress
        .run("exfil", "fetch", json!({"url": url, "method": "POST"}))
        .await;
    assert_eq!(outcomes(&ran), ["ok 204"], "{:?}", ran.result);
    assert_eq!(
        mock.requests()[0].path_and_query,
        "/items?method=card&payment_method=sepa"
    );
}

#[tokio::test]
async fn a_request_whose_credential_is_not_set_fails_closed() {
    let (mock, egress) = upstream("api.github.com", true, true, |_| {
        Reply::json(200, json!([]))
    });
    let ran = egress
        .run(
            "github-issues",
            "list-open",
            json!({"owner": "acme", "repo": "widgets"}),
        )
        .await;
    assert_eq!(reasons(&ran), ["credential-missing"]);
    assert_eq!(ran.egress[0].credential.as_deref(), Some("github"));
    let error = ran.result.expect_err("no credential, no request");
    assert_eq!(error.class(), "guest-error", "{error}");
    assert_eq!(mock.accepts(), 0, "nothing goes out without its credential");
}

/// `airlock` arguments for exfil's `fetch` of https://api.allowed.test/, pinned to `mock`.
fn fetch_api_through_the_cli(mock: &Upstream, ca: &TestCa, data: &Path) -> Vec<String> {
    let pins = [format!("api.allowed.test={}", mock.addr())];
    let mut args = run_against_mocks(
        &pins,
        &ca.write_pem(data).expect("CA written"),
        "exfil",
        "fetch",
    );
    args.extend([
        "--input".into(),
        r#"{"url": "https://api.allowed.test/"}"#.into(),
    ]);
    args
}

#[test]
fn cli_dev_switches_are_loud_and_reach_a_mock() {
    let ca = TestCa::new().expect("test CA");
    let mock = Upstream::start(&ca, &["api.allowed.test"], UPSTREAM_IP, |_| {
        Reply::json(200, json!({"ok": true}))
    })
    .expect("upstream starts");
    let data = TempDir::new().expect("temp");
    let args = fetch_api_through_the_cli(&mock, &ca, data.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = airlock(data.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    for switch in ["--resolve", "--allow-private", "--extra-root-ca"] {
        assert!(
            err.contains(&format!("warning: dev switch {switch}")),
            "{err}"
        );
    }
    assert!(
        err.contains("[egress allowed] GET https://api.allowed.test/ → 200"),
        "{err}"
    );
    assert!(stdout(&out).contains("ok 200"), "{}", stdout(&out));
    assert_eq!(mock.requests().len(), 1);
}

#[test]
fn proxy_variables_are_never_used() {
    let victim = Victim::start(LOOPBACK);
    let proxy = format!("http://127.0.0.1:{}", victim.addr().port());
    let ca = TestCa::new().expect("test CA");
    let mock = Upstream::start(&ca, &["api.allowed.test"], UPSTREAM_IP, |_| {
        Reply::status(204)
    })
    .expect("upstream starts");
    let data = TempDir::new().expect("temp");
    let args = fetch_api_through_the_cli(&mock, &ca, data.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = airlock_with(
        data.path(),
        &args,
        "",
        &[
            ("HTTPS_PROXY", &proxy),
            ("https_proxy", &proxy),
            ("HTTP_PROXY", &proxy),
            ("ALL_PROXY", &proxy),
            ("NO_PROXY", ""),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("ok 204"), "{}", stdout(&out));
    assert_eq!(mock.requests().len(), 1, "the request went direct");
    assert_eq!(victim.accepts(), 0, "the proxy was never contacted");
}

#[tokio::test]
async fn a_response_head_over_64_kib_is_refused() {
    let (mock, egress) = upstream("api.allowed.test", true, true, |request| {
        let size = if request.path_and_query == "/big" {
            70
        } else {
            60
        };
        Reply::status(200).header("x-filler", &"a".repeat(size << 10))
    });
    let ran = egress.fetch("https://api.allowed.test/small").await;
    assert_eq!(outcomes(&ran), ["ok 200"], "{:?}", ran.result);
    let ran = egress.fetch("https://api.allowed.test/big").await;
    let outcome = &outcomes(&ran)[0];
    assert!(!outcome.starts_with("ok"), "{outcome}");
    eprintln!("OUTCOME {outcome} {:?}", ran.egress[0].reason);
    assert_eq!(
        ran.egress[0].decision,
        airlock_host_api::egress::Decision::Failed
    );
    assert_eq!(mock.requests().len(), 2);
}
