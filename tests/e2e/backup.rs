//! `airlock backup` and `airlock restore` end to end: a backup taken through a running server
//! while invocations write kv, restored into a fresh data dir whose trail `airlock audit
//! verify` passes and whose tenants, installations and kv are there (and nothing written after
//! the backup); a damaged or cut backup and an occupied target are refused, leaving nothing.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::operator::Operator;
use crate::serving::{Server, TENANT_SCOPES};
use crate::support::{airlock_command, stderr, stdout};

/// `airlock ARGS…` on the data dir `data`, with the operator's master key (kept in its own data
/// dir, where `airlock` makes it by default).
fn airlock_on(op: &Operator, data: &Path, args: &[&str]) -> Output {
    let master = op.data().join("master.key");
    airlock_command(data, args)
        .env("AIRLOCK_MASTER_KEY_FILE", master)
        .output()
        .expect("airlock runs")
}

/// acme's `hostile` kv action with `input`, through the server.
async fn kv(server: &Server, key: &str, input: Value) -> Value {
    let reply = server
        .post("/v1/installations/hostile/actions/kv", key, input)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_into_a_fresh_dir_that_verifies() {
    let op = Operator::new();
    let hostile = op.example("hostile", "hostile.wasm");
    let server = Server::start(&op, &[], &[]);
    let digest = server.upload(&hostile).await;
    let acme = server.tenant("acme", &TENANT_SCOPES).await;
    let installed = server
        .post(
            "/v1/installations",
            &acme,
            json!({"bundle": digest, "installation": "hostile"}),
        )
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    kv(
        &server,
        &acme,
        json!({"op": "set", "key": "cursor", "value": "before"}),
    )
    .await;

    // Invocations keep writing while the CLI asks the server for a backup.
    let load = {
        let (http, base, key) = (server.http.clone(), server.base.clone(), acme.clone());
        tokio::spawn(async move {
            for i in 0..40 {
                let input = json!({"op": "set", "key": format!("load-{i}"), "value": "x"});
                let reply = http
                    .post(format!("{base}/v1/installations/hostile/actions/kv"))
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(input.to_string())
                    .send()
                    .await
                    .expect("the server answers");
                assert!(reply.status().is_success(), "{}", reply.status());
            }
        })
    };
    let keys = tempfile::TempDir::new().expect("temp dir");
    let file = keys.path().join("nightly.airlock-backup");
    let file_arg = file.display().to_string();
    let taken = {
        let (data, to) = (op.data().to_path_buf(), file_arg.clone());
        tokio::task::spawn_blocking(move || {
            airlock_command(&data, &["backup", "--to", &to])
                .output()
                .expect("airlock runs")
        })
        .await
        .expect("backup")
    };
    assert_eq!(taken.status.code(), Some(0), "{}", stderr(&taken));
    assert!(stderr(&taken).contains("the master key is not in it"));
    load.await.expect("load");
    // After the backup: a write and a tenant it does not hold, and checkpoints over them.
    kv(
        &server,
        &acme,
        json!({"op": "set", "key": "cursor", "value": "after"}),
    )
    .await;
    let globex = server
        .post("/v1/tenants", &server.admin, json!({"id": "globex"}))
        .await;
    assert_eq!(globex.status, StatusCode::CREATED, "{}", globex.body);
    server.stop();

    let mode = std::fs::metadata(&file)
        .expect("backup")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let bytes = std::fs::read(&file).expect("backup");
    let master = std::fs::read(op.data().join("master.key")).expect("master key");
    assert!(
        !bytes
            .windows(master.trim_ascii().len())
            .any(|w| w == master.trim_ascii()),
        "the master key is in the backup"
    );
    let again = op.airlock(&["backup", "--to", &file_arg]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));

    let fresh = tempfile::TempDir::new().expect("temp dir");
    let restored = fresh.path().join("data");
    let out = airlock_on(&op, &restored, &["restore", "--from", &file_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("audit trail verified"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("signed after this backup"),
        "{}",
        stderr(&out)
    );
    let verified = airlock_on(&op, &restored, &["audit", "verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", stdout(&verified));
    // The original's trail is untouched by the restored one's.
    op.ok(&["audit", "verify"]);

    let tenants = airlock_on(&op, &restored, &["tenant", "list"]);
    assert!(stdout(&tenants).contains("acme"), "{}", stdout(&tenants));
    assert!(!stdout(&tenants).contains("globex"), "{}", stdout(&tenants));
    let listed = airlock_on(&op, &restored, &["install", "list", "--json"]);
    let installations: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(
        installations[0]["installation"], "hostile",
        "{installations}"
    );
    let get = json!({"op": "get", "key": "cursor"}).to_string();
    let run = airlock_on(
        &op,
        &restored,
        &[
            "run",
            "--tenant",
            "acme",
            "--installation",
            "hostile",
            "--action",
            "kv",
            "--input",
            &get,
        ],
    );
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let value: Value = serde_json::from_str(&stdout(&run)).expect("JSON");
    assert_eq!(value["value"], "before", "{value}");
    // The restored data dir keeps going: that run is on its trail, which still verifies.
    let verified = airlock_on(&op, &restored, &["audit", "verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", stdout(&verified));
}

#[test]
fn a_damaged_backup_and_an_occupied_target_are_refused_and_nothing_is_left() {
    let op = Operator::new();
    let keys = tempfile::TempDir::new().expect("temp dir");
    let file = keys.path().join("backup");
    let file_arg = file.display().to_string();
    op.ok(&["backup", "--to", &file_arg]);
    let bytes = std::fs::read(&file).expect("backup");
    let fresh = tempfile::TempDir::new().expect("temp dir");
    let target = fresh.path().join("data");

    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let cut = &bytes[..bytes.len() - 10];
    // A flipped byte is found by the digest, or as a length that runs past the end.
    for (name, damaged, says) in [
        ("flipped", &flipped[..], &["damaged", "cut short"][..]),
        ("cut", cut, &["cut short"][..]),
    ] {
        let path = keys.path().join(name);
        std::fs::write(&path, damaged).expect("write");
        let out = airlock_on(
            &op,
            &target,
            &["restore", "--from", &path.display().to_string()],
        );
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(
            says.iter().any(|s| stderr(&out).contains(s)),
            "{name}: {}",
            stderr(&out)
        );
        assert!(!target.exists(), "{name}: the target was made");
        let left: Vec<_> = std::fs::read_dir(fresh.path()).expect("list").collect();
        assert!(left.is_empty(), "{name}: {left:?} left behind");
    }

    // The operator's own data dir is not empty: refused, and left as it was.
    let before = crate::support::files_under(op.data());
    let out = airlock_on(&op, op.data(), &["restore", "--from", &file_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not an empty directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(crate::support::files_under(op.data()), before);
}
