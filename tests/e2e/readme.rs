//! The README's "Run it as an operator" walkthrough, run as written (bash, curl, sed) against
//! a loopback stand-in for api.github.com. Two things change: the server line gets the dev
//! switches that point api.github.com at the stand-in, and the port is a free one.

use std::net::TcpListener;
use std::process::Command;

use serde_json::json;
use tempfile::TempDir;

use crate::egress::UPSTREAM_IP;
use crate::support::{airlock_bin, audit_dir, examples};
use airlock_testkit::{Reply, TestCa, Upstream};

const TOKEN: &str = "ghp_canary0readme0walkthrough";

/// The shell block of the README's operator section.
fn walkthrough() -> String {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Run it as an operator")
        .nth(1)
        .expect("the README has an operator section");
    section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a sh block")
        .to_string()
}

#[test]
fn the_operator_walkthrough_in_the_readme_works_as_written() {
    let ca = TestCa::new().expect("test CA");
    let github = Upstream::start(&ca, &["api.github.com"], UPSTREAM_IP, |request| {
        if request.header("authorization") == [format!("Bearer {TOKEN}")] {
            Reply::json(
                200,
                json!([{"number": 7, "title": "Sync stalls on 429",
                        "html_url": "https://github.com/rust-lang/rust/issues/7"}]),
            )
        } else {
            Reply::json(401, json!({"message": "Bad credentials"}))
        }
    })
    .expect("upstream starts");
    let dir = TempDir::new().expect("temp dir");
    std::os::unix::fs::symlink(examples(), dir.path().join("guest-examples")).expect("link");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin dir");
    std::os::unix::fs::symlink(airlock_bin(), bin.join("airlock")).expect("link airlock");
    let ca_pem = ca.write_pem(dir.path()).expect("CA written");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();

    let script = walkthrough();
    let serve = "airlock serve & SERVER=$!";
    assert_eq!(script.matches(serve).count(), 1, "{script}");
    let script = script
        .replace(
            serve,
            &format!(
                "airlock serve --resolve api.github.com={} --allow-private 127.0.0.0/8 \
                 --extra-root-ca {} --dev-insecure --listen 127.0.0.1:{port} & SERVER=$!",
                github.addr(),
                ca_pem.display()
            ),
        )
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args([
            "-euo",
            "pipefail",
            "-c",
            &format!("{script}\nwait $SERVER\n"),
        ])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("GITHUB_TOKEN", TOKEN)
        .env("AIRLOCK_AUDIT_DIR", audit_dir())
        .env_remove("AIRLOCK_MASTER_KEY")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("Sync stalls on 429"), "{stdout}");
    assert!(!stdout.contains(TOKEN), "the token never comes back");
    assert_eq!(github.requests().len(), 1);
    assert!(stderr.contains("audit checkpoint signed"), "{stderr}");
}
