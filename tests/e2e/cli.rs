//! The `airlock` binary: output on stdout, summary on stderr, documented exit codes.

use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::{
    airlock, custom_integration, example, example_arg, examples, mapper_manifest, run_hostile,
    run_mapper, stderr, stdout,
};

fn path(name: &str) -> String {
    example(name).display().to_string()
}

fn sample_config() -> String {
    example_arg("contact-mapper", "sample-config.json")
}

#[test]
fn run_prints_valid_output_and_a_summary() {
    let data = TempDir::new().expect("temp");
    let input = example_arg("contact-mapper", "sample-input.json");
    let out = run_mapper(data.path(), &input, &sample_config(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let output: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("stdout is JSON");
    assert!(output["email"].is_string(), "{output}");
    assert!(stderr(&out).contains("airlock: ok"), "{}", stderr(&out));
}

#[test]
fn run_json_prints_the_output_and_the_summary_as_one_object_on_stdout() {
    let data = TempDir::new().expect("temp");
    let input = example_arg("contact-mapper", "sample-input.json");
    let out = run_mapper(data.path(), &input, &sample_config(), &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let document: serde_json::Value =
        serde_json::from_str(&stdout(&out)).expect("stdout is one JSON object");
    assert!(document["output"]["email"].is_string(), "{document}");
    assert_eq!(document["summary"]["outcome"], "ok");
    assert_eq!(document["summary"]["exit_code"], 0);
    assert_eq!(stdout(&out).trim().lines().count(), 1, "one line");
    assert!(!stderr(&out).contains("airlock: ok"), "no human summary");

    let input = example_arg("contact-mapper", "invalid-input.json");
    let out = run_mapper(data.path(), &input, &sample_config(), &["--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let document: serde_json::Value =
        serde_json::from_str(&stdout(&out)).expect("stdout is one JSON object");
    assert!(document["output"].is_null(), "no output on rejection");
    assert_eq!(document["summary"]["outcome"], "input-rejected");
    assert_eq!(document["summary"]["exit_code"], 3);
}

#[test]
fn spin_forever_exits_5_within_the_timeout_plus_a_second() {
    let data = TempDir::new().expect("temp");
    // Compile first, so the timing below covers the run alone.
    let check = airlock(data.path(), &["check", &path("hostile")]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let started = Instant::now();
    let out = run_hostile(data.path(), &[], "spin-forever");
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(stderr(&out).contains("timeout"), "{}", stderr(&out));
}

#[test]
fn grow_memory_exits_5() {
    let data = TempDir::new().expect("temp");
    let out = run_hostile(data.path(), &[], "grow-memory");
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("memory limit"), "{}", stderr(&out));
}

#[test]
fn guest_error_exits_4() {
    let data = TempDir::new().expect("temp");
    let unreachable = r#"{"Id": "003-no-contact", "FirstName": "Nobody", "LastName": "Reachable"}"#;
    let out = run_mapper(data.path(), unreachable, &sample_config(), &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid-input"), "{}", stderr(&out));
}

#[test]
fn invalid_config_exits_2() {
    let data = TempDir::new().expect("temp");
    let input = example_arg("contact-mapper", "sample-input.json");
    let out = run_mapper(data.path(), &input, "{\"tag_prefix\": 7}", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn input_file_that_does_not_exist_exits_2() {
    let data = TempDir::new().expect("temp");
    let out = run_mapper(
        data.path(),
        "@/nonexistent/input.json",
        &sample_config(),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/input.json"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_of_the_sockets_component_names_the_import_and_exits_2() {
    let data = TempDir::new().expect("temp");
    let out = airlock(data.path(), &["check", &path("hostile-sockets")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("wasi:sockets/"), "{}", stderr(&out));
}

#[test]
fn check_lists_what_the_integration_declares() {
    let data = TempDir::new().expect("temp");
    let out = airlock(data.path(), &["check", &path("contact-mapper"), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(summary["id"], "acme/contact-mapper@0.1.0");
    assert_eq!(
        summary["actions"],
        serde_json::json!(["map-contact", "map-contacts"])
    );
    assert!(
        summary["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
}

#[test]
fn bad_manifest_exits_2_with_file_line_and_column() {
    let data = TempDir::new().expect("temp");
    let manifest = mapper_manifest("").replace("timeout = \"10s\"", "timeout = \"-5s\"");
    let line = manifest
        .lines()
        .position(|l| l.starts_with("timeout = \"-5s\""))
        .expect("inserted")
        + 1;
    let dir = custom_integration("contact-mapper", "contact_mapper.wasm", &manifest);
    let out = airlock(data.path(), &["check", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains(&format!("airlock.toml:{line}:")),
        "{message}"
    );
    assert!(message.contains("timeout"), "{message}");
}

#[test]
fn build_runs_the_declared_command_and_finds_the_component() {
    let data = TempDir::new().expect("temp");
    let out = airlock(data.path(), &["build", &path("contact-mapper")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("built "), "{}", stderr(&out));
}

#[test]
fn build_without_a_build_command_exits_2() {
    let data = TempDir::new().expect("temp");
    let manifest = mapper_manifest("")
        .replace("[integration.build]\n", "")
        .replace(
            "command = \"cargo build --release --target wasm32-wasip2\"\n",
            "",
        );
    let dir = custom_integration("contact-mapper", "contact_mapper.wasm", &manifest);
    let out = airlock(data.path(), &["build", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[integration.build]"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn demo_shows_every_promise_holding() {
    let data = TempDir::new().expect("temp");
    let examples = examples().display().to_string();
    let out = airlock(
        data.path(),
        &["demo", "--examples", &examples, "--iterations", "20"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let shown = stdout(&out);
    let classes = [
        "limit-timeout",
        "limit-memory",
        "limit-stack",
        "limit-output",
        "input-rejected",
    ];
    for class in classes {
        assert!(shown.contains(class), "demo shows {class}:\n{shown}");
    }
    assert!(shown.contains("wasi:sockets/"), "{shown}");
    for reason in [
        "no-matching-rule",
        "ip-literal",
        "metadata-host",
        "userinfo",
        "scheme-not-allowed",
        "credential-missing",
    ] {
        assert!(
            shown.contains(reason),
            "demo shows the egress denial {reason}:\n{shown}"
        );
    }
    assert!(
        shown.contains("→ 200, credential `github` injected by the host"),
        "{shown}"
    );
    assert!(
        !shown.contains("ghp_demo"),
        "the demo token never shows:\n{shown}"
    );
    // The operator step: OAuth consent through the server, bound to the browser that started
    // it, a webhook run, a replay refused.
    for line in [
        "the same link opened again (forwarded, say) is refused: \"unknown-start\"",
        "the callback, from the browser holding the cookie, exchanged the code with the PKCE \
         verifier: connected",
        "the same callback again is refused: \"unknown-state\"",
        "connects nothing: \"browser-mismatch\"",
        "the connection lists the Slack account it connected, \"U0DEMO1\" in workspace \
         \"T0DEMO1\"",
        "post-alert posted with the brokered token",
        "a signed delivery ran map-contact",
        "the same delivery again: 409 \"duplicate-delivery\"",
    ] {
        assert!(shown.contains(line), "demo shows {line}:\n{shown}");
    }
    assert!(
        !shown.contains("xoxb-demo"),
        "the Slack token never shows:\n{shown}"
    );
    assert!(!shown.contains('✗'), "{shown}");

    // What the demo did is in the data dir's trail: every invocation and egress decision,
    // and the chain verifies.
    let list = airlock(data.path(), &["audit", "list"]);
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let list = stdout(&list);
    for shown in [
        "acme/contact-mapper",
        "acme/github-issues",
        "limit-timeout",
        "no-matching-rule",
        "metadata-host",
        "credential-missing",
        "GET https://api.github.com/repos #",
    ] {
        assert!(list.contains(shown), "audit list shows {shown}:\n{list}");
    }
    assert!(!list.contains("ghp_demo"), "{list}");
    let verified = airlock(data.path(), &["audit", "verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", stderr(&verified));
}

#[test]
fn check_shows_egress_rules_and_credentials_for_review() {
    let data = TempDir::new().expect("temp");
    let manifest = format!(
        "{}\n[[egress]]\nurl = \"https://api.crm.example/v2\"\nmethods = [\"GET\", \"POST\"]\ncredential = \"crm\"\n\
         [credentials.crm]\ntype = \"oauth2\"\ngrant = \"client-credentials\"\n\
         token-url = \"https://auth.crm.example/token\"\nscopes = [\"contacts.read\"]\n",
        mapper_manifest("")
    );
    let dir = custom_integration("contact-mapper", "contact_mapper.wasm", &manifest);
    let path = dir.path().display().to_string();
    let out = airlock(data.path(), &["check", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("egress     GET,POST https://api.crm.example/v2 with credential `crm`"),
        "{text}"
    );
    assert!(
        text.contains("credential crm: OAuth 2.0 client-credentials grant"),
        "{text}"
    );
    let out = airlock(data.path(), &["check", &path, "--json"]);
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(summary["egress"][0]["credential"], "crm");
    assert_eq!(summary["credentials"]["crm"]["type"], "oauth2");
}

/// `--version` names the commit the binary was built from and the wasmtime it links.
#[test]
fn version_names_the_commit_and_the_wasmtime() {
    let data = TempDir::new().expect("temp");
    let out = airlock(data.path(), &["--version"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map_or_else(
            || "unknown".to_string(),
            |out| String::from_utf8_lossy(&out.stdout).trim().to_string(),
        );
    let version = stdout(&out);
    assert_eq!(
        version.trim(),
        format!(
            "airlock {} (commit {head}, wasmtime 48.0.8)",
            env!("CARGO_PKG_VERSION")
        )
    );
}
