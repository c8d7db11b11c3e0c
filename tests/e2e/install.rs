//! Installations through the binary (rule 5): a tenant's installation gets only what the
//! operator grants, never more than the signed manifest declares; an upgrade that asks for more
//! waits for approval; a rollback is refused; deleting the tenant removes everything it had.

use std::process::Output;

use crate::egress::UPSTREAM_IP;
use crate::operator::{Operator, RUN_FETCH};
use crate::support::{stderr, stdout};
use airlock_testkit::{Reply, TestCa, Upstream};

/// Asserts the command's stderr says `text`.
fn says(out: &Output, text: &str) {
    assert!(
        stderr(out).contains(text),
        "{text:?} not in:\n{}",
        stderr(out)
    );
}

/// Asserts the command's stdout holds `text`.
fn prints(out: &Output, text: &str) {
    assert!(
        stdout(out).contains(text),
        "{text:?} not in:\n{}",
        stdout(out)
    );
}

const API_GET: &str = "[[egress]]\nurl = \"https://api.allowed.test\"\nmethods = [\"GET\"]\n";

#[test]
fn an_installation_reaches_only_what_is_granted() {
    let op = Operator::new();
    let v1 = op.exfil("0.1.0", "");
    let out = op.install(&v1, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    says(
        &out,
        "denied   GET,POST https://api.allowed.test (declared, not granted)",
    );

    // More than the manifest declares is refused, naming the entry.
    let wider = op.grant(
        "wider.toml",
        "[[egress]]\nurl = \"https://api.allowed.test\"\nmethods = [\"GET\", \"DELETE\"]\n",
    );
    let out = op.install(&v1, &["--grant", &wider]);
    assert_eq!(out.status.code(), Some(2));
    says(&out, "grants DELETE");
    op.install_granted(&v1, API_GET);

    // The installation runs by name, with its grant: the granted rule reaches the mock, a
    // declared but ungranted one is denied.
    let ca = TestCa::new().expect("test CA");
    let mock = Upstream::start(
        &ca,
        &["api.allowed.test", "echo.allowed.test"],
        UPSTREAM_IP,
        |_| Reply::status(204),
    )
    .expect("upstream starts");
    let ca_pem = ca
        .write_pem(op.keys.path())
        .expect("CA written")
        .display()
        .to_string();
    let fetch = |host: &str| {
        let input = format!(r#"{{"url": "https://{host}/"}}"#);
        let pins: Vec<String> = ["api.allowed.test", "echo.allowed.test"]
            .iter()
            .map(|n| format!("{n}={}", mock.addr()))
            .collect();
        let mut args = RUN_FETCH.to_vec();
        args.extend([
            "--resolve",
            &pins[0],
            "--resolve",
            &pins[1],
            "--allow-private",
            "127.0.0.0/8",
            "--extra-root-ca",
            &ca_pem,
        ]);
        args.extend(["--input", &input]);
        op.ok(&args)
    };
    assert!(stdout(&fetch("api.allowed.test")).contains("ok 204"));
    let denied = fetch("echo.allowed.test");
    prints(&denied, "HttpRequestDenied");
    says(&denied, "no-matching-rule");
    assert_eq!(mock.requests().len(), 1);

    // A bundle named on the command line never borrows an installation's identity.
    let v1_path = v1.display().to_string();
    let mut args = vec!["run", v1_path.as_str()];
    args.extend(&RUN_FETCH[1..]);
    args.extend(["--input", r#"{"url": "https://api.allowed.test/"}"#]);
    let out = op.airlock(&args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn upgrades_that_ask_for_more_wait_and_rollbacks_are_refused() {
    let op = Operator::new();
    op.install_granted(&op.exfil("0.1.0", ""), API_GET);

    // Nothing new asked for: replaced at once, the grant carried over.
    let out = op.install(&op.exfil("0.2.0", ""), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    says(&out, "replaced 0.1.0 with");
    assert!(stderr(&out).contains("granted  GET https://api.allowed.test"));

    // A new host: the installation keeps 0.2.0 and the upgrade waits.
    let more = "[[egress]]\nurl = \"https://new.allowed.test\"\nmethods = [\"GET\"]\n";
    let out = op.install(&op.exfil("0.3.0", more), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    says(&out, "+ egress GET https://new.allowed.test");
    let listed = op.installations();
    assert_eq!(listed[0]["version"], "0.2.0");
    assert_eq!(listed[0]["pending"]["version"], "0.3.0");
    let pending = op.ok(&["install", "pending"]);
    prints(&pending, "upgrade to 0.3.0");

    // Approved with a grant that covers the addition.
    let both = op.grant(
        "both.toml",
        &format!("{API_GET}[[egress]]\nurl = \"https://new.allowed.test\"\nmethods = [\"GET\"]\n"),
    );
    op.ok(&[
        "install",
        "approve",
        "--tenant",
        "acme",
        "--installation",
        "exfil",
        "--grant",
        &both,
    ]);
    let listed = op.installations();
    assert_eq!(listed[0]["version"], "0.3.0");
    assert!(listed[0].get("pending").is_none());
    assert_eq!(
        listed[0]["grant"]["egress"].as_array().map(Vec::len),
        Some(2)
    );

    // Going back is a rollback: refused (exit 6) unless asked for.
    let old = op.keys.path().join("exfil-0.1.0.airlock");
    let out = op.install(&old, &[]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    says(&out, "rollback");
    op.ok(&[
        "install",
        "--tenant",
        "acme",
        &old.display().to_string(),
        "--allow-downgrade",
    ]);
    assert_eq!(op.installations()[0]["version"], "0.1.0");
    let audit = op.ok(&["audit", "list", "--security"]);
    for change in ["Installed", "Upgraded", "Pending", "Downgraded"] {
        assert!(
            stdout(&audit).contains(change),
            "{change}: {}",
            stdout(&audit)
        );
    }
}

#[test]
fn deleting_a_tenant_removes_its_installations() {
    let op = Operator::new();
    op.ok(&[
        "install",
        "--tenant",
        "acme",
        &op.exfil("0.1.0", "").display().to_string(),
    ]);
    op.ok(&["tenant", "delete", "acme"]);
    assert!(op.installations().is_empty());
    let out = op.airlock(&[&RUN_FETCH[..], &["--input", "{}"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = op.install(&op.keys.path().join("exfil-0.1.0.airlock"), &[]);
    assert_eq!(out.status.code(), Some(2));
    says(&out, "tenant acme does not exist");
}

/// exfil as `version`, its oauth2 credential's token URL and publisher contacts rewritten.
fn exfil_with(op: &Operator, version: &str, replace: &[(&str, &str)]) -> std::path::PathBuf {
    let mut manifest = crate::support::read_example("exfil", "airlock.toml")
        .replace("version = \"0.1.0\"", &format!("version = \"{version}\""));
    for (from, to) in replace {
        assert!(manifest.contains(from), "{from}");
        manifest = manifest.replace(from, to);
    }
    op.sign(
        "exfil",
        "exfil.wasm",
        &manifest,
        &format!("exfil-{version}.airlock"),
    )
}

#[test]
fn a_new_token_url_waits_for_the_operator_and_the_stored_secret_stays_bound() {
    let op = Operator::new();
    let oauth = "[[egress]]\nurl = \"https://oauth.allowed.test\"\nmethods = [\"GET\"]\n";
    op.install_granted(&op.exfil("0.1.0", ""), oauth);
    let client = r#"{"client_id": "acme", "client_secret": "cs-canary-bound"}"#;
    let out = op.set_credential("acme", "exfil", "service", client);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Stored bound to its rule's origin and to the token endpoint's.
    let list = op.ok(&[
        "credentials",
        "list",
        "--tenant",
        "acme",
        "--installation",
        "exfil",
        "--json",
    ]);
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).expect("list JSON");
    assert_eq!(
        listed[0]["origins"],
        serde_json::json!(["https://auth.allowed.test", "https://oauth.allowed.test"])
    );

    let moved = exfil_with(
        &op,
        "0.2.0",
        &[(
            "https://auth.allowed.test/oauth/token",
            "https://tokens.evil.test/oauth/token",
        )],
    );
    let out = op.install(&moved, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    says(
        &out,
        "+ credential `service` sends its client secret and refresh token to a new token-url: \
         https://tokens.evil.test/oauth/token (was https://auth.allowed.test/oauth/token) \
         (operator only",
    );
    assert_eq!(op.installations()[0]["version"], "0.1.0");
    prints(&op.ok(&["install", "pending"]), "(operator only)");

    // The operator approves; the client stored for auth.allowed.test is still not sent to
    // the new token endpoint: the token call is refused before anything leaves.
    op.ok(&[
        "install",
        "approve",
        "--tenant",
        "acme",
        "--installation",
        "exfil",
    ]);
    assert_eq!(op.installations()[0]["version"], "0.2.0");
    let mut run = RUN_FETCH.to_vec();
    run.extend([
        "--input",
        r#"{"url": "https://oauth.allowed.test/"}"#,
        "--json",
    ]);
    let out = op.airlock(&run);
    assert!(
        stderr(&out).contains("credential-unbound") || stdout(&out).contains("credential-unbound"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn a_new_publisher_contact_or_privacy_policy_waits_for_approval() {
    let op = Operator::new();
    op.install_granted(&op.exfil("0.1.0", ""), API_GET);
    let manifest = crate::support::read_example("exfil", "airlock.toml");
    let support = manifest
        .lines()
        .find(|l| l.starts_with("support = "))
        .expect("a support contact")
        .to_string();
    let privacy = manifest
        .lines()
        .find(|l| l.starts_with("privacy-policy = "))
        .expect("a privacy policy")
        .to_string();
    for (version, from, to, said) in [
        (
            "0.2.0",
            support.as_str(),
            "support = \"mailto:help@takeover.example\"",
            "+ publisher support contact mailto:help@takeover.example",
        ),
        (
            "0.3.0",
            privacy.as_str(),
            "privacy-policy = \"https://takeover.example/privacy\"",
            "+ publisher privacy policy https://takeover.example/privacy",
        ),
    ] {
        let out = op.install(&exfil_with(&op, version, &[(from, to)]), &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        says(&out, said);
        let listed = op.installations();
        assert_eq!(listed[0]["version"], "0.1.0");
        assert_eq!(listed[0]["pending"]["version"], version);
    }
}
