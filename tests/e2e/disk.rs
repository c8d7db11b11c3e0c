//! Full and read-only disks under `airlock serve` (docs/deploy.md, "Full and read-only
//! disks"): writes are refused with a clear error, nothing refused is half-written, nothing
//! acknowledged is lost, and the server serves again when the disk does, without a restart.
//!
//! The disks are tmpfs mounts, which need root: without it the tests are skipped saying why,
//! unless `AIRLOCK_REQUIRE_MOUNT` is set (`scripts/test` sets it as root; CI never skips).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tempfile::TempDir;

use crate::cluster::roomy_hostile;
use crate::operator::Operator;
use crate::serving::{Server, TENANT_SCOPES, mapper_input};

const MAPPER: &str = "/v1/installations/mapper/actions/map-contact";
const KV: &str = "/v1/installations/hostile/actions/kv";

/// A tmpfs of its own, unmounted when dropped.
pub(crate) struct Disk {
    dir: TempDir,
}

impl Disk {
    /// A tmpfs of `size` (as `mount -o size=` reads it); `None`, saying why, when this process
    /// may not mount and the tests may be skipped.
    pub(crate) fn mount(size: &str) -> Option<Disk> {
        let dir = TempDir::new().expect("temp dir");
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        if mounted.status.success() {
            return Some(Disk { dir });
        }
        let why = String::from_utf8_lossy(&mounted.stderr).trim().to_string();
        assert!(
            std::env::var_os("AIRLOCK_REQUIRE_MOUNT").is_none(),
            "AIRLOCK_REQUIRE_MOUNT is set but a tmpfs cannot be mounted: {why}"
        );
        eprintln!("skipped: cannot mount a tmpfs to fill ({why}); run as root");
        None
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a file until a write fails; returns the file.
    pub(crate) fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let block = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&block) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        assert!(written > 0, "the disk was already full");
        path
    }

    /// Remounts the disk read-only, or writable again.
    pub(crate) fn read_only(&self, read_only: bool) {
        let mode = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let out = Command::new("mount")
            .args(["-o", mode])
            .arg(self.path())
            .output()
            .expect("mount runs");
        assert!(out.status.success(), "mount -o {mode}: {out:?}");
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// A server on `op` with the mapper and a kv-roomy hostile installed; the tenant's key.
async fn serving(op: &Operator) -> (Server, String) {
    let server = Server::start(op, &[], &[]);
    let mapper = server
        .upload(&op.example("contact-mapper", "contact_mapper.wasm"))
        .await;
    let hostile = server.upload(&roomy_hostile(op)).await;
    let key = server.key("acme", &TENANT_SCOPES, None).await;
    let installed = server.install_mapper(&key, &mapper).await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let installed = server
        .post("/v1/installations", &key, json!({"bundle": hostile}))
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    (server, key)
}

/// Writes while the disk cannot take them: a kv set and an invocation, by turns, until
/// `refusals` were refused (at most 500 tries). Each answer is a success, kept in `acked`, or a
/// refusal naming its cause; returns the refusals' error codes.
async fn write_until_refused(
    server: &Server,
    key: &str,
    tag: &str,
    refusals: usize,
    acked: &mut Vec<(String, String)>,
) -> Vec<String> {
    let mut refused = Vec::new();
    for i in 0..500 {
        let (k, v) = (format!("{tag}-{i}"), format!("value-{tag}-{i}"));
        let reply = if i % 2 == 0 {
            server
                .post(KV, key, json!({"op": "set", "key": k, "value": v}))
                .await
        } else {
            server.post(MAPPER, key, mapper_input()).await
        };
        match reply.status {
            StatusCode::OK if i % 2 == 0 && reply.body == json!({}) => acked.push((k, v)),
            StatusCode::OK if i % 2 == 1 => {}
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::INTERNAL_SERVER_ERROR => {
                let code = reply.body["error"]["code"].as_str().unwrap_or_default();
                assert!(
                    !code.is_empty() && reply.body["error"]["message"].as_str().is_some(),
                    "a refusal names its cause: {}",
                    reply.body
                );
                refused.push(code.to_string());
                if refused.len() >= refusals {
                    break;
                }
            }
            status => panic!("{tag}: {status} {}", reply.body),
        }
    }
    assert!(
        refused.len() >= refusals,
        "{tag}: 500 writes and only {} refused",
        refused.len()
    );
    refused
}

/// Polls until an invocation and a kv set succeed again (at most 20 s).
async fn serves_again(server: &Server, key: &str, acked: &mut Vec<(String, String)>) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (k, v) = ("after".to_string(), "recovered".to_string());
        let set = server
            .post(KV, key, json!({"op": "set", "key": k, "value": v}))
            .await;
        let ran = server.post(MAPPER, key, mapper_input()).await;
        if set.status == StatusCode::OK && ran.status == StatusCode::OK {
            acked.push((k, v));
            return;
        }
        assert!(
            Instant::now() < until,
            "not serving 20 s after the disk came back: {} {}, {} {}",
            set.status,
            set.body,
            ran.status,
            ran.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every acknowledged kv set reads back.
async fn assert_kept(server: &Server, key: &str, acked: &[(String, String)]) {
    for (k, v) in acked {
        let reply = server.post(KV, key, json!({"op": "get", "key": k})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body, json!({"found": true, "value": v}), "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_data_disk_refuses_writes_loses_nothing_and_serves_again() {
    let Some(disk) = Disk::mount("96m") else {
        return;
    };
    let audit = TempDir::new().expect("audit dir");
    let op = Operator::on_disks(disk.path(), audit.path());
    let (server, key) = serving(&op).await;
    let mut acked = Vec::new();

    let filler = disk.fill();
    let refused = write_until_refused(&server, &key, "full", 4, &mut acked).await;
    eprintln!("disk full: refused as {refused:?}");
    std::fs::remove_file(&filler).expect("space back");
    serves_again(&server, &key, &mut acked).await;

    assert_kept(&server, &key, &acked).await;
    server.stop();

    // The kernel refuses to remount a disk read-only while the server holds its database open
    // for writing, so a read-only data disk meets a server when it starts: it refuses, saying
    // so, and starts once the disk is writable again.
    disk.read_only(true);
    let refused = Server::refused(&op, op.data());
    let said = crate::support::stderr(&refused);
    assert_ne!(refused.status.code(), Some(0), "{said}");
    assert!(said.contains("Read-only file system"), "{said}");
    disk.read_only(false);

    op.ok(&["audit", "verify"]);
    let server = Server::start(&op, &[], &[]);
    assert_kept(&server, &key, &acked).await;
}

/// Invokes the mapper until `refusals` invocations were refused (at most 20,000 tries): a
/// checkpoint falls due every 1,000 records, and on a full disk the checkpoint file's last
/// page still takes the few lines that fit in it (about ten). Returns the refusals' codes.
async fn invoke_until_refused(server: &Server, key: &str, refusals: usize) -> Vec<String> {
    let mut refused = Vec::new();
    for _ in 0..20_000 {
        let reply = server.post(MAPPER, key, mapper_input()).await;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                let code = reply.body["error"]["code"].as_str().unwrap_or_default();
                refused.push(code.to_string());
                if refused.len() >= refusals {
                    return refused;
                }
            }
            status => panic!("{status} {}", reply.body),
        }
    }
    panic!("20,000 invocations and only {} refused", refused.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_audit_dir_refuses_to_acknowledge_and_serves_again() {
    let Some(disk) = Disk::mount("4m") else {
        return;
    };
    let data = TempDir::new().expect("data parent");
    let op = Operator::on_disks(data.path(), disk.path());
    let (server, key) = serving(&op).await;
    let mut acked = Vec::new();

    // The first checkpoint falls due while the audit dir has no room for it.
    let filler = disk.fill();
    let refused = invoke_until_refused(&server, &key, 3).await;
    assert!(
        refused.iter().all(|code| code == "audit-unavailable"),
        "{refused:?}"
    );
    std::fs::remove_file(&filler).expect("space back");
    serves_again(&server, &key, &mut acked).await;

    disk.read_only(true);
    let refused = invoke_until_refused(&server, &key, 3).await;
    assert!(
        refused.iter().all(|code| code == "audit-unavailable"),
        "{refused:?}"
    );
    disk.read_only(false);
    serves_again(&server, &key, &mut acked).await;

    server.stop();
    // Every checkpoint line is whole and signed, and the chain matches them.
    let report = op.ok(&["audit", "verify"]);
    let report = crate::support::stdout(&report);
    let signed: u64 = report
        .split("; ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint count: {report}"));
    // One after each recovery, one at the stop.
    assert!(signed >= 3, "{report}");
    let server = Server::start(&op, &[], &[]);
    assert_kept(&server, &key, &acked).await;
}
