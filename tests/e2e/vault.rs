//! Credentials through the CLI: `airlock credentials set|list|delete` into the encrypted store,
//! `airlock run --tenant --installation` injecting them, and local `--secret` / `--secrets-file`
//! values. The canary must never appear in plaintext in the data dir, in output or in errors.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;
use tempfile::TempDir;

use crate::mock::{MockResponse, MockUpstream, TestCa};
use crate::operator::Operator;
use crate::support::{airlock_with, example, files_under, stderr, stdout};

const CANARY: &str = "canary-51d0e9-vault";
const UPSTREAM: &str = "vault.allowed.test";

/// An echoing TLS mock for `vault.allowed.test`, and the dev switches that point the name at
/// the mock and trust its CA (written into `data`).
fn setup(data: &Path) -> (MockUpstream, Vec<String>) {
    let ca = TestCa::new();
    let ip = "127.0.0.2".parse().expect("ip");
    let mock = MockUpstream::start(&ca, &[UPSTREAM], ip, MockResponse::echo_headers);
    let switches = vec![
        "--resolve".into(),
        format!("{UPSTREAM}={}", mock.addr()),
        "--allow-private".into(),
        "127.0.0.0/8".into(),
        "--extra-root-ca".into(),
        ca.write_pem(data).display().to_string(),
    ];
    (mock, switches)
}

/// `airlock <switches> run exfil --action fetch` against the vault host, plus `extra`.
fn fetch(
    data: &Path,
    switches: &[String],
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let exfil = example("exfil").display().to_string();
    let input = json!({"url": format!("https://{UPSTREAM}/")}).to_string();
    let mut args: Vec<&str> = switches.iter().map(String::as_str).collect();
    args.extend([
        "run",
        "--allow-unsigned",
        &exfil,
        "--action",
        "fetch",
        "--input",
        &input,
        "--json",
    ]);
    args.extend(extra);
    airlock_with(data, &args, "", env)
}

fn assert_no_canary(what: &str, bytes: &[u8]) {
    let hit = bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes());
    assert!(!hit, "{what} holds the canary in plaintext");
}

/// `airlock <switches> run --tenant T --installation exfil-1 --action fetch` of `url`.
fn fetch_installed(
    op: &Operator,
    switches: &[String],
    tenant: &str,
    url: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    let input = json!({ "url": url }).to_string();
    let mut args: Vec<&str> = switches.iter().map(String::as_str).collect();
    args.extend([
        "run",
        "--tenant",
        tenant,
        "--installation",
        "exfil-1",
        "--action",
        "fetch",
        "--input",
        &input,
        "--json",
    ]);
    airlock_with(op.data(), &args, "", env)
}

/// The vault's URL.
const VAULT: &str = "https://vault.allowed.test/";

/// The vault rule of exfil, granted.
const VAULT_GRANT: &str = "[[egress]]\nurl = \"https://vault.allowed.test\"\nmethods = [\"GET\"]\n";

#[test]
fn stored_credentials_are_sealed_injected_and_scoped_to_their_tenant() {
    let op = Operator::new();
    let (mock, switches) = setup(op.data());
    let v1 = op.exfil("0.1.0", "");
    let grant = op.grant("vault.toml", VAULT_GRANT);
    op.ok(&["tenant", "create", "globex"]);
    let bundle = v1.display().to_string();
    for tenant in ["acme", "globex"] {
        op.ok(&[
            "install",
            "--tenant",
            tenant,
            &bundle,
            "--installation",
            "exfil-1",
            "--grant",
            &grant,
        ]);
    }
    let set = |name: &str, value: &str| op.set_credential("acme", "exfil-1", name, value);

    // Only an installation that exists takes credentials.
    let out = op.set_credential("acme", "nowhere", "token", CANARY);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("installation nowhere of tenant acme does not exist"),
        "{}",
        stderr(&out)
    );

    let out = set("token", &format!("{CANARY}\n"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stored credential `token` (bearer)"),
        "{}",
        stderr(&out)
    );
    let out = set("token", CANARY);
    assert!(
        stderr(&out).contains("rotated credential `token`"),
        "{}",
        stderr(&out)
    );
    let key = op.data().join("master.key");
    let mode = std::fs::metadata(&key)
        .expect("master key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // A value that could split a header is refused, naming the problem, and nothing is stored.
    let out = set("key", "abc\r\nX-Evil: 1");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("carriage return at byte 3"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("X-Evil"));
    let out = set("nope", CANARY);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("declares no credential `nope`"),
        "{}",
        stderr(&out)
    );

    let list = op.ok(&[
        "credentials",
        "list",
        "--tenant",
        "acme",
        "--installation",
        "exfil-1",
        "--json",
    ]);
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).expect("list JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["name"], "token");
    assert_eq!(listed[0]["type"], "bearer");
    assert_eq!(listed[0]["origins"], json!(["https://vault.allowed.test"]));
    assert!(listed[0]["rotated"].is_u64());
    assert_no_canary("credentials list", &list.stdout);

    let run = fetch_installed(&op, &switches, "acme", VAULT, &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(
        mock.requests()[0].header("authorization"),
        [format!("Bearer {CANARY}")]
    );
    assert_no_canary("run stdout", &run.stdout);
    assert_no_canary("run stderr", &run.stderr);
    assert!(
        stdout(&run).contains("Bearer [REDACTED]"),
        "{}",
        stdout(&run)
    );

    // Another tenant's installation of the same name has no such credential.
    let other = fetch_installed(&op, &switches, "globex", VAULT, &[]);
    assert!(
        stderr(&other).contains("credential-missing"),
        "{}",
        stderr(&other)
    );
    assert_eq!(mock.requests().len(), 1);

    // An upgrade that binds the same credential name to another origin does not get it: the
    // stored value is bound to the origins it was set for.
    let v2 = op.exfil(
        "0.2.0",
        "[[egress]]\nurl = \"https://rebound.allowed.test\"\nmethods = [\"GET\"]\ncredential = \"token\"\n",
    );
    let both = op.grant(
        "rebound.toml",
        &format!(
            "{VAULT_GRANT}[[egress]]\nurl = \"https://rebound.allowed.test\"\nmethods = [\"GET\"]\n"
        ),
    );
    op.ok(&[
        "install",
        "--tenant",
        "acme",
        &v2.display().to_string(),
        "--installation",
        "exfil-1",
        "--grant",
        &both,
    ]);
    let mut rebound = switches.clone();
    rebound.extend([
        "--resolve".to_string(),
        format!("rebound.allowed.test={}", mock.addr()),
    ]);
    let out = fetch_installed(&op, &rebound, "acme", "https://rebound.allowed.test/", &[]);
    assert!(
        stderr(&out).contains("credential-unbound"),
        "{}",
        stderr(&out)
    );
    assert_no_canary("rebound run", &out.stdout);
    assert_eq!(mock.requests().len(), 1);

    for file in files_under(op.data()) {
        assert_no_canary(
            &file.display().to_string(),
            &std::fs::read(&file).expect("read"),
        );
    }

    // Under another master key the sealed value does not open: the request fails closed.
    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let run = fetch_installed(
        &op,
        &switches,
        "acme",
        VAULT,
        &[("AIRLOCK_MASTER_KEY", wrong)],
    );
    assert!(
        stderr(&run).contains("credential-store"),
        "{}",
        stderr(&run)
    );
    assert_eq!(mock.requests().len(), 1);

    op.ok(&[
        "credentials",
        "delete",
        "--tenant",
        "acme",
        "--installation",
        "exfil-1",
        "token",
    ]);
    let run = fetch_installed(&op, &switches, "acme", VAULT, &[]);
    assert!(
        stderr(&run).contains("credential-missing"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn local_runs_take_secrets_from_the_environment_or_a_private_file_only() {
    let data = TempDir::new().expect("temp");
    let (mock, switches) = setup(data.path());

    let run = fetch(
        data.path(),
        &switches,
        &["--secret", "token=env:VAULT_TOKEN"],
        &[("VAULT_TOKEN", CANARY)],
    );
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(
        mock.requests()[0].header("authorization"),
        [format!("Bearer {CANARY}")]
    );
    assert_no_canary("stdout", &run.stdout);

    // A value on the command line is refused without echoing it.
    let run = fetch(
        data.path(),
        &switches,
        &["--secret", &format!("token={CANARY}")],
        &[],
    );
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("takes env:VAR"), "{}", stderr(&run));
    assert_no_canary("stderr", &run.stderr);

    let file = data.path().join("secrets.toml");
    std::fs::write(&file, format!("token = \"{CANARY}\"\n")).expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let path = file.display().to_string();
    let run = fetch(data.path(), &switches, &["--secrets-file", &path], &[]);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("has mode 0644"), "{}", stderr(&run));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let run = fetch(data.path(), &switches, &["--secrets-file", &path], &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(mock.requests().len(), 2);

    // An undeclared name and an invalid value are refused before anything runs.
    let run = fetch(
        data.path(),
        &switches,
        &["--secret", "github=env:VAULT_TOKEN"],
        &[("VAULT_TOKEN", CANARY)],
    );
    assert!(
        stderr(&run).contains(
            "credential `github` (from environment variable VAULT_TOKEN) is not declared"
        ),
        "{}",
        stderr(&run)
    );
    let run = fetch(
        data.path(),
        &switches,
        &["--secret", "token=env:VAULT_TOKEN"],
        &[("VAULT_TOKEN", "two words")],
    );
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("space at byte 3"), "{}", stderr(&run));
    assert_eq!(mock.requests().len(), 2);
}
