//! Loading fails closed: bad manifests, excessive limits, remote schema refs and imports
//! outside the world are refused with errors that name what and where.

use airlock_runtime::LoadError;

use crate::support::{
    custom_integration, example, fresh, mapper_config, mapper_copy, mapper_manifest, mapper_with,
    outcome, read_example, shared,
};

fn load_error(dir: &std::path::Path) -> LoadError {
    match shared().load(dir) {
        Ok(i) => panic!("{} loaded but should not have", i.label()),
        Err(e) => e,
    }
}

#[test]
fn sockets_import_is_refused_naming_the_import() {
    let error = load_error(&example("hostile-sockets"));
    assert!(matches!(error, LoadError::Import { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("wasi:sockets/"), "{message}");
}

#[test]
fn unknown_manifest_key_is_reported_with_line_and_column() {
    let manifest = mapper_manifest("memroy = \"64 MiB\"\n");
    let line = manifest
        .lines()
        .position(|l| l.starts_with("memroy"))
        .expect("inserted")
        + 1;
    let dir = custom_integration("contact-mapper", "contact_mapper.wasm", &manifest);
    let message = load_error(dir.path()).to_string();
    assert!(
        message.contains(&format!("airlock.toml:{line}:1")),
        "{message}"
    );
    assert!(message.contains("memroy"), "{message}");
}

#[test]
fn limits_above_the_operator_ceiling_are_refused() {
    let manifest = mapper_manifest("").replace("memory = \"64 MiB\"", "memory = \"8 GiB\"");
    let dir = custom_integration("contact-mapper", "contact_mapper.wasm", &manifest);
    let message = load_error(dir.path()).to_string();
    assert!(
        message.contains("limits.memory = 8 GiB exceeds"),
        "{message}"
    );
}

#[test]
fn schema_with_a_remote_ref_is_refused_at_load() {
    let dir = mapper_with(
        "schemas/map-contact.in.json",
        br#"{"$ref": "https://schemas.example/contact.json"}"#,
    );
    let message = load_error(dir.path()).to_string();
    assert!(
        message.contains("https://schemas.example/contact.json"),
        "{message}"
    );
}

#[test]
fn missing_component_suggests_building_it() {
    let dir = mapper_copy();
    std::fs::remove_file(dir.path().join("component.wasm")).expect("remove");
    let message = load_error(dir.path()).to_string();
    assert!(
        message.contains("component.wasm") && message.contains("airlock build"),
        "{message}"
    );
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let dir = mapper_with("component.wasm", b"\0asm\x01\0\0\0garbage");
    let error = load_error(dir.path());
    assert!(matches!(error, LoadError::Compile { .. }), "{error:?}");
}

/// Each proposal that is off is refused by wasmtime's validator (at parse, or for instructions
/// when the function is translated, before any code is generated), naming the feature (SB-17).
#[test]
fn components_using_disabled_proposals_are_refused_at_compile() {
    // (proposal, what the refusal names, component)
    let cases = [
        (
            "memory64",
            "memory64",
            "(component (core module (memory i64 1)))",
        ),
        (
            "threads",
            "threads",
            "(component (core module (memory 1 1 shared)))",
        ),
        ("gc", "gc", "(component (core module (type (struct))))"),
        (
            "exceptions",
            "exceptions",
            "(component (core module (tag)))",
        ),
        (
            "multi-memory",
            "multiple memories",
            "(component (core module (memory 1) (memory 1)))",
        ),
        (
            "tail calls",
            "tail calls",
            "(component (core module (func $f (return_call $f))))",
        ),
        (
            "function references",
            "function references",
            "(component (core module (type $t (func)) (func (param (ref $t)))))",
        ),
        (
            "stack switching",
            "stack switching",
            "(component (core module (type $f (func)) (type (cont $f))))",
        ),
        (
            "relaxed SIMD",
            "relaxed SIMD",
            "(component (core module (func (param v128 v128 v128) (result v128) \
             (f32x4.relaxed_madd (local.get 0) (local.get 1) (local.get 2)))))",
        ),
        (
            "wide arithmetic",
            "wide arithmetic",
            "(component (core module (func (param i64 i64 i64 i64) (result i64 i64) \
             (i64.add128 (local.get 0) (local.get 1) (local.get 2) (local.get 3)))))",
        ),
        (
            "custom page sizes",
            "custom page sizes",
            "(component (core module (memory 1 (pagesize 1))))",
        ),
        (
            "component-model async",
            "component model async",
            "(component (type (stream u8)))",
        ),
    ];
    for (proposal, named, text) in cases {
        let wasm = wat::parse_str(text).unwrap_or_else(|e| panic!("{proposal}: {e}"));
        let dir = mapper_with("component.wasm", &wasm);
        let error = load_error(dir.path());
        assert!(
            matches!(error, LoadError::Compile { .. }),
            "{proposal} should be refused by the compiler, got: {error}"
        );
        assert!(error.to_string().contains(named), "{proposal}: {error}");
    }
}

#[test]
fn a_plain_component_passes_compile_and_fails_only_for_its_missing_export() {
    // The control for the test above: what the proposals cases refuse is the proposal.
    let wasm = wat::parse_str("(component (core module (memory 1)))").expect("wat");
    let dir = mapper_with("component.wasm", &wasm);
    let error = load_error(dir.path());
    assert!(matches!(error, LoadError::World { .. }), "{error:?}");
    assert!(
        error.to_string().contains("airlock:integration/handler"),
        "{error}"
    );
}

/// An installed bundle loaded to run compiles each action's schemas on its first use: an action
/// whose schema does not compile fails alone, naming the file, while the others run. Loaded to
/// be installed, the same bundle is refused at load.
#[test]
fn an_installed_bundle_compiles_each_actions_schemas_on_first_use() {
    use airlock_runtime::bundle::{self, PublicKey, SigningKey};
    use airlock_runtime::manifest::LoadedManifest;
    use airlock_runtime::trust::TrustStore;

    // Strict JSON, so it parses at load; not a schema, so it fails to compile.
    let dir = mapper_with("schemas/map-contacts.out.json", br#"{"type": "nonsense"}"#);
    let manifest = LoadedManifest::load(dir.path()).expect("manifest");
    let key = SigningKey::from_bytes(&[7; 32]);
    let signed = bundle::sign_dir(&manifest, &key).expect("signs");
    let mut trust = TrustStore::default();
    let public = PublicKey::from_verifying_key(key.verifying_key());
    trust
        .add(&public, &manifest.manifest.publisher.name, 0)
        .expect("trusted");
    let origin = dir.path().join("mapper.airlock");
    let (_data, runtime) = fresh();

    let refused = match bundle::load_verified(&runtime, &origin, &signed.bytes, &trust) {
        Ok(_) => panic!("a bundle with a schema that does not compile was installed"),
        Err(error) => error.to_string(),
    };
    assert!(refused.contains("map-contacts.out.json"), "{refused}");

    let mapper = bundle::load_installed(&runtime, &origin, &signed.bytes, &trust)
        .expect("an installed bundle loads to run");
    let config = mapper_config(&mapper);
    let run = |action: &str, input: &str| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        rt.block_on(runtime.invoke(&mapper, &config, action, input))
    };
    let contact = read_example("contact-mapper", "sample-input.json");
    let mapped = run("map-contact", &contact);
    assert!(mapped.result.is_ok(), "{:?}", mapped.result);
    // The deferred input schema judges as the eager one does.
    let rejected = run("map-contact", r#"{"Id": 7}"#);
    assert_eq!(outcome(&rejected), "input-rejected");

    let page = format!(r#"{{"contacts": [{contact}]}}"#);
    for _ in 0..2 {
        let failed = run("map-contacts", &page);
        let error = failed
            .result
            .expect_err("its output schema does not compile");
        assert_eq!(error.class(), "host-failure");
        let message = error.to_string();
        assert!(
            message.contains("map-contacts.out.json") && message.contains("invalid"),
            "{message}"
        );
    }
}
