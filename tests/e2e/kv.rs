//! kv through the binary: a guest's store outlives the invocation, belongs to one installation
//! of one tenant, is sealed at rest, is bounded by the manifest's quota, and dies with the
//! tenant.

use std::process::Output;

use serde_json::{Value, json};

use crate::operator::Operator;
use crate::support::{example, files_under, stderr, stdout};

const CANARY: &str = "canary-kv-5e1f09";

/// Runs the hostile example's `action` with `input` for `tenant`'s installation.
fn run(op: &Operator, tenant: &str, action: &str, input: Value) -> Value {
    let input = input.to_string();
    let out = op.airlock(&[
        "run",
        "--tenant",
        tenant,
        "--installation",
        "hostile",
        "--action",
        action,
        "--input",
        &input,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("JSON output")
}

#[test]
fn kv_belongs_to_one_installation_outlives_invocations_and_is_bounded() {
    let op = Operator::new();
    op.ok(&["tenant", "create", "globex"]);
    let bundle = op.example("hostile", "hostile.wasm").display().to_string();
    for tenant in ["acme", "globex"] {
        op.ok(&["install", "--tenant", tenant, &bundle]);
    }
    let kv = |tenant: &str, input: Value| run(&op, tenant, "kv", input);

    // Set in one invocation, read in the next (each a fresh sandbox in a fresh process).
    assert_eq!(
        kv(
            "acme",
            json!({"op": "set", "key": "cursor", "value": CANARY})
        ),
        json!({})
    );
    let got = kv("acme", json!({"op": "get", "key": "cursor"}));
    assert_eq!(got, json!({"found": true, "value": CANARY}));
    // Another tenant's installation of the same integration, under the same id, sees nothing.
    let other = kv("globex", json!({"op": "get", "key": "cursor"}));
    assert_eq!(other, json!({"found": false}));
    assert_eq!(
        kv("globex", json!({"op": "list", "prefix": ""})),
        json!({"keys": []})
    );
    assert_eq!(
        kv("acme", json!({"op": "list", "prefix": "cur"})),
        json!({"keys": ["cursor"]})
    );

    // Bad keys and oversized values are refused by the host, naming why.
    let refused = kv("acme", json!({"op": "set", "key": "", "value": "x"}));
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid-key")),
        "{refused}"
    );
    let refused = kv("acme", json!({"op": "get", "key": "a\u{0}b"}));
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("control character")),
        "{refused}"
    );
    let big = "x".repeat(5000);
    let refused = kv("acme", json!({"op": "set", "key": "big", "value": big}));
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("5000 bytes; the most is 4096")),
        "{refused}"
    );

    // A guest that writes until stopped is stopped by the quota (64 KiB), and the store holds.
    let filled = run(&op, "acme", "kv-fill", json!({}));
    let written = filled["written"].as_u64().expect("count");
    assert!((55..64).contains(&written), "{filled}");
    assert!(
        filled["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("quota-exceeded")),
        "{filled}"
    );
    // The quota holds across invocations: a new key does not fit, an old one can be deleted.
    let more = kv(
        "acme",
        json!({"op": "set", "key": "one-more", "value": "x".repeat(1000)}),
    );
    assert!(
        more["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("quota-exceeded")),
        "{more}"
    );
    assert_eq!(
        kv("acme", json!({"op": "delete", "key": "fill-000000"})),
        json!({"found": true})
    );
    assert_eq!(
        kv("acme", json!({"op": "get", "key": "cursor"}))["value"],
        CANARY
    );

    // The trail counts kv calls and never holds a key or value; no file holds the value.
    let export = stdout(&op.ok(&["audit", "export"]));
    assert!(!export.contains(CANARY) && !export.contains("cursor"));
    assert!(export.contains("\"kv\":{\"reads\":"), "{export}");
    for file in files_under(op.data()) {
        let bytes = std::fs::read(&file).expect("read");
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "{} holds the value in plaintext",
            file.display()
        );
    }

    // Deleting the tenant deletes its store: a new tenant of the same name starts empty.
    op.ok(&["tenant", "delete", "acme"]);
    op.ok(&["tenant", "create", "acme"]);
    op.ok(&["install", "--tenant", "acme", &bundle]);
    assert_eq!(
        kv("acme", json!({"op": "get", "key": "cursor"})),
        json!({"found": false})
    );
}

/// `airlock run --allow-unsigned PATH --action kv --input INPUT OPTIONS…`.
fn run_unsigned(op: &Operator, options: &[&str], path: &str, input: &Value) -> Output {
    let input = input.to_string();
    let mut args = vec![
        "run",
        "--allow-unsigned",
        path,
        "--action",
        "kv",
        "--input",
        &input,
    ];
    args.extend(options);
    op.airlock(&args)
}

#[test]
fn a_local_run_keeps_its_own_store_and_an_integration_without_kv_has_none() {
    let op = Operator::new();
    let hostile = example("hostile").display().to_string();
    let local = |input: Value| {
        let out = run_unsigned(&op, &[], &hostile, &input);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_str::<Value>(&stdout(&out)).expect("JSON output")
    };
    local(json!({"op": "set", "key": "k", "value": "v"}));
    assert_eq!(
        local(json!({"op": "get", "key": "k"})),
        json!({"found": true, "value": "v"})
    );

    // The operator bounds the quota: a manifest asking for more than the ceiling does not load.
    let get = json!({"op": "get", "key": "k"});
    let out = run_unsigned(&op, &["--ceiling-kv-bytes", "32 KiB"], &hostile, &get);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("kv.max-bytes = 64 KiB exceeds the operator's ceiling of 32 KiB"),
        "{}",
        stderr(&out)
    );
    let out = op.ok(&["check", &hostile]);
    assert!(
        stdout(&out).contains("kv         store of at most 64 KiB, 100 keys, 4 KiB per value"),
        "{}",
        stdout(&out)
    );

    // The same component under a manifest with no [kv] gets `unavailable`.
    let manifest = crate::support::read_example("hostile", "airlock.toml").replace(
        "[kv]\nmax-bytes = \"64 KiB\"\nmax-keys = 100\nmax-value-bytes = \"4 KiB\"\n",
        "",
    );
    assert!(!manifest.contains("[kv]"));
    let manifest = manifest.replace(
        "component = \"../target/wasm32-wasip2/release/hostile.wasm\"",
        "component = \"component.wasm\"",
    );
    let dir = crate::support::custom_integration("hostile", "hostile.wasm", &manifest);
    let path = dir.path().display().to_string();
    let out = run_unsigned(&op, &[], &path, &get);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("unavailable: this integration declares no [kv] store"),
        "{}",
        stdout(&out)
    );
}
