//! The `airlock` binary: output on stdout, summary on stderr, documented exit codes.

use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::{airlock, custom_integration, example, mapper_manifest, stderr, stdout};

fn path(name: &str) -> String {
    example(name).display().to_string()
}

fn at(name: &str, file: &str) -> String {
    format!("@{}", example(name).join(file).display())
}

#[test]
fn run_prints_valid_output_and_a_summary() {
    let data = TempDir::new().expect("temp");
    let out = airlock(
        data.path(),
        &[
            "run",
            &path("contact-mapper"),
            "--action",
            "map-contact",
            "--input",
            &at("contact-mapper", "sample-input.json"),
            "--config",
            &at("contact-mapper", "sample-config.json"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let output: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("stdout is JSON");
    assert!(output["email"].is_string(), "{output}");
    assert!(stderr(&out).contains("airlock: ok"), "{}", stderr(&out));
}

#[test]
fn run_json_summary_is_one_machine_readable_line() {
    let data = TempDir::new().expect("temp");
    let out = airlock(
        data.path(),
        &[
            "run",
            &path("contact-mapper"),
            "--action",
            "map-contact",
            "--input",
            &at("contact-mapper", "invalid-input.json"),
            "--config",
            &at("contact-mapper", "sample-config.json"),
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "no output on rejection");
    let last = stderr(&out).lines().last().unwrap_or_default().to_string();
    let summary: serde_json::Value = serde_json::from_str(&last).expect("summary is JSON");
    assert_eq!(summary["outcome"], "input-rejected");
    assert_eq!(summary["exit_code"], 3);
}

#[test]
fn spin_forever_exits_5_within_the_timeout_plus_a_second() {
    let data = TempDir::new().expect("temp");
    // Compile first, so the timing below covers the run alone.
    let check = airlock(data.path(), &["check", &path("hostile")]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let started = Instant::now();
    let out = airlock(
        data.path(),
        &[
            "run",
            &path("hostile"),
            "--action",
            "spin-forever",
            "--input",
            "{}",
        ],
    );
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
    let out = airlock(
        data.path(),
        &[
            "run",
            &path("hostile"),
            "--action",
            "grow-memory",
            "--input",
            "{}",
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("memory limit"), "{}", stderr(&out));
}

#[test]
fn guest_error_exits_4() {
    let data = TempDir::new().expect("temp");
    let out = airlock(
        data.path(),
        &[
            "run",
            &path("contact-mapper"),
            "--action",
            "map-contact",
            "--input",
            r#"{"Id": "003-no-contact", "FirstName": "Nobody", "LastName": "Reachable"}"#,
            "--config",
            &at("contact-mapper", "sample-config.json"),
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid-input"), "{}", stderr(&out));
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
    assert_eq!(summary["actions"], serde_json::json!(["map-contact"]));
    assert!(
        summary["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
}

#[test]
fn bad_manifest_exits_2_with_file_line_and_column() {
    let data = TempDir::new().expect("temp");
    let dir = custom_integration(
        "contact-mapper",
        "contact_mapper.wasm",
        &mapper_manifest("timeout = \"-5s\"\n"),
    );
    let out = airlock(data.path(), &["check", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("airlock.toml:"), "{message}");
}

#[test]
fn invalid_config_exits_2() {
    let data = TempDir::new().expect("temp");
    let out = airlock(
        data.path(),
        &[
            "run",
            &path("contact-mapper"),
            "--action",
            "map-contact",
            "--input",
            &at("contact-mapper", "sample-input.json"),
            "--config",
            "{\"tag_prefix\": 7}",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn input_file_that_does_not_exist_exits_2() {
    let data = TempDir::new().expect("temp");
    let out = airlock(
        data.path(),
        &[
            "run",
            &path("hostile"),
            "--action",
            "read-env",
            "--input",
            "@/nonexistent/input.json",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/input.json"),
        "{}",
        stderr(&out)
    );
}
