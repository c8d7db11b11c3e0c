//! Loading fails closed: bad manifests, excessive limits, remote schema refs and imports
//! outside the world are refused with errors that name what and where.

use airlock_runtime::LoadError;

use crate::support::{custom_integration, example, mapper_manifest, shared};

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
    let dir = custom_integration(
        "contact-mapper",
        "contact_mapper.wasm",
        &mapper_manifest(""),
    );
    std::fs::write(
        dir.path().join("schemas/map-contact.in.json"),
        r#"{"$ref": "https://schemas.example/contact.json"}"#,
    )
    .expect("write schema");
    let message = load_error(dir.path()).to_string();
    assert!(
        message.contains("https://schemas.example/contact.json"),
        "{message}"
    );
}

#[test]
fn missing_component_suggests_building_it() {
    let dir = custom_integration(
        "contact-mapper",
        "contact_mapper.wasm",
        &mapper_manifest(""),
    );
    std::fs::remove_file(dir.path().join("component.wasm")).expect("remove");
    let message = load_error(dir.path()).to_string();
    assert!(
        message.contains("component.wasm") && message.contains("airlock build"),
        "{message}"
    );
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let dir = custom_integration(
        "contact-mapper",
        "contact_mapper.wasm",
        &mapper_manifest(""),
    );
    std::fs::write(dir.path().join("component.wasm"), b"\0asm\x01\0\0\0garbage").expect("write");
    let error = load_error(dir.path());
    assert!(matches!(error, LoadError::Compile { .. }), "{error:?}");
}
