//! Only trusted code runs (security catalogue §5.6): `airlock keygen`, `sign`, `trust` and
//! `inspect` through the binary, then every tampering of a signed bundle refused with exit 6,
//! the reason named, and nothing compiled.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::support::{airlock, example, example_arg, stderr, stdout};

const PUBLISHER: &str = "Acme Integrations";

/// A data dir, a publisher key, and contact-mapper signed with it.
struct Signed {
    data: TempDir,
    public_key: String,
    bundle: PathBuf,
}

fn ok(out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(out),
        stderr(out)
    );
}

fn signed() -> Signed {
    let data = TempDir::new().expect("temp");
    let key = data.path().join("publisher.key");
    let key_arg = key.display().to_string();
    let out = airlock(data.path(), &["keygen", "--out", &key_arg]);
    ok(&out);
    let public_key = stdout(&out).trim().to_string();
    assert!(public_key.starts_with("airlock-ed25519 "), "{public_key}");
    let again = airlock(data.path(), &["keygen", "--out", &key_arg]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing key is never overwritten"
    );

    let bundle = data.path().join("mapper.airlock");
    let out = airlock(
        data.path(),
        &[
            "sign",
            &example("contact-mapper").display().to_string(),
            "--key",
            &key_arg,
            "--out",
            &bundle.display().to_string(),
        ],
    );
    ok(&out);
    assert!(stderr(&out).contains("digest sha256:"), "{}", stderr(&out));
    Signed {
        data,
        public_key,
        bundle,
    }
}

fn trust(data: &Path, public_key: &str, publisher: &str) {
    ok(&airlock(
        data,
        &["trust", "add", public_key, "--publisher", publisher],
    ));
}

/// `airlock run TARGET [EXTRA…] --action map-contact` with contact-mapper's samples.
fn run(data: &Path, target: &Path, extra: &[&str]) -> std::process::Output {
    let target = target.display().to_string();
    let input = example_arg("contact-mapper", "sample-input.json");
    let config = example_arg("contact-mapper", "sample-config.json");
    let mut args = vec!["run", target.as_str()];
    args.extend(extra);
    args.extend([
        "--action",
        "map-contact",
        "--input",
        &input,
        "--config",
        &config,
    ]);
    airlock(data, &args)
}

/// Asserts a refusal with exit 6 naming `reason`, and that nothing was compiled.
fn refused(out: &std::process::Output, reason: &str, data: &Path) {
    assert_eq!(out.status.code(), Some(6), "{}", stderr(out));
    assert!(
        stderr(out).contains(reason),
        "expected {reason}: {}",
        stderr(out)
    );
    let compiled = data.join("compiled");
    let entries = std::fs::read_dir(&compiled).map_or(0, |d| d.count());
    assert_eq!(entries, 0, "nothing may be compiled for refused code");
}

/// The (name, data offset, size) of each entry of a ustar archive.
fn entries(bundle: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= bundle.len() && bundle[at..at + 512].iter().any(|b| *b != 0) {
        let header = &bundle[at..at + 512];
        let name = String::from_utf8_lossy(&header[..100])
            .trim_end_matches('\0')
            .to_string();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&header[124..136])
                .trim_matches(|c: char| c == '\0' || c == ' '),
            8,
        )
        .expect("octal size");
        out.push((name, at + 512, size));
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

#[test]
fn a_signed_bundle_from_a_trusted_key_runs() {
    let s = signed();
    // Not trusted yet: refused, and inspect still shows what it asks for.
    refused(
        &run(s.data.path(), &s.bundle, &[]),
        "unknown-key",
        s.data.path(),
    );
    let inspect = airlock(s.data.path(), &["inspect", &s.bundle.display().to_string()]);
    assert_eq!(inspect.status.code(), Some(6));
    assert!(
        stdout(&inspect).contains("NOT VERIFIED (unknown-key)"),
        "{}",
        stdout(&inspect)
    );

    trust(s.data.path(), &s.public_key, PUBLISHER);
    let out = run(s.data.path(), &s.bundle, &[]);
    ok(&out);
    assert!(stdout(&out).contains("\"crm:vip\""), "{}", stdout(&out));

    let inspect = airlock(
        s.data.path(),
        &["inspect", &s.bundle.display().to_string(), "--json"],
    );
    ok(&inspect);
    let shown: serde_json::Value = serde_json::from_str(&stdout(&inspect)).expect("JSON");
    assert_eq!(shown["signature"]["status"], "trusted");
    assert_eq!(shown["publisher"]["name"], PUBLISHER);
    assert!(
        shown["signature"]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    let key_id = shown["signature"]["key_id"]
        .as_str()
        .expect("key id")
        .to_string();
    assert!(s.public_key.contains(&key_id));

    // Revocation takes effect at once.
    ok(&airlock(s.data.path(), &["trust", "revoke", &key_id]));
    let out = run(s.data.path(), &s.bundle, &[]);
    assert_eq!(out.status.code(), Some(6));
    assert!(stderr(&out).contains("revoked-key"), "{}", stderr(&out));
    let again = airlock(
        s.data.path(),
        &["trust", "add", &s.public_key, "--publisher", PUBLISHER],
    );
    assert_eq!(
        again.status.code(),
        Some(2),
        "a revoked key cannot come back"
    );
}

#[test]
fn unsigned_code_runs_only_with_the_loud_dev_switch() {
    let data = TempDir::new().expect("temp");
    let dir = example("contact-mapper");
    refused(&run(data.path(), &dir, &[]), "unsigned", data.path());
    let out = run(data.path(), &dir, &["--allow-unsigned"]);
    ok(&out);
    assert!(
        stderr(&out).contains("warning: dev switch --allow-unsigned"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_key_trusted_for_another_publisher_is_refused() {
    let s = signed();
    trust(s.data.path(), &s.public_key, "Someone Else");
    refused(
        &run(s.data.path(), &s.bundle, &[]),
        "publisher-mismatch",
        s.data.path(),
    );
}

#[test]
fn every_tampering_is_refused_before_anything_compiles() {
    let s = signed();
    trust(s.data.path(), &s.public_key, PUBLISHER);
    let original = std::fs::read(&s.bundle).expect("bundle");
    let layout = entries(&original);
    let names: Vec<&str> = layout.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"airlock.toml"), "{names:?}");
    assert_eq!(names.last(), Some(&"SIGNATURE"), "{names:?}");
    assert!(
        names.contains(&"component.wasm") && names.contains(&"schemas/map-contact.in.json"),
        "{names:?}"
    );

    let tampered = s.data.path().join("tampered.airlock");
    let mut cases: Vec<(String, Vec<u8>, &[&str])> = Vec::new();
    for (name, offset, size) in &layout {
        for at in [*offset, offset + size / 2, offset + size - 1] {
            let mut bytes = original.clone();
            bytes[at] ^= 0x01;
            cases.push((
                format!("flip in {name} at {at}"),
                bytes,
                &["digest-mismatch", "malformed"],
            ));
        }
    }
    let mut appended = original.clone();
    appended.extend_from_slice(b"\0\0\0\0extra");
    cases.push(("appended data".into(), appended, &["malformed"]));
    let mut header = original.clone();
    header[0] ^= 0x20;
    cases.push(("flip in a header".into(), header, &["malformed"]));
    cases.push((
        "truncated".into(),
        original[..original.len() - 1024].to_vec(),
        &["malformed", "unsigned"],
    ));

    for (what, bytes, reasons) in cases {
        std::fs::write(&tampered, &bytes).expect("write");
        let out = run(s.data.path(), &tampered, &[]);
        assert_eq!(out.status.code(), Some(6), "{what}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(reasons.iter().any(|r| err.contains(r)), "{what}: {err}");
    }
    let compiled = std::fs::read_dir(s.data.path().join("compiled")).map_or(0, |d| d.count());
    assert_eq!(compiled, 0, "no tampered bundle compiled");
    ok(&run(s.data.path(), &s.bundle, &[]));
}

#[test]
fn sign_writes_its_default_output_in_the_current_directory() {
    let dir = TempDir::new().expect("temp");
    let key = dir.path().join("publisher.key");
    ok(&airlock(
        dir.path(),
        &["keygen", "--out", &key.display().to_string()],
    ));
    let out = std::process::Command::new(crate::support::airlock_bin())
        .current_dir(dir.path())
        .args([
            "sign",
            &example("contact-mapper").display().to_string(),
            "--key",
        ])
        .arg(&key)
        .env("AIRLOCK_AUDIT_DIR", crate::support::audit_dir())
        .output()
        .expect("airlock runs");
    ok(&out);
    assert!(
        dir.path()
            .join("acme_contact-mapper-0.1.0.airlock")
            .is_file()
    );
}
