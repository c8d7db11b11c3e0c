//! Credentials through the CLI: `airlock credentials set|list|delete` into the encrypted store,
//! `airlock run --tenant --installation` injecting them, and local `--secret` / `--secrets-file`
//! values. The canary must never appear in plaintext in the data dir, in output or in errors.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;
use tempfile::TempDir;

use crate::mock::{MockResponse, MockUpstream, TestCa};
use crate::support::{
    airlock_with, custom_integration, example, files_under, read_example, stderr, stdout,
};

const CANARY: &str = "canary-51d0e9-vault";
const UPSTREAM: &str = "vault.allowed.test";

/// An echoing TLS mock for `vault.allowed.test`, an empty data dir, and the dev switches that
/// point the name at the mock and trust its CA.
fn setup() -> (MockUpstream, TempDir, Vec<String>) {
    let ca = TestCa::new();
    let ip = "127.0.0.2".parse().expect("ip");
    let mock = MockUpstream::start(&ca, &[UPSTREAM], ip, MockResponse::echo_headers);
    let data = TempDir::new().expect("temp");
    let switches = vec![
        "--resolve".into(),
        format!("{UPSTREAM}={}", mock.addr()),
        "--allow-private".into(),
        "127.0.0.0/8".into(),
        "--extra-root-ca".into(),
        ca.write_pem(data.path()).display().to_string(),
    ];
    (mock, data, switches)
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

fn set(data: &Path, tenant: &str, name: &str, value: &str) -> std::process::Output {
    let exfil = example("exfil").display().to_string();
    airlock_with(
        data,
        &[
            "credentials",
            "set",
            "--tenant",
            tenant,
            "--installation",
            "exfil-1",
            "--integration",
            &exfil,
            name,
        ],
        value,
        &[],
    )
}

#[test]
fn stored_credentials_are_sealed_injected_and_scoped_to_their_tenant() {
    let (mock, data, switches) = setup();

    let out = set(data.path(), "acme", "token", &format!("{CANARY}\n"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stored credential `token` (bearer)"),
        "{}",
        stderr(&out)
    );
    let out = set(data.path(), "acme", "token", CANARY);
    assert!(
        stderr(&out).contains("rotated credential `token`"),
        "{}",
        stderr(&out)
    );
    let key = data.path().join("master.key");
    let mode = std::fs::metadata(&key)
        .expect("master key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // A value that could split a header is refused, naming the problem, and nothing is stored.
    let out = set(data.path(), "acme", "key", "abc\r\nX-Evil: 1");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("carriage return at byte 3"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("X-Evil"));
    let out = set(data.path(), "acme", "nope", CANARY);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("declares no credential `nope`"),
        "{}",
        stderr(&out)
    );

    let list = airlock_with(
        data.path(),
        &[
            "credentials",
            "list",
            "--tenant",
            "acme",
            "--installation",
            "exfil-1",
            "--json",
        ],
        "",
        &[],
    );
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).expect("list JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["name"], "token");
    assert_eq!(listed[0]["type"], "bearer");
    assert_eq!(listed[0]["origins"], json!(["https://vault.allowed.test"]));
    assert!(listed[0]["rotated"].is_u64());
    assert_no_canary("credentials list", &list.stdout);

    let run = fetch(
        data.path(),
        &switches,
        &["--tenant", "acme", "--installation", "exfil-1"],
        &[],
    );
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

    // A manifest that binds the same credential name to another origin does not get it: the
    // stored value is bound to the origins it was set for.
    let rebound = read_example("exfil", "airlock.toml")
        .replace(
            "component = \"../target/wasm32-wasip2/release/exfil.wasm\"",
            "component = \"component.wasm\"",
        )
        .replace(
            "url = \"https://api.allowed.test\"\nmethods = [\"GET\", \"POST\"]\n",
            "url = \"https://api.allowed.test\"\nmethods = [\"GET\", \"POST\"]\ncredential = \"token\"\n",
        );
    assert!(rebound.contains("credential = \"token\"\n\n[[egress]]\nurl = \"https://echo"));
    let dir = custom_integration("exfil", "exfil.wasm", &rebound);
    let input = json!({"url": "https://api.allowed.test/"}).to_string();
    let mut args: Vec<&str> = switches.iter().map(String::as_str).collect();
    let dir_arg = dir.path().display().to_string();
    args.extend(["run", "--allow-unsigned", &dir_arg, "--action", "fetch"]);
    args.extend([
        "--input",
        &input,
        "--tenant",
        "acme",
        "--installation",
        "exfil-1",
    ]);
    let out = airlock_with(data.path(), &args, "", &[]);
    assert!(
        stderr(&out).contains("credential-unbound"),
        "{}",
        stderr(&out)
    );
    assert_no_canary("rebound run", &out.stdout);
    assert_eq!(mock.requests().len(), 1);

    // Another tenant's installation of the same name has no such credential.
    let other = fetch(
        data.path(),
        &switches,
        &["--tenant", "globex", "--installation", "exfil-1"],
        &[],
    );
    assert!(
        stderr(&other).contains("credential-missing"),
        "{}",
        stderr(&other)
    );
    assert_eq!(mock.requests().len(), 1);

    for file in files_under(data.path()) {
        assert_no_canary(
            &file.display().to_string(),
            &std::fs::read(&file).expect("read"),
        );
    }

    // Under another master key the sealed value does not open: the request fails closed.
    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let run = fetch(
        data.path(),
        &switches,
        &["--tenant", "acme", "--installation", "exfil-1"],
        &[("AIRLOCK_MASTER_KEY", wrong)],
    );
    assert!(
        stderr(&run).contains("credential-store"),
        "{}",
        stderr(&run)
    );
    assert_eq!(mock.requests().len(), 1);

    let out = airlock_with(
        data.path(),
        &[
            "credentials",
            "delete",
            "--tenant",
            "acme",
            "--installation",
            "exfil-1",
            "token",
        ],
        "",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = fetch(
        data.path(),
        &switches,
        &["--tenant", "acme", "--installation", "exfil-1"],
        &[],
    );
    assert!(
        stderr(&run).contains("credential-missing"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn local_runs_take_secrets_from_the_environment_or_a_private_file_only() {
    let (mock, data, switches) = setup();

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
