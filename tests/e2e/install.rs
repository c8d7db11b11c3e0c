//! Installations through the binary (rule 5): a tenant's installation gets only what the
//! operator grants, never more than the signed manifest declares; an upgrade that asks for more
//! waits for approval; a rollback is refused; deleting the tenant removes everything it had.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use tempfile::TempDir;

use crate::egress::UPSTREAM_IP;
use crate::mock::{MockResponse, MockUpstream, TestCa};
use crate::support::{airlock, custom_integration, read_example, stderr, stdout};

/// A data dir with a trusted publisher key for the examples, and a tenant `acme`.
struct Operator {
    data: TempDir,
    keys: TempDir,
}

impl Operator {
    fn new() -> Self {
        let data = TempDir::new().expect("temp dir");
        let keys = TempDir::new().expect("temp dir");
        let key = keys.path().join("publisher.key").display().to_string();
        let out = airlock(data.path(), &["keygen", "--out", &key]);
        let public = stdout(&out).trim().to_string();
        let op = Self { data, keys };
        op.ok(&["trust", "add", &public, "--publisher", "Airlock Examples"]);
        op.ok(&["tenant", "create", "acme"]);
        op
    }

    fn airlock(&self, args: &[&str]) -> Output {
        airlock(self.data.path(), args)
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.airlock(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "airlock {args:?}\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        out
    }

    /// Signs exfil as `version`, with `extra` appended to its egress rules.
    fn exfil(&self, version: &str, extra: &str) -> PathBuf {
        let manifest = read_example("exfil", "airlock.toml")
            .replace(
                "component = \"../target/wasm32-wasip2/release/exfil.wasm\"",
                "component = \"component.wasm\"",
            )
            .replace("version = \"0.1.0\"", &format!("version = \"{version}\""))
            .replace(
                "[credentials.token]",
                &format!("{extra}\n[credentials.token]"),
            );
        let dir = custom_integration("exfil", "exfil.wasm", &manifest);
        let bundle = self.keys.path().join(format!("exfil-{version}.airlock"));
        let key = self.keys.path().join("publisher.key");
        self.ok(&[
            "sign",
            &dir.path().display().to_string(),
            "--key",
            &key.display().to_string(),
            "--out",
            &bundle.display().to_string(),
        ]);
        bundle
    }

    fn grant(&self, name: &str, text: &str) -> String {
        let path = self.keys.path().join(name);
        std::fs::write(&path, text).expect("write grant");
        path.display().to_string()
    }

    fn install(&self, bundle: &Path, extra: &[&str]) -> Output {
        let bundle = bundle.display().to_string();
        let mut args = vec!["install", "--tenant", "acme", &bundle];
        args.extend(extra);
        self.airlock(&args)
    }

    fn installations(&self) -> Vec<Value> {
        let out = self.ok(&["install", "--list", "--json"]);
        serde_json::from_str(&stdout(&out)).expect("JSON list")
    }
}

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

/// `run` of the `exfil` installation's `fetch`.
const RUN_FETCH: [&str; 7] = [
    "run",
    "--tenant",
    "acme",
    "--installation",
    "exfil",
    "--action",
    "fetch",
];

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
    let grant = op.grant("api.toml", API_GET);
    op.ok(&[
        "install",
        "--tenant",
        "acme",
        &v1.display().to_string(),
        "--grant",
        &grant,
    ]);

    // The installation runs by name, with its grant: the granted rule reaches the mock, a
    // declared but ungranted one is denied.
    let ca = TestCa::new();
    let mock = MockUpstream::start(
        &ca,
        &["api.allowed.test", "echo.allowed.test"],
        UPSTREAM_IP,
        |_| MockResponse::status(204),
    );
    let ca_pem = ca.write_pem(op.keys.path()).display().to_string();
    let fetch = |host: &str| {
        let input = format!(r#"{{"url": "https://{host}/"}}"#);
        let pins: Vec<String> = ["api.allowed.test", "echo.allowed.test"]
            .iter()
            .map(|n| format!("{n}={}", mock.addr()))
            .collect();
        let mut args = vec![
            "--resolve",
            &pins[0],
            "--resolve",
            &pins[1],
            "--allow-private",
            "127.0.0.0/8",
            "--extra-root-ca",
            &ca_pem,
        ];
        args.extend(RUN_FETCH);
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
    let grant = op.grant("api.toml", API_GET);
    op.ok(&[
        "install",
        "--tenant",
        "acme",
        &op.exfil("0.1.0", "").display().to_string(),
        "--grant",
        &grant,
    ]);

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
    let pending = op.ok(&["install", "--pending"]);
    prints(&pending, "upgrade to 0.3.0");

    // Approved with a grant that covers the addition.
    let both = op.grant(
        "both.toml",
        &format!("{API_GET}[[egress]]\nurl = \"https://new.allowed.test\"\nmethods = [\"GET\"]\n"),
    );
    op.ok(&[
        "install",
        "--approve",
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
