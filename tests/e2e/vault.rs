//! Credentials through the CLI: `airlock credentials set|list|delete` into the encrypted store,
//! `airlock run --tenant --installation` injecting them, and local `--secret` / `--secrets-file`
//! values. The canary must never appear in plaintext in the data dir, in output or in errors.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use serde_json::json;
use tempfile::TempDir;

use crate::operator::Operator;
use crate::support::{airlock_with, example, files_under, stderr, stdout};
use airlock_testkit::{Reply, TestCa, Upstream};

const CANARY: &str = "canary-51d0e9-vault";
const UPSTREAM: &str = "vault.allowed.test";

/// An echoing TLS mock for `vault.allowed.test`, and the dev switches that point the name at
/// the mock and trust its CA (written into `data`).
fn setup(data: &Path) -> (Upstream, Vec<String>) {
    let ca = TestCa::new().expect("test CA");
    let ip = "127.0.0.2".parse().expect("ip");
    let mock = Upstream::start(&ca, &[UPSTREAM], ip, Reply::echo_headers).expect("upstream starts");
    let switches = vec![
        "--resolve".into(),
        format!("{UPSTREAM}={}", mock.addr()),
        "--allow-private".into(),
        "127.0.0.0/8".into(),
        "--extra-root-ca".into(),
        ca.write_pem(data)
            .expect("CA written")
            .display()
            .to_string(),
    ];
    (mock, switches)
}

/// `airlock run exfil --action fetch <switches>` against the vault host, plus `extra`.
fn fetch(
    data: &Path,
    switches: &[String],
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let exfil = example("exfil").display().to_string();
    let input = json!({"url": format!("https://{UPSTREAM}/")}).to_string();
    let mut args = vec![
        "run",
        "--allow-unsigned",
        &exfil,
        "--action",
        "fetch",
        "--input",
        &input,
        "--json",
    ];
    args.extend(switches.iter().map(String::as_str));
    args.extend(extra);
    airlock_with(data, &args, "", env)
}

/// The egress events of a `--json` run's summary, as JSON text.
fn egress(out: &std::process::Output) -> String {
    let document: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--json prints one JSON object");
    document["summary"]["egress"].to_string()
}

fn assert_no_canary(what: &str, bytes: &[u8]) {
    let hit = bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes());
    assert!(!hit, "{what} holds the canary in plaintext");
}

/// `airlock run --tenant T --installation exfil-1 --action fetch <switches>` of `url`.
fn fetch_installed(
    op: &Operator,
    switches: &[String],
    tenant: &str,
    url: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    let input = json!({ "url": url }).to_string();
    let mut args = vec![
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
    ];
    args.extend(switches.iter().map(String::as_str));
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
        egress(&other).contains("credential-missing"),
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
        egress(&out).contains("credential-unbound"),
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
        egress(&run).contains("credential-store"),
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
        egress(&run).contains("credential-missing"),
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

const KV_NAME: &str = "contact:kv-canary-3a9c@acme.example";
const CONFIG_CANARY: &str = "cfg-canary-77d2:";
const USER_CANARY: &str = "jane.canary-e5b0@acme.example";

/// How many times each of `needles` occurs in the files under `dir`.
fn hits(dir: &Path, needles: &[&[u8]]) -> usize {
    files_under(dir)
        .iter()
        .map(|file| {
            let bytes = std::fs::read(file).expect("read");
            needles
                .iter()
                .map(|n| bytes.windows(n.len()).filter(|w| w == n).count())
                .sum::<usize>()
        })
        .sum()
}

/// `airlock run` of acme's `installation` with `action` and `input`.
fn run_installed(op: &Operator, installation: &str, action: &str, input: &str) -> Output {
    op.airlock(&[
        "run",
        "--tenant",
        "acme",
        "--installation",
        installation,
        "--action",
        action,
        "--input",
        input,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_config_and_user_ids_are_sealed_and_a_deleted_tenants_key_is_in_no_file() {
    // A user id: jane connects Slack through consent and posts as herself.
    let s = crate::connect::setup().await;
    s.connected("slack-users", Some(USER_CANARY), "jane").await;
    let (status, body) = s.post_alert("slack-users", Some(USER_CANARY)).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let crate::connect::Setup { op, server, .. } = s;
    server.stop();

    // A kv key name, and an installation's config, both used by the code they belong to.
    let hostile = op.example("hostile", "hostile.wasm").display().to_string();
    op.ok(&["install", "--tenant", "acme", &hostile]);
    let set = json!({"op": "set", "key": KV_NAME, "value": "v"}).to_string();
    let out = run_installed(&op, "hostile", "kv", &set);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let list = json!({"op": "list", "prefix": "contact:"}).to_string();
    let out = run_installed(&op, "hostile", "kv", &list);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).expect("JSON"),
        json!({"keys": [KV_NAME]})
    );
    let mapper = op
        .example("contact-mapper", "contact_mapper.wasm")
        .display()
        .to_string();
    let config = json!({"default_country_code": "44", "tag_prefix": CONFIG_CANARY}).to_string();
    op.ok(&["install", "--tenant", "acme", &mapper, "--config", &config]);
    let input = crate::support::read_example("contact-mapper", "sample-input.json");
    let out = run_installed(&op, "contact-mapper", "map-contact", &input);
    assert!(
        stdout(&out).contains(&format!("{CONFIG_CANARY}vip")),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    // None of them is on disk in clear: not in the database, its log, or anywhere else.
    for canary in [KV_NAME, CONFIG_CANARY, USER_CANARY] {
        assert_eq!(
            hits(op.data(), &[canary.as_bytes()]),
            0,
            "{canary} is in the data dir"
        );
    }

    // The tenant's wrapped data key is in its key file, and the scan finds it there…
    let key_file = op.data().join("keys").join("acme.key");
    let wrapped: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&key_file).expect("key file")).expect("JSON");
    let ciphertext: Vec<u8> = wrapped["ciphertext"]
        .as_array()
        .expect("ciphertext")
        .iter()
        .map(|b| u8::try_from(b.as_u64().expect("byte")).expect("byte"))
        .collect();
    let as_json = serde_json::to_string(&ciphertext).expect("JSON");
    let needles: [&[u8]; 2] = [&ciphertext, as_json.as_bytes()];
    assert_eq!(hits(op.data(), &needles), 1);
    // …and a ciphertext it sealed is taken before the tenant goes: the mapper's record.
    let record_key = b"acme\0contact-mapper";
    let old_record = {
        let db = sled::open(op.data().join("db")).expect("db");
        let tree = db.open_tree("installations").expect("tree");
        tree.get(record_key)
            .expect("read")
            .expect("record")
            .to_vec()
    };
    assert!(String::from_utf8_lossy(&old_record).contains("sealed_config"));

    // After `tenant delete`, no byte of any file (database segments included) holds the key.
    op.ok(&["tenant", "delete", "acme"]);
    assert!(!key_file.exists());
    assert_eq!(
        hits(op.data(), &needles),
        0,
        "the wrapped key outlived its tenant"
    );

    // The same tenant made again, under the same master key, cannot open what the old key
    // sealed: the old record put back in place fails closed, naming what cannot be opened.
    op.ok(&["tenant", "create", "acme"]);
    op.ok(&["install", "--tenant", "acme", &mapper, "--config", &config]);
    let out = run_installed(&op, "contact-mapper", "map-contact", &input);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    {
        let db = sled::open(op.data().join("db")).expect("db");
        let tree = db.open_tree("installations").expect("tree");
        tree.insert(record_key, old_record).expect("put back");
        db.flush().expect("flush");
    }
    let out = run_installed(&op, "contact-mapper", "map-contact", &input);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out)
            .contains("config of installation contact-mapper of tenant acme cannot be decrypted"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains(CONFIG_CANARY));
}

#[test]
fn a_rotated_master_key_opens_every_secret_and_the_retired_one_opens_none() {
    let op = Operator::new();
    let (mock, switches) = setup(op.data());
    let bundle = op.exfil("0.1.0", "").display().to_string();
    let grant = op.grant("vault.toml", VAULT_GRANT);
    op.ok(&["tenant", "create", "globex"]);
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
        let out = op.set_credential(tenant, "exfil-1", "token", &format!("{CANARY}-{tenant}"));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let key_file = op.master_key();
    let old = std::fs::read_to_string(&key_file).expect("master key");

    // Staging makes the next key beside the file, 0600, and uses nothing yet; again, the same.
    let staged = stdout(&op.ok(&["master-key", "stage"])).trim().to_string();
    assert_eq!(staged, format!("{}.next", key_file.display()));
    let next = std::fs::read_to_string(&staged).expect("staged key");
    let mode = std::fs::metadata(&staged)
        .expect("staged")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    op.ok(&["master-key", "stage"]);
    assert_eq!(std::fs::read_to_string(&staged).expect("staged"), next);

    let out = op.ok(&["master-key", "rotate"]);
    assert!(
        stderr(&out).contains("2 data key(s) re-wrapped"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&key_file).expect("key"), next);
    assert!(!Path::new(&staged).exists());
    let retired: Vec<_> = std::fs::read_dir(key_file.parent().expect("parent"))
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("master.key.retired-")
        })
        .collect();
    assert_eq!(retired.len(), 1);
    assert_eq!(
        std::fs::read_to_string(retired[0].path()).expect("old"),
        old
    );

    // Every tenant's secret opens under the new key and is injected as before.
    for (n, tenant) in ["acme", "globex"].into_iter().enumerate() {
        let run = fetch_installed(&op, &switches, tenant, VAULT, &[]);
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
        assert_eq!(
            mock.requests()[n].header("authorization"),
            [format!("Bearer {CANARY}-{tenant}")]
        );
    }
    // The retired key opens nothing any more: the request fails closed.
    let run = fetch_installed(
        &op,
        &switches,
        "acme",
        VAULT,
        &[("AIRLOCK_MASTER_KEY", old.trim())],
    );
    assert!(
        egress(&run).contains("credential-store"),
        "{}",
        stderr(&run)
    );
    assert_eq!(mock.requests().len(), 2);

    // Run again, a rotation re-wraps the keys under yet another key; it is recorded each time.
    let out = op.ok(&["master-key", "rotate"]);
    assert!(stderr(&out).contains("2 data key(s) re-wrapped"));
    let export = stdout(&op.ok(&["audit", "export"]));
    let rotations = export
        .lines()
        .filter(|l| l.contains("\"type\":\"master-key-rotated\""))
        .count();
    assert_eq!(rotations, 2, "{export}");
    op.ok(&["audit", "verify"]);

    // A key from the environment has no file to rotate.
    let out = airlock_with(
        op.data(),
        &["master-key", "rotate"],
        "",
        &[("AIRLOCK_MASTER_KEY", next.trim())],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("AIRLOCK_MASTER_KEY"),
        "{}",
        stderr(&out)
    );
}
