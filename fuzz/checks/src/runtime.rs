//! airlock-runtime's parsers: manifests, strict JSON, schemas and the instances they judge,
//! ids.

use std::path::Path;

use airlock_runtime::ids::{InstallationId, TenantId, UserId};
use airlock_runtime::json::{Document, JsonError, parse_strict};
use airlock_runtime::manifest::LoadedManifest;
use airlock_runtime::schema::Schema;
use serde_json::Value;

/// The manifest (`airlock.toml`): any text parses or is refused with a position, never a panic.
pub fn manifest(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = LoadedManifest::parse(Path::new("airlock.toml"), text);
    }
}

/// Strict JSON: nothing panics; what parses reads back from its own serialization as the same
/// value; an object's members are found by name in the document as in the value; an object
/// given a duplicate of its first key is refused.
pub fn json_strict(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = parse_strict(text, 1 << 20) else {
        return;
    };
    let again = parse_strict(&value.to_string(), 1 << 21).expect("its own serialization parses");
    assert_eq!(again, value);
    if let Value::Object(map) = &value {
        let document = Document::parse(text, 1 << 20).expect("parse_strict accepted it");
        let lookup = |name: &str| document.root().get(name).map(|cursor| cursor.to_value());
        for (name, member) in map {
            assert_eq!(lookup(name).as_ref(), Some(member), "member {name:?}");
            let near = format!("{name}\u{0}");
            assert_eq!(lookup(&near).as_ref(), map.get(&near), "member {near:?}");
        }
    }
    if let Value::Object(map) = &value
        && let Some(first) = map.keys().next()
    {
        let inner = text
            .trim_start()
            .strip_prefix('{')
            .expect("an object's text");
        let repeated = format!("{{{}:null,{inner}", Value::from(first.as_str()));
        assert!(
            matches!(
                parse_strict(&repeated, 1 << 21),
                Err(JsonError::DuplicateKey { .. })
            ),
            "a duplicate key is always refused"
        );
    }
}

/// Schemas and the instances they judge. Layout: schema text, a NUL byte, instance text.
/// Compiling refuses or succeeds and validating judges, never a panic; what a schema refuses
/// it names at least one violation for.
pub fn schema(data: &[u8]) {
    let Some(at) = data.iter().position(|b| *b == 0) else {
        return;
    };
    let (Ok(schema), Ok(instance)) = (
        std::str::from_utf8(&data[..at]),
        std::str::from_utf8(&data[at + 1..]),
    ) else {
        return;
    };
    let Ok(schema) = Schema::parse(Path::new("input.schema.json"), schema.as_bytes().to_vec())
    else {
        return;
    };
    if let Ok(instance) = Document::parse(instance, 1 << 20)
        && let Err(violations) = schema.validate(&instance)
    {
        assert!(!violations.to_string().is_empty());
    }
}

/// Tenant, installation and user ids from paths, bodies and keys: parsed or refused; what
/// parses is what was given.
pub fn ids(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = text.parse::<TenantId>() {
        assert_eq!(id.as_str(), text);
    }
    if let Ok(id) = text.parse::<InstallationId>() {
        assert_eq!(id.as_str(), text);
    }
    let _ = text.parse::<UserId>();
}
