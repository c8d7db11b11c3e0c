//! Only trusted code runs (security catalogue §5.6): `airlock keygen`, `sign`, `trust` and
//! `inspect` through the binary, then every tampering of a signed bundle refused with exit 6,
//! the reason named, and nothing compiled, by `run`, `install` and the server alike.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use tempfile::TempDir;

use crate::operator::Operator;
use crate::serving::{Body, Server, records_of};
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
            "--no-build",
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
    assert!(
        compiled_entries(data).is_empty(),
        "nothing may be compiled for refused code"
    );
}

/// The compiled components cached in `data`.
fn compiled_entries(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("compiled")).map_or(Vec::new(), |dir| {
        dir.filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect()
    })
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
    // Inspecting comes before trusting: an unknown key is reported, not an error.
    let inspect = airlock(s.data.path(), &["inspect", &s.bundle.display().to_string()]);
    assert_eq!(inspect.status.code(), Some(0));
    assert!(
        stdout(&inspect).contains("NOT VERIFIED (unknown-key)")
            && stdout(&inspect).contains("does not trust key"),
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
    let inspect = airlock(s.data.path(), &["inspect", &s.bundle.display().to_string()]);
    assert_eq!(inspect.status.code(), Some(6), "a revoked key is a refusal");
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
        // A flip in signed content is a digest mismatch; one in the signature itself may
        // also break its JSON or base64.
        let reasons: &[&str] = if name == "SIGNATURE" {
            &["digest-mismatch", "malformed"]
        } else {
            &["digest-mismatch"]
        };
        for at in [*offset, offset + size / 2, offset + size - 1] {
            let mut bytes = original.clone();
            bytes[at] ^= 0x01;
            cases.push((format!("flip in {name} at {at}"), bytes, reasons));
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
    assert!(
        compiled_entries(s.data.path()).is_empty(),
        "no tampered bundle compiled"
    );
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
            "--no-build",
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

/// `bundle` with its SIGNATURE entry (the last) taken from `donor`.
fn with_signature_of(bundle: &[u8], donor: &[u8]) -> Vec<u8> {
    let header = |bytes: &[u8]| {
        let (name, offset, _) = entries(bytes).pop().expect("entries");
        assert_eq!(name, "SIGNATURE");
        offset - 512
    };
    let mut swapped = bundle[..header(bundle)].to_vec();
    swapped.extend_from_slice(&donor[header(donor)..]);
    swapped
}

/// `bytes` with the one occurrence of `from` replaced by `to` (same length: the archive stays
/// well-formed, only the signed content changes).
fn edited(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .expect("text present");
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to.as_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_and_the_server_refuse_swapped_widened_and_unsigned_code() {
    let op = Operator::new();
    let v1 = std::fs::read(op.exfil("0.1.0", "")).expect("bundle");
    let v2 = std::fs::read(op.exfil("0.1.1", "")).expect("bundle");
    // ST-04: a valid signature by the same publisher, for another version; ST-03: the
    // manifest edited to send egress to another host.
    let cases = [
        (
            "swapped signature",
            with_signature_of(&v1, &v2),
            "digest-mismatch",
        ),
        (
            "widened egress",
            edited(&v1, "api.allowed.test", "evil.example.com"),
            "digest-mismatch",
        ),
    ];
    for (what, bytes, reason) in &cases {
        let path = op.keys.path().join("tampered.airlock");
        std::fs::write(&path, bytes).expect("write");
        let out = op.install(&path, &[]);
        assert_eq!(out.status.code(), Some(6), "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains(reason), "{what}: {}", stderr(&out));
    }
    let out = op.install(&example("exfil"), &[]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("unsigned"), "{}", stderr(&out));
    assert!(op.installations().is_empty());

    let server = Server::start(&op, &[], &[]);
    for (what, bytes, reason) in cases {
        let reply = server
            .call(
                Method::POST,
                "/v1/bundles",
                Some(&server.admin),
                Body::Raw(bytes),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["code"], "untrusted", "{}", reply.body);
        assert!(reply.body.to_string().contains(reason), "{}", reply.body);
    }
    // The genuine bundle is accepted, so the refusals above were about the tampering.
    server
        .upload(&op.keys.path().join("exfil-0.1.0.airlock"))
        .await;
    server.stop();
    assert_eq!(
        compiled_entries(op.data()).len(),
        1,
        "only the genuine bundle was compiled"
    );
    let refused = records_of(&op, "trust-refused");
    assert_eq!(refused.len(), 5, "{refused:#?}");
}

#[test]
fn a_tampered_cache_entry_of_a_signed_bundle_is_rebuilt_from_the_bundle() {
    let s = signed();
    trust(s.data.path(), &s.public_key, PUBLISHER);
    ok(&run(s.data.path(), &s.bundle, &[]));
    let entry = compiled_entries(s.data.path())
        .pop()
        .expect("one compiled entry");
    let mut bytes = std::fs::read(&entry).expect("entry");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&entry, &bytes).expect("tamper");
    let out = run(s.data.path(), &s.bundle, &[]);
    ok(&out);
    assert!(stdout(&out).contains("\"crm:vip\""), "{}", stdout(&out));
    let rebuilt = std::fs::read(&entry).expect("entry");
    assert_ne!(rebuilt, bytes, "the tampered entry was replaced, not used");
}
