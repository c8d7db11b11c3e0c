//! The audit trail end to end (catalogue 5.7): the real `airlock` binary records every run,
//! `airlock audit verify` passes on an untouched trail and names the record an attacker with
//! the database changed, and canaries put everywhere customer data and secrets travel never
//! reach the trail, the metrics, or any file in the data and audit dirs (AL-01).

use std::path::Path;
use std::process::Output;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use airlock_host_api::audit::AuditEvent;
use airlock_runtime::InvokeError;

use airlock_host_api::egress::{Decision, MAX_DETAILED_EVENTS, Suppressed};

use crate::canary::{Canaries, contains, sinks};
use crate::egress::{Egress, UPSTREAM_IP, upstreams};
use crate::operator::{Operator, RUN_FETCH};
use crate::serving::{Server, records_of};
use crate::support::{
    airlock, airlock_with, dev_switches, example, example_arg, run_against_mocks, run_mapper,
    stderr, stdout,
};
use airlock_testkit::{Reply, TestCa, Upstream};

/// `airlock audit ARGS` on `data`; asserts it exits `code`, returns stdout.
pub(crate) fn audit(data: &Path, args: &[&str], code: i32) -> String {
    let mut all = vec!["audit"];
    all.extend(args);
    let out = airlock(data, &all);
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    stdout(&out)
}

/// The stored records, parsed.
pub(crate) fn records(data: &Path) -> Vec<Value> {
    audit(data, &["export"], 0)
        .lines()
        .map(|line| serde_json::from_str(line).expect("every exported line is one JSON record"))
        .collect()
}

fn mapper_ok(data: &Path) -> Output {
    run_mapper(
        data,
        &example_arg("contact-mapper", "sample-input.json"),
        &example_arg("contact-mapper", "sample-config.json"),
        &[],
    )
}

#[test]
fn each_run_is_recorded_and_verify_names_the_record_that_was_changed() {
    let data = TempDir::new().expect("temp dir");
    assert_eq!(mapper_ok(data.path()).status.code(), Some(0));
    let rejected = run_mapper(
        data.path(),
        r#"{"Id": 7}"#,
        &example_arg("contact-mapper", "sample-config.json"),
        &[],
    );
    assert_eq!(rejected.status.code(), Some(3));
    assert_eq!(mapper_ok(data.path()).status.code(), Some(0));

    let list = audit(data.path(), &["list"], 0);
    assert!(list.contains("map-contact ok"), "{list}");
    assert!(list.contains("input-rejected"), "{list}");
    let kept = records(data.path());
    assert_eq!(kept.len(), 3);
    assert!(kept.iter().all(|r| r["node"].is_string()), "{kept:?}");
    assert_eq!(kept[1]["validation"]["keyword"], "type");
    assert_eq!(kept[1]["validation"]["location"], "/properties/Id/type");
    assert!(
        kept[1]["validation"].get("pointer").is_none(),
        "{}",
        kept[1]
    );
    assert_eq!(kept[1]["security"], true);
    let verified = audit(data.path(), &["verify"], 0);
    assert!(verified.contains("audit trail verified"), "{verified}");

    // Someone with the database edits record 1 (turns the rejection into a success).
    {
        let db = sled::open(data.path().join("db")).expect("database opens");
        let tree = db.open_tree("audit").expect("audit tree");
        let line = tree
            .get(1u64.to_be_bytes())
            .expect("read")
            .expect("record present");
        let edited = String::from_utf8(line.to_vec())
            .expect("records are UTF-8")
            .replace("input-rejected", "ok");
        tree.insert(1u64.to_be_bytes(), edited.as_bytes())
            .expect("write");
        db.flush().expect("flush");
    }
    let broken = audit(data.path(), &["verify"], 7);
    let node = kept[1]["node"].as_str().expect("a node name");
    assert!(
        broken.contains(&format!("BROKEN at record 1, written by node {node}: ")),
        "{broken}"
    );
}

#[tokio::test]
async fn serve_names_its_node_in_the_records_it_writes() {
    let op = Operator::new();
    let out = op.airlock(&["serve", "--node", "Edge 1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("node name"), "{}", stderr(&out));

    let server = Server::start(&op, &[], &["--node", "edge-1"]);
    let refused = server
        .get("/v1/installations", "airlock_0000000000000000_bad")
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    server.stop();
    let refused = records_of(&op, "access-refused");
    assert!(!refused.is_empty());
    assert!(refused.iter().all(|r| r["node"] == "edge-1"), "{refused:?}");
    audit(op.data(), &["verify"], 0);
}

#[test]
fn refused_code_is_a_recorded_security_event() {
    let data = TempDir::new().expect("temp dir");
    let mapper = example("contact-mapper").display().to_string();
    let out = airlock(
        data.path(),
        &["run", &mapper, "--action", "map-contact", "--input", "{}"],
    );
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let security = audit(data.path(), &["list", "--security", "--json"], 0);
    let record: Value = serde_json::from_str(security.trim()).expect("one record");
    assert_eq!(record["type"], "trust-refused");
    assert_eq!(record["reason"], "unsigned");
    assert_eq!(record["artifact"], "contact-mapper");
    audit(data.path(), &["verify"], 0);
}

#[test]
fn metrics_count_what_the_trail_holds() {
    let data = TempDir::new().expect("temp dir");
    assert_eq!(mapper_ok(data.path()).status.code(), Some(0));
    let out = airlock(data.path(), &["metrics"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("airlock_invocations_total{outcome=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("airlock_invocation_duration_seconds_count 1"),
        "{text}"
    );
    // The same text a scraper reads from `/metrics`: valid OpenMetrics, to its `# EOF`.
    let parsed =
        airlock_testkit::openmetrics::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let bucket = [("le", "+Inf")];
    assert_eq!(
        parsed.value("airlock_invocation_duration_seconds_bucket", &bucket),
        Some(1.0)
    );
    assert_eq!(parsed.types["airlock_invocations"], "counter");
}

#[test]
fn canaries_never_reach_the_trail_the_metrics_or_the_disk() {
    // AL-01 across success and error paths: credentials injected from a flag and from the
    // store, query strings, request headers, upstream bodies echoing all of them, inputs and
    // outputs, a schema rejection, a denied request, and a path built to forge log lines.
    let c = Canaries::new();
    let upstream_canary = c.upstream.clone();
    let ca = TestCa::new().expect("test CA");
    let names = ["vault.allowed.test", "api.allowed.test"];
    let mock = Upstream::start(&ca, &names, UPSTREAM_IP, move |request| {
        let mut echo = Reply::echo_headers(request);
        echo = echo.header("x-upstream", &upstream_canary);
        echo
    })
    .expect("upstream starts");
    let op = Operator::new();
    let elsewhere = TempDir::new().expect("temp dir");
    let pins: Vec<String> = names
        .iter()
        .map(|n| format!("{n}={}", mock.addr()))
        .collect();
    let ca_pem = ca.write_pem(elsewhere.path()).expect("CA written");
    let mut outputs: Vec<Output> = Vec::new();
    let fetch = |input: Value, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = run_against_mocks(&pins, &ca_pem, "exfil", "fetch");
        args.extend(["--json".into(), "--input".into(), input.to_string()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        airlock_with(op.data(), &args, "", env)
    };
    let with_query = |host: &str| {
        json!({
            "url": format!("https://{host}/items?q={}", c.query),
            "headers": [["x-note", c.header]],
        })
    };
    outputs.push(fetch(
        with_query("vault.allowed.test"),
        &["--secret", "token=env:AIRLOCK_TEST_TOKEN"],
        &[("AIRLOCK_TEST_TOKEN", &c.secret)],
    ));
    outputs.push(fetch(with_query("api.allowed.test"), &[], &[]));
    outputs.push(fetch(with_query("evil.test"), &[], &[]));
    outputs.push(fetch(
        json!({"url": "https://api.allowed.test/x%0d%0a{\"type\":\"fake\"}%0d%0aFAKE=1"}),
        &[],
        &[],
    ));

    op.install_granted(
        &op.exfil("0.1.0", ""),
        "[[egress]]\nurl = \"https://vault.allowed.test\"\nmethods = [\"GET\"]\n",
    );
    let stored = op.set_credential("acme", "exfil", "token", &c.stored);
    assert_eq!(stored.status.code(), Some(0), "{}", stderr(&stored));
    let mut args = RUN_FETCH.map(String::from).to_vec();
    let input = with_query("vault.allowed.test").to_string();
    args.extend(dev_switches(&pins, &ca_pem));
    args.extend(["--json", "--input", &input].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    outputs.push(airlock_with(op.data(), &args, "", &[]));

    let mapper_input = json!({
        "Id": "003A",
        "FirstName": c.input,
        "LastName": "Lovelace",
        "Email": format!("{}@example.com", c.input),
    })
    .to_string();
    let config = example_arg("contact-mapper", "sample-config.json");
    outputs.push(run_mapper(op.data(), &mapper_input, &config, &["--json"]));
    let bad_input = json!({"Id": c.input, "Email": 42}).to_string();
    outputs.push(run_mapper(op.data(), &bad_input, &config, &["--json"]));

    // The runs did what they should, so the sweep below is not vacuous.
    // vault, api and the stored-credential vault; the forged path is refused by policy.
    assert_eq!(mock.requests().len(), 3);
    assert!(stdout(&outputs[3]).contains("HttpRequestDenied"));
    let seen = mock.requests();
    assert!(seen[0].header("authorization").join("").contains(&c.secret));
    assert!(
        stdout(&outputs[0]).contains(&c.query),
        "the guest got its data back"
    );
    assert!(
        stdout(&outputs[5]).contains(&c.input),
        "the mapper output carries the input"
    );
    assert_eq!(outputs[6].status.code(), Some(3));

    let export = audit(op.data(), &["export"], 0);
    let kept = records(op.data());
    let invocations = kept.iter().filter(|r| r["type"] == "invocation").count();
    assert_eq!(invocations, 7, "{export}");
    // Requests are named by the rule they matched and a keyed hash, never by their path.
    assert!(
        export.contains("\"via\":\"https://vault.allowed.test\""),
        "{export}"
    );
    assert!(!export.contains("/items"), "{export}");
    // AL-03: nothing a guest sends can split or forge a record.
    for line in export.lines() {
        let record: Value = serde_json::from_str(line).expect("one record per line");
        assert!(record.get("seq").is_some());
    }
    let list = audit(op.data(), &["list"], 0);
    assert!(!list.lines().any(|l| l.starts_with("FAKE")), "{list}");

    c.assert_absent(&sinks(op.data()));
    // Secrets reach no output of any run either: not the guest log on stderr, nor the output
    // or summary on stdout.
    for out in &outputs {
        for secret in [&c.secret, &c.stored] {
            assert!(!contains(&out.stdout, secret) && !contains(&out.stderr, secret));
        }
    }
}

/// AL-07 with a real fault: in a child process (resource limits are per process), the disk
/// "fills" mid-run, so sled's next write fails with EFBIG.
#[test]
fn a_trail_that_cannot_write_stops_egress_and_withholds_results() {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "audit::disk_full_child",
            "--ignored",
            "--nocapture",
        ])
        .env(DISK_FULL_CHILD, "1")
        .output()
        .expect("the child test runs");
    assert!(
        out.status.success() && stdout(&out).contains("1 passed"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

const DISK_FULL_CHILD: &str = "AIRLOCK_TEST_DISK_FULL_CHILD";

#[tokio::test]
#[ignore = "run in its own process by a_trail_that_cannot_write_stops_egress_and_withholds_results"]
async fn disk_full_child() {
    if std::env::var_os(DISK_FULL_CHILD).is_none() {
        return;
    }
    let (mock, egress) = upstreams(&["api.allowed.test"], |_| Reply::status(204));
    let audit_home = TempDir::new().expect("temp dir");
    let (egress, trail) = egress.with_audit(audit_home.path());
    // Loaded (and its memory image made) while files may still grow.
    let exfil = egress.load("exfil");
    let config = exfil.validate_config(None).expect("no config");
    let fetch = r#"{"url": "https://api.allowed.test/"}"#;
    let ran = egress.runtime.invoke(&exfil, &config, "fetch", fetch).await;
    assert!(
        ran.record.is_some() && ran.result.is_ok(),
        "{:?}",
        ran.result
    );
    assert_eq!(mock.requests().len(), 1);

    // From here on no file of this process may grow: the next sled segment cannot be written.
    let db = egress.data().join("db").join("db");
    let size = std::fs::metadata(&db).expect("db file").len();
    // SAFETY: plain libc calls on this process's own signal disposition and limits.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: size,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let mut appended = 0;
    let filler = || AuditEvent::TrustRefused {
        artifact: "filler.airlock".into(),
        reason: "unsigned".into(),
    };
    while trail.append(filler()).await.is_ok() {
        appended += 1;
        assert!(appended < 50_000, "the trail never hit the file size limit");
    }
    assert!(trail.failure().is_some());

    let ran = egress.runtime.invoke(&exfil, &config, "fetch", fetch).await;
    assert_eq!(mock.requests().len(), 1, "a request left without a record");
    let reasons: Vec<_> = ran.egress.iter().filter_map(|e| e.reason.clone()).collect();
    assert_eq!(reasons, ["audit-unavailable"]);
    assert!(
        matches!(&ran.result, Err(InvokeError::Audit(_))),
        "{:?}",
        ran.result
    );
    assert!(ran.record.is_none());
}

#[tokio::test]
async fn a_flood_of_denied_requests_is_counted_not_kept() {
    // AL-08: 5,000 denied requests in one invocation leave 128 detailed attempts and counts.
    let audit_home = TempDir::new().expect("temp dir");
    let (egress, trail) = Egress::new(&[], false, None).with_audit(audit_home.path());
    let exfil = egress.load("exfil");
    let config = exfil.validate_config(None).expect("no config");
    let ran = egress
        .runtime
        .invoke(&exfil, &config, "flood-denied", r#"{"count": 5000}"#)
        .await;
    assert!(ran.result.is_ok(), "{:?}", ran.result);
    assert_eq!(ran.egress.len(), MAX_DETAILED_EVENTS);
    let limit = Some("request-limit".to_string());
    assert_eq!(
        ran.egress_suppressed,
        [Suppressed {
            decision: Decision::Denied,
            reason: limit,
            count: 5000 - MAX_DETAILED_EVENTS as u64,
        }]
    );
    let lines: Vec<(u64, Vec<u8>)> = trail
        .lines()
        .collect::<Result<_, _>>()
        .expect("records read");
    assert_eq!(lines.len(), 1, "one record for the invocation");
    assert!(lines[0].1.len() < 64 * 1024, "{} bytes", lines[0].1.len());
}

#[tokio::test]
async fn an_exchange_records_its_peer_and_its_bytes() {
    let body = json!({"items": [1, 2, 3]});
    let expected = body.to_string().len() as u64;
    let (_mock, egress) = upstreams(&["api.allowed.test"], move |_| {
        Reply::json(200, body.clone())
    });
    let exfil = egress.load("exfil");
    let config = exfil.validate_config(None).expect("no config");
    let input = json!({"url": "https://api.allowed.test/items", "method": "POST"}).to_string();
    let ran = egress
        .runtime
        .invoke(&exfil, &config, "fetch", &input)
        .await;
    let event = &ran.egress[0];
    assert_eq!(event.status, Some(200), "{event:?}");
    assert_eq!(event.address, Some(UPSTREAM_IP));
    assert_eq!(event.bytes_in, expected);
}

#[test]
fn privileges_from_the_trail_name_what_an_installation_never_used() {
    let ca = TestCa::new().expect("test CA");
    let mock = Upstream::start(&ca, &["vault.allowed.test"], UPSTREAM_IP, |_| {
        Reply::bytes(200, b"{}".to_vec())
    })
    .expect("upstream starts");
    let op = Operator::new();
    op.install_granted(
        &op.exfil("0.1.0", ""),
        "[[egress]]\nurl = \"https://vault.allowed.test\"\nmethods = [\"GET\", \"POST\"]\n",
    );
    let stored = op.set_credential("acme", "exfil", "token", "canary-token");
    assert_eq!(stored.status.code(), Some(0), "{}", stderr(&stored));
    let keys = TempDir::new().expect("temp dir");
    let pins = [format!("vault.allowed.test={}", mock.addr())];
    let mut args = RUN_FETCH.map(String::from).to_vec();
    let input = json!({"url": "https://vault.allowed.test/items"}).to_string();
    args.extend(dev_switches(
        &pins,
        &ca.write_pem(keys.path()).expect("CA written"),
    ));
    args.extend(["--input".to_string(), input]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = airlock(op.data(), &args);
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    assert_eq!(mock.requests().len(), 1);

    let report = audit(
        op.data(),
        &["privileges", "--tenant", "acme", "--installation", "exfil"],
        0,
    );
    for line in [
        "acme/exfil runs airlock-examples/exfil@0.1.0",
        "least privilege, from 1 invocation(s)",
        "egress     GET,POST https://vault.allowed.test — used; never POST",
        "egress     GET,POST https://api.allowed.test — UNUSED",
        "credential token (bearer) — used",
        "credential key (api-key) — UNUSED",
        "[[egress]]\nurl = \"https://vault.allowed.test\"\nmethods = [\"GET\"]\ncredential = \"token\"",
    ] {
        assert!(report.contains(line), "missing {line:?} in:\n{report}");
    }
    let json: Value = serde_json::from_str(&audit(
        op.data(),
        &[
            "privileges",
            "--tenant",
            "acme",
            "--installation",
            "exfil",
            "--json",
        ],
        0,
    ))
    .expect("JSON");
    assert_eq!(json["invocations"], 1);
    // Another tenant's installation is not found, whatever the trail holds.
    audit(
        op.data(),
        &[
            "privileges",
            "--tenant",
            "globex",
            "--installation",
            "exfil",
        ],
        2,
    );
}
