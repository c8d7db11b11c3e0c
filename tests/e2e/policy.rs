//! `airlock policy check` gives the documented answer for the security catalogue's EG cases
//! that a policy can decide before any socket exists (section 5.2; its allow-list is in
//! `tests/fixtures/egress-catalogue`). Cases that need a live request (rebinding, redirects,
//! proxies, timeouts) belong to the broker's tests.

use tempfile::TempDir;

use crate::support::{airlock, stderr, stdout};

fn fixture() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/egress-catalogue").to_string()
}

/// Runs `policy check` and returns (exit code, the answer's JSON).
fn check(method: &str, url: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let data = TempDir::new().expect("temp");
    let fixture = fixture();
    let mut args = vec!["policy", "check", &fixture, method, url, "--json"];
    args.extend(extra);
    let out = airlock(data.path(), &args);
    let answer = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {}{}", stdout(&out), stderr(&out)));
    (out.status.code(), answer)
}

/// (case, method, url, extra args, expected: Ok(()) for allow or Err(reason code)).
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    Result<(), &'static str>,
);

#[rustfmt::skip]
const CASES: &[Case] = &[
    ("baseline", "GET", "https://api.allowed.test/v1/items", &[], Ok(())),
    ("EG-01", "GET", "https://127.0.0.1/", &[], Err("ip-literal")),
    ("EG-01", "GET", "https://169.254.169.254/latest/meta-data/", &[], Err("ip-literal")),
    ("EG-01", "GET", "https://[::1]/", &[], Err("ip-literal")),
    ("EG-01", "GET", "https://[fd00:ec2::254]/", &[], Err("ip-literal")),
    ("EG-01", "GET", "https://0.0.0.0/", &[], Err("ip-literal")),
    ("EG-02", "GET", "https://2130706433/", &[], Err("ip-literal")),
    ("EG-02", "GET", "https://0x7f000001/", &[], Err("ip-literal")),
    ("EG-02", "GET", "https://0177.0.0.1/", &[], Err("ip-literal")),
    ("EG-02", "GET", "https://127.1/", &[], Err("ip-literal")),
    ("EG-02", "GET", "https://１２７.０.０.１/", &[], Err("ip-literal")),
    ("EG-03", "GET", "https://[::ffff:127.0.0.1]/", &[], Err("ip-literal")),
    ("EG-03", "GET", "https://[64:ff9b::a9fe:a9fe]/", &[], Err("ip-literal")),
    ("EG-04", "GET", "https://api.allowed.test/", &["--resolve", "api.allowed.test=10.0.0.5"], Err("destination-ip-prohibited")),
    ("EG-04", "GET", "https://api.allowed.test/", &["--resolve", "api.allowed.test=127.0.0.1"], Err("destination-ip-prohibited")),
    ("EG-04", "GET", "https://api.allowed.test/", &["--resolve", "api.allowed.test=169.254.169.254"], Err("destination-ip-prohibited")),
    ("EG-04", "GET", "https://api.allowed.test/", &["--resolve", "api.allowed.test=::ffff:10.0.0.5"], Err("destination-ip-prohibited")),
    ("EG-04", "GET", "https://api.allowed.test/", &["--resolve", "api.allowed.test=64:ff9b::a00:5"], Err("destination-ip-prohibited")),
    ("EG-04", "GET", "https://api.allowed.test/", &["--resolve", "api.allowed.test=8.8.8.8"], Ok(())),
    ("EG-06", "GET", "https://api.allowed.test/", &["--resolve", "api.allowed.test=127.0.0.1", "--resolve", "api.allowed.test=8.8.8.8"], Ok(())),
    ("EG-07", "GET", "https://api.allowed.test@evil.test/", &[], Err("userinfo")),
    ("EG-07", "GET", "https://u:p@api.allowed.test/", &[], Err("userinfo")),
    ("EG-08", "GET", "https://evil.test\\@api.allowed.test/", &[], Err("parser-disagreement")),
    ("EG-09", "GET", "https://evil.test#@api.allowed.test/", &[], Err("no-matching-rule")),
    ("EG-09", "GET", "https://evil.test?@api.allowed.test/", &[], Err("no-matching-rule")),
    ("EG-10", "GET", "https://аpi.allowed.test/", &[], Err("parser-disagreement")),
    ("EG-10", "GET", "https://xn--api-.allowed.test/", &[], Err("invalid-host")),
    ("EG-11", "GET", "https://api.allowed.test./", &[], Ok(())),
    ("EG-11", "GET", "https://api.allowed.test../", &[], Err("invalid-host")),
    ("EG-11", "GET", "https://api..allowed.test/", &[], Err("invalid-host")),
    ("EG-12", "GET", "https://API.ALLOWED.TEST/", &[], Ok(())),
    ("EG-13", "GET", "https://api.allowed.test.evil.test/", &[], Err("no-matching-rule")),
    ("EG-13", "GET", "https://evilapi.allowed.test/", &[], Err("no-matching-rule")),
    ("EG-13", "GET", "https://svc.allowed.test/", &[], Err("no-matching-rule")),
    ("EG-13", "GET", "https://a.b.svc.allowed.test/", &[], Ok(())),
    ("EG-14", "GET", "https://api.allowed.test:65536/", &[], Err("invalid-url")),
    ("EG-14", "GET", "https://api.allowed.test:+443/", &[], Err("invalid-url")),
    ("EG-14", "GET", "https://api.allowed.test:0443/", &[], Ok(())),
    ("EG-14", "GET", "https://api.allowed.test:8443/", &[], Err("port-not-allowed")),
    ("EG-14", "GET", "https://api.allowed.test:22/", &[], Err("port-not-allowed")),
    ("EG-15", "GET", "http://api.allowed.test/", &[], Err("scheme-not-allowed")),
    ("EG-15", "GET", "file:///etc/passwd", &[], Err("scheme-not-allowed")),
    ("EG-15", "GET", "gopher://api.allowed.test/", &[], Err("scheme-not-allowed")),
    ("EG-20", "GET", "https://metadata.google.internal/", &[], Err("metadata-host")),
    ("EG-20", "GET", "https://metadata.amazonaws.com/", &[], Err("metadata-host")),
    ("EG-20", "GET", "https://instance-data/", &[], Err("metadata-host")),
    ("EG-20", "GET", "https://api.allowed.test/", &["--resolve", "api.allowed.test=169.254.169.254"], Err("destination-ip-prohibited")),
    ("methods", "DELETE", "https://api.allowed.test/", &[], Err("method-not-allowed")),
    ("paths", "POST", "https://hooks.allowed.test:8443/services/T1", &[], Ok(())),
    ("paths", "POST", "https://hooks.allowed.test:8443/admin", &[], Err("path-not-allowed")),
    ("paths", "POST", "https://hooks.allowed.test:8443/services/../admin", &[], Err("path-not-allowed")),
    ("paths", "POST", "https://hooks.allowed.test:8443/services%2F..%2Fadmin", &[], Err("ambiguous-path")),
];

#[test]
fn policy_check_answers_the_catalogue_eg_cases() {
    let mut failures = Vec::new();
    for (case, method, url, extra, expected) in CASES {
        let (code, answer) = check(method, url, extra);
        let got = match answer["decision"].as_str() {
            Some("allow") => Ok(()),
            _ => Err(answer["reason"].as_str().unwrap_or("?").to_string()),
        };
        let expected_code = if expected.is_ok() { 0 } else { 4 };
        if got != expected.map_err(str::to_string) || code != Some(expected_code) {
            failures.push(format!("{case} {method} {url} {extra:?}: expected {expected:?}, got {got:?} (exit {code:?})"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_allow_names_the_rule_and_the_injected_credential() {
    let data = TempDir::new().expect("temp");
    let out = airlock(
        data.path(),
        &[
            "policy",
            "check",
            &fixture(),
            "POST",
            "https://api.allowed.test/v1/items?token=SECRET",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("rule #1 https://api.allowed.test"), "{text}");
    assert!(text.contains("credential `api` injected"), "{text}");
    assert!(
        !text.contains("SECRET"),
        "answers never repeat the query: {text}"
    );
}

#[test]
fn a_mixed_answer_dials_only_the_public_address() {
    let (code, answer) = check(
        "GET",
        "https://api.allowed.test/",
        &[
            "--resolve",
            "api.allowed.test=127.0.0.1",
            "--resolve",
            "api.allowed.test=8.8.8.8",
        ],
    );
    assert_eq!(code, Some(0));
    assert_eq!(answer["dial"], serde_json::json!(["8.8.8.8:443"]));
}

#[test]
fn allow_private_is_loud_and_never_exposes_metadata() {
    let data = TempDir::new().expect("temp");
    let fixture = fixture();
    let args = |ip: &'static str| {
        vec![
            "policy".to_string(),
            "check".into(),
            fixture.clone(),
            "GET".into(),
            "https://api.allowed.test/".into(),
            "--resolve".into(),
            format!("api.allowed.test={ip}"),
            "--allow-private".into(),
            "127.0.0.0/8".into(),
            "--allow-private".into(),
            "169.254.0.0/16".into(),
        ]
    };
    let loopback: Vec<String> = args("127.0.0.1");
    let out = airlock(
        data.path(),
        &loopback.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("for development and tests only"),
        "{}",
        stderr(&out)
    );
    let metadata: Vec<String> = args("169.254.169.254");
    let out = airlock(
        data.path(),
        &metadata.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    assert!(stdout(&out).contains("metadata"), "{}", stdout(&out));
}

#[test]
fn an_integration_without_egress_rules_reaches_nothing() {
    let data = TempDir::new().expect("temp");
    let mapper = crate::support::example("contact-mapper")
        .display()
        .to_string();
    let out = airlock(
        data.path(),
        &["policy", "check", &mapper, "GET", "https://example.com/"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("no egress rule allows this host"),
        "{}",
        stdout(&out)
    );
}
