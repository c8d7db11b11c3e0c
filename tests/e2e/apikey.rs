//! API keys through the binary: printed once, stored only as a hash, scoped to one tenant,
//! revocable, and gone with their tenant.

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{airlock, files_under, stderr, stdout};

fn ok(data: &std::path::Path, args: &[&str]) -> String {
    let out = airlock(data, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

fn keys(data: &std::path::Path) -> Vec<Value> {
    serde_json::from_str(&ok(data, &["api-key", "list", "--json"])).expect("JSON list")
}

#[test]
fn a_key_is_shown_once_stored_as_a_hash_and_revocable() {
    let data = TempDir::new().expect("temp dir");
    let refused = airlock(
        data.path(),
        &["api-key", "create", "--tenant", "acme", "--scope", "invoke"],
    );
    assert_eq!(refused.status.code(), Some(2), "no such tenant yet");
    ok(data.path(), &["tenant", "create", "acme"]);
    let bad_scope = airlock(
        data.path(),
        &["api-key", "create", "--tenant", "acme", "--scope", "root"],
    );
    assert_eq!(bad_scope.status.code(), Some(2));
    assert!(
        stderr(&bad_scope).contains("unknown scope"),
        "{}",
        stderr(&bad_scope)
    );

    let key = ok(
        data.path(),
        &[
            "api-key",
            "create",
            "--tenant",
            "acme",
            "--scope",
            "invoke,audit:read",
            "--expires",
            "90d",
        ],
    );
    let key = key.trim();
    assert!(
        key.starts_with("airlock_") && key.len() == 8 + 16 + 1 + 43,
        "{key}"
    );
    let admin = ok(data.path(), &["api-key", "create", "--admin"]);

    let listed = keys(data.path());
    assert_eq!(listed.len(), 2);
    let mine = listed
        .iter()
        .find(|k| k["tenant"] == "acme")
        .expect("acme's key");
    assert_eq!(mine["scopes"], serde_json::json!(["invoke", "audit:read"]));
    assert!(mine["expires"].as_u64().is_some());
    let secret = &key[25..];
    for file in files_under(data.path()) {
        let bytes = std::fs::read(&file).expect("read");
        for needle in [secret, &admin.trim()[25..]] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "a key's secret is stored in {}",
                file.display()
            );
        }
    }

    let id = mine["id"].as_str().expect("id");
    ok(data.path(), &["api-key", "revoke", id]);
    let revoked = keys(data.path());
    assert!(
        revoked
            .iter()
            .any(|k| k["id"] == id && k["revoked"].is_u64())
    );
    let audit = ok(data.path(), &["audit", "list", "--security"]);
    assert!(
        audit.contains("api-key-changed") && audit.contains("Revoked"),
        "{audit}"
    );

    ok(data.path(), &["tenant", "delete", "acme"]);
    let left = keys(data.path());
    assert_eq!(left.len(), 1, "only the admin key outlives the tenant");
}
