//! A damaged store (docs/deploy.md, "A damaged store"): a data dir whose database log was cut
//! short, had a byte of an audit record flipped, or was put back to an earlier copy is refused
//! by `airlock serve` (non-zero, saying what is damaged, before it listens), `airlock audit
//! verify` names the damage, and the backup taken before restores into a data dir that serves.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use tempfile::TempDir;

use crate::operator::Operator;
use crate::serving::{Server, TENANT_SCOPES, mapper_input};
use crate::support::{stderr, stdout};

const MAPPER: &str = "/v1/installations/mapper/actions/map-contact";

/// How a copy of the data dir is damaged, at the audit record with sequence number `seq` in
/// sled's log, where every record is stored as its line of JSON (sled may hold older copies of
/// a page too: the last copy is the live one).
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The log ends just before the record's last copy.
    CutAt(u64),
    /// One byte of each copy of the record flips.
    Flip(u64),
}

impl Damage {
    fn apply(self, data: &Path) {
        let log = data.join("db").join("db");
        let mut bytes = std::fs::read(&log).expect("the database's log");
        let copies = |seq: u64| {
            let needle = format!("{{\"seq\":{seq},\"time\":\"");
            let at: Vec<usize> = bytes
                .windows(needle.len())
                .enumerate()
                .filter(|(_, w)| *w == needle.as_bytes())
                .map(|(at, _)| at + needle.len())
                .collect();
            assert!(!at.is_empty(), "record {seq} is not in the log as written");
            at
        };
        match self {
            Damage::CutAt(seq) => {
                let last = *copies(seq).last().expect("a copy");
                bytes.truncate(last);
            }
            // A digit of its time: still JSON, no longer the bytes its hash covers.
            Damage::Flip(seq) => {
                for at in copies(seq) {
                    bytes[at + 3] ^= 0x01;
                }
            }
        }
        std::fs::write(&log, bytes).expect("damage the log");
    }
}

/// Copies the data dir `from` into a new `to` (files and directories only).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("copy dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let kind = entry.file_type().expect("file type");
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// `airlock ARGS…` on the data dir `data`, with the operator's environment and master key.
fn on(op: &Operator, data: &Path, args: &[&str]) -> Command {
    let mut command = op.command(data, args);
    command.env("AIRLOCK_MASTER_KEY_FILE", op.data().join("master.key"));
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_refused_named_and_restored_from_a_backup() {
    let op = Operator::new();
    let server = Server::start(&op, &[], &[]);
    let mapper = server
        .upload(&op.example("contact-mapper", "contact_mapper.wasm"))
        .await;
    let key = server.key("acme", &TENANT_SCOPES, None).await;
    let installed = server.install_mapper(&key, &mapper).await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let invoke = async |server: &Server, times: usize| {
        for _ in 0..times {
            let ran = server.post(MAPPER, &key, mapper_input()).await;
            assert_eq!(ran.status, StatusCode::OK, "{}", ran.body);
        }
    };
    invoke(&server, 300).await;
    // A clean stop signs a checkpoint over every record.
    server.stop();
    let scratch = TempDir::new().expect("scratch");
    let earlier = scratch.path().join("earlier");
    copy_dir(op.data(), &earlier);
    let server = Server::start(&op, &[], &[]);
    invoke(&server, 50).await;
    server.stop();
    let backups = TempDir::new().expect("backups");
    let backup = backups.path().join("store.airlock-backup");
    let backup_arg = backup.display().to_string();
    op.ok(&["backup", "--to", &backup_arg]);

    let records = crate::serving::records_of(&op, "invocation");
    let last = records.last().expect("records")["seq"]
        .as_u64()
        .expect("seq");
    for damage in [Damage::CutAt(200), Damage::CutAt(last), Damage::Flip(200)] {
        let copy = scratch.path().join(format!("{damage:?}"));
        copy_dir(op.data(), &copy);
        damage.apply(&copy);

        // sled finds these itself: a page fails its checksum, or the log ends inside one.
        let served = Server::refused(&op, &copy);
        let said = stderr(&served);
        assert_eq!(served.status.code(), Some(1), "{damage:?}: {said}");
        assert!(
            said.contains("the database is damaged (") && said.contains("docs/deploy.md"),
            "{damage:?}: the refusal says what is damaged and what to do: {said}"
        );
        let verified = on(&op, &copy, &["audit", "verify"])
            .output()
            .expect("audit verify runs");
        let report = stderr(&verified);
        assert_ne!(verified.status.code(), Some(0), "{damage:?}: {report}");
        assert!(report.contains("the database is damaged ("), "{report}");
    }

    // A database put back to an earlier copy of itself (a disk snapshot restored by hand) is
    // whole to sled; the checkpoint signed since says records are missing from its end.
    let rolled_back = scratch.path().join("rolled-back");
    copy_dir(op.data(), &rolled_back);
    std::fs::remove_dir_all(rolled_back.join("db")).expect("remove db");
    copy_dir(&earlier.join("db"), &rolled_back.join("db"));
    let served = Server::refused(&op, &rolled_back);
    let said = stderr(&served);
    assert_eq!(served.status.code(), Some(7), "{said}");
    assert!(
        said.contains("the audit trail in the store is damaged at record")
            && said.contains("records were cut from the end"),
        "{said}"
    );
    let verified = on(&op, &rolled_back, &["audit", "verify"])
        .output()
        .expect("audit verify runs");
    assert_eq!(verified.status.code(), Some(7), "{}", stderr(&verified));
    assert!(
        stdout(&verified).contains("BROKEN at record"),
        "{}",
        stdout(&verified)
    );

    let restored: PathBuf = scratch.path().join("restored");
    let out = on(&op, &restored, &["restore", "--from", &backup_arg])
        .output()
        .expect("airlock restore runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The restored host runs with the same master key, copied in as the original keeps it.
    let master = restored.join("master.key");
    std::fs::copy(op.data().join("master.key"), &master).expect("master key");
    std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o600)).expect("mode");
    let server = Server::node(&op, &restored, "restored", &[]);
    let ran = server.post(MAPPER, &key, mapper_input()).await;
    assert_eq!(ran.status, StatusCode::OK, "{}", ran.body);
}
