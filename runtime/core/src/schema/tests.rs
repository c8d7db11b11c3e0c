use super::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn j(text: &str) -> Value {
    serde_json::from_str(text).expect("test JSON")
}

/// An instance as the validator reads it.
fn doc(text: &str) -> Document<'_> {
    Document::parse(text, usize::MAX).expect("test JSON")
}

fn compile(schema: &str) -> Result<Schema, SchemaError> {
    Schema::compile("conn/in.json", &j(schema))
}

fn violations(schema: &str, instance: &str) -> Violations {
    let schema = compile(schema).expect("schema compiles");
    schema
        .validate(&doc(instance))
        .expect_err("instance is invalid")
}

/// The cells of a ` | `-separated table, one row per non-blank line.
fn rows<const N: usize>(table: &str) -> impl Iterator<Item = [&str; N]> {
    let lines = table.lines().map(str::trim).filter(|line| !line.is_empty());
    lines.map(|row| {
        let cells: Vec<&str> = row.split(" | ").map(str::trim).collect();
        cells
            .try_into()
            .unwrap_or_else(|_| panic!("row needs {N} cells: {row}"))
    })
}

#[test]
fn violations_name_pointer_location_keyword_and_schema_side_detail() {
    let table = r#"
        {"type": "integer"} | "abc" |  | /type | type | expected type integer
        {"type": ["integer", "null"]} | "x" |  | /type | type | expected one of types null, integer
        {"required": ["email"]} | {} |  | /required | required | missing required property "email"
        {"properties": {"c": {"properties": {"e": {"format": "email"}}}}} | {"c": {"e": "x"}} | /c/e | /properties/c/properties/e/format | format | must match format "email"
        {"format": "date-time"} | "today" |  | /format | format | must match format "date-time"
        {"minLength": 3} | "ab" |  | /minLength | minLength | length must be at least 3
        {"items": {"maximum": 5}} | [1, 9] | /1 | /items/maximum | maximum | must be at most 5
        {"additionalProperties": false} | {"a": 1} |  | /additionalProperties | additionalProperties | no additional properties allowed
        {"properties": {"a": {}}, "additionalProperties": false} | {"b": 1} |  | /additionalProperties | additionalProperties | no additional properties allowed
        {"prefixItems": [{}], "items": false} | [1, 2] | /1 | /items | items | no additional items allowed
        {"pattern": "^[a-z]+$"} | "A1" |  | /pattern | pattern | must match pattern "^[a-z]+$"
        {"enum": ["a", 1]} | "b" |  | /enum | enum | must be one of ["a",1]
        {"const": "on"} | "off" |  | /const | const | must equal "on"
        {"properties": {"a/b": false}} | {"a/b": 1} | /a~1b | /properties/a~1b | falseSchema | no value allowed here
        {"properties": {"items": false}} | {"items": 1} | /items | /properties/items | falseSchema | no value allowed here
        {"propertyNames": {"maxLength": 2}} | {"abc": 1} |  | /propertyNames/maxLength | propertyNames | property names: length must be at most 2
    "#;
    for [schema, instance, pointer, location, keyword, detail] in rows(table) {
        let expected = Violation {
            pointer: pointer.into(),
            location: location.into(),
            keyword: keyword.into(),
            detail: detail.into(),
        };
        assert_eq!(violations(schema, instance).list, [expected], "{schema}");
    }
}

#[test]
fn violations_never_contain_instance_values() {
    let schema = r#"{"properties": {"n": {"type": "integer"}, "short": {"maxLength": 3},
        "mail": {"format": "email"}, "id": {"pattern": "^[0-9]+$"}, "mode": {"enum": ["a"]},
        "on": {"const": true}, "any": {"anyOf": [{"type": "null"}, {"minLength": 99}]},
        "uniq": {"uniqueItems": true}, "not": {"not": {"type": "string"}},
        "keys": {"propertyNames": {"maxLength": 1}}}, "additionalProperties": {"type": "null"}}"#;
    let fields = [
        "n", "short", "mail", "id", "mode", "on", "any", "not", "extra",
    ];
    let mut instance = serde_json::Map::new();
    for field in fields {
        instance.insert(field.into(), "SECRET-CANARY-1234".into());
    }
    instance.insert(
        "uniq".into(),
        j(r#"["SECRET-CANARY-1234", "SECRET-CANARY-1234"]"#),
    );
    instance.insert("keys".into(), j(r#"{"xy": "SECRET-CANARY-1234"}"#));
    let instance = Value::Object(instance).to_string();
    let found = compile(schema)
        .expect("compiles")
        .validate(&doc(&instance))
        .expect_err("invalid");
    assert_eq!(found.list.len(), 11, "{found}");
    for shown in [found.to_string(), format!("{found:?}")] {
        assert!(
            !shown.contains("SECRET-CANARY-1234"),
            "instance value leaked: {shown}"
        );
    }
}

#[test]
fn schema_locations_never_hold_instance_keys() {
    // Every keyword that looks at an object's keys, and keys at every depth; the instance
    // pointer names the key (the caller's own error says where), the location never does.
    let schema = r##"{
        "$defs": {"closed": {"type": "object", "additionalProperties": false}},
        "properties": {
            "closed": {"additionalProperties": false},
            "typed": {"additionalProperties": {"type": "integer"}},
            "patterned": {"patternProperties": {"^k": {"type": "integer"}}},
            "named": {"propertyNames": {"maxLength": 4}},
            "unevaluated": {"properties": {"a": {}}, "unevaluatedProperties": false},
            "dependent": {"dependentSchemas": {"present": {"additionalProperties": false}}},
            "counted": {"maxProperties": 0},
            "listed": {"items": {"additionalProperties": false}},
            "referenced": {"$ref": "#/$defs/closed"},
            "nested": {"properties": {"deeper": {"additionalProperties": {"const": 1}}}}
        },
        "additionalProperties": {"type": "object"}
    }"##;
    let canary = "KEYCANARY-jane.doe@acme.com";
    let instance = j(&r#"{
        "closed": {"KEY": 1}, "typed": {"KEY": "x"}, "patterned": {"kKEY": "x"},
        "named": {"KEY": 1}, "unevaluated": {"KEY": 1}, "dependent": {"present": 1, "KEY": 1},
        "counted": {"KEY": 1}, "listed": [{"KEY": 1}], "referenced": {"KEY": 1},
        "nested": {"deeper": {"KEY": 2}}, "KEY": 1
    }"#
    .replace("KEY", canary));
    let found = compile(schema)
        .expect("compiles")
        .validate(&doc(&instance.to_string()))
        .expect_err("invalid");
    assert!(found.list.len() >= 10, "{found}");
    assert!(
        found.list.iter().any(|v| v.pointer.contains(canary)),
        "the caller's pointer names the key: {found}"
    );
    for v in &found.list {
        assert!(!v.location.contains(canary), "{v:?}");
        assert!(!v.detail.contains(canary), "{v:?}");
    }
}

#[test]
fn display_is_one_line_per_violation() {
    let schema = r#"{"properties": {"contact": {"properties": {"email": {"format": "email"}}}},
        "required": ["id"]}"#;
    let shown = violations(schema, r#"{"contact": {"email": "x"}}"#).to_string();
    let mut lines: Vec<&str> = shown.lines().collect();
    lines.sort_unstable();
    let expected = [
        r#"/: missing required property "id" (required)"#,
        r#"/contact/email: must match format "email" (format)"#,
    ];
    assert_eq!(lines, expected);
}

#[test]
fn violations_are_capped_and_marked_truncated() {
    let cases = [
        (3, 3, false),
        (16, 16, false),
        (17, 16, true),
        (500, 16, true),
    ];
    for (items, listed, truncated) in cases {
        let instance = format!("{:?}", vec![0; items]);
        let found = violations(r#"{"items": {"type": "string"}}"#, &instance);
        let shown = found.to_string();
        assert_eq!(found.list.len(), listed, "{items}");
        assert_eq!(
            (found.truncated, shown.contains("more violations")),
            (truncated, truncated)
        );
    }
}

#[test]
fn remote_ref_is_refused_at_compile() {
    let table = r#"
        {"$ref": "https://evil.example/s.json"} | https://evil.example/s.json
        {"$ref": "file:///etc/passwd"} | file:///etc/passwd
        {"properties": {"a": {"items": {"$ref": "http://10.0.0.1/x#/y"}}}} | http://10.0.0.1/x
        {"$id": "https://ex.com/root.json", "$ref": "b.json"} | https://ex.com/b.json
        {"$schema": "https://evil.example/meta", "type": "string"} | https://evil.example/meta
    "#;
    for [schema, uri] in rows(table) {
        let error = compile(schema).expect_err(schema);
        let message = error.to_string();
        assert!(matches!(&error, SchemaError::ExternalRef { uri: u, .. } if u == uri));
        assert!(
            message.contains("conn/in.json") && message.contains(uri),
            "{message}"
        );
    }
}

/// Records what it is asked for, then refuses like the real retriever.
struct Recording(Arc<Mutex<Vec<String>>>);

impl Retrieve for Recording {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn Error + Send + Sync>> {
        self.0.lock().expect("lock").push(uri.to_string());
        RefuseRetrieval.retrieve(uri)
    }
}

#[test]
fn retriever_refuses_and_nothing_is_fetched() {
    // A listening socket that would see any attempt to fetch the reference.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let uri = format!("http://{}/s.json", listener.local_addr().expect("addr"));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let schema = serde_json::json!({"$ref": uri});
    let result = compile_with("t", &schema, Recording(asked.clone()));
    assert!(matches!(result, Err(SchemaError::ExternalRef { uri: ref u, .. }) if *u == uri));
    assert_eq!(*asked.lock().expect("lock"), [uri.as_str()]);
    let accepted = listener.accept().map(|_| ());
    assert!(matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
    let parsed = jsonschema::uri::from_str(&uri).expect("uri");
    assert!(RefuseRetrieval.retrieve(&parsed).is_err());
}

#[test]
fn internal_refs_resolve() {
    let schema = r##"{"$ref": "#/$defs/node", "$defs": {"id": {"minLength": 1}, "node":
        {"properties": {"id": {"$ref": "#/$defs/id"}, "next": {"$ref": "#/$defs/node"}}}}}"##;
    let schema = compile(schema).expect("compiles");
    assert!(
        schema
            .validate(&doc(r#"{"id": "a", "next": {"id": "b"}}"#))
            .is_ok()
    );
    let found = schema
        .validate(&doc(r#"{"next": {"id": ""}}"#))
        .expect_err("invalid");
    assert_eq!(found.list[0].pointer, "/next/id");
    assert_eq!(found.list[0].location, "/$defs/id/minLength");
    let missing = compile(r##"{"$ref": "#/$defs/nope"}"##);
    assert!(
        matches!(missing, Err(SchemaError::Invalid { .. })),
        "{missing:?}"
    );
}

#[test]
fn redos_pattern_is_linear_time() {
    let schema = compile(r#"{"pattern": "^(a+)+$"}"#).expect("compiles");
    let started = Instant::now();
    let found = schema.validate(&doc(r#""aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!""#));
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert_eq!(found.expect_err("no match").list[0].keyword, "pattern");
    let long = Value::String("a".repeat(100_000)).to_string();
    assert!(schema.validate(&doc(&long)).is_ok());
}

#[test]
fn pattern_the_linear_engine_cannot_compile_is_rejected() {
    let table = r#"
        {"pattern": "(?=x)"} | /pattern
        {"pattern": "(a)\\1"} | /pattern
        {"properties": {"p": {"pattern": "(?<!x)y"}}} | /properties/p/pattern
        {"patternProperties": {"^(?!tmp)": {}}} | /patternProperties/^(?!tmp)
        {"pattern": "[unclosed"} | /pattern
    "#;
    for [schema, at] in rows(table) {
        let message = compile(schema).expect_err(schema).to_string();
        let prefix = format!("schema conn/in.json is invalid: at {at}: ");
        assert!(message.starts_with(&prefix), "{message}");
        assert!(message.contains("linear-time regex engine"), "{message}");
    }
}

#[test]
fn invalid_schema_is_a_clear_error() {
    let table = r#"
        {"type": 12} | /type
        {"minLength": -1} | /minLength
        {"properties": {"a": {"required": "x"}}} | /properties/a/required
        {"format": "emial"} | /format
    "#;
    for [schema, at] in rows(table) {
        let message = compile(schema).expect_err(schema).to_string();
        let prefix = format!("schema conn/in.json is invalid: at {at}: ");
        assert!(message.starts_with(&prefix), "{message}");
    }
}

#[test]
fn format_is_asserted_in_every_draft() {
    let table = r#"
        {"format": "email"} | "a@example.com" | "an email"
        {"format": "date-time"} | "2024-05-01T10:00:00Z" | "May 1st"
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "format": "email"} | "a@b.c" | "@"
        {"$schema": "https://json-schema.org/draft/2019-09/schema", "format": "email"} | "a@b.c" | "@"
        {"$schema": "http://json-schema.org/draft-07/schema#", "format": "date-time"} | "2024-05-01T10:00:00Z" | "1"
        {"$schema": "http://json-schema.org/draft-04/schema#", "format": "email"} | "a@b.c" | "@"
    "#;
    for [schema, good, bad] in rows(table) {
        let schema_ = compile(schema).expect(schema);
        assert!(schema_.validate(&doc(good)).is_ok(), "{schema} {good}");
        assert_eq!(
            violations(schema, bad).list[0].keyword,
            "format",
            "{schema} {bad}"
        );
    }
}

#[test]
fn draft_follows_dollar_schema_else_2020_12() {
    // Draft 4's boolean `exclusiveMaximum` is a meta-schema error in 2020-12.
    let draft4 = r#"{"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 5,
        "exclusiveMaximum": true}"#;
    assert_eq!(
        violations(draft4, "5").list[0].detail,
        "must be less than 5"
    );
    let unmarked = compile(r#"{"maximum": 5, "exclusiveMaximum": true}"#);
    assert!(
        matches!(unmarked, Err(SchemaError::Invalid { .. })),
        "{unmarked:?}"
    );
    // `prefixItems` exists from 2020-12 only; draft 7 ignores it.
    assert_eq!(
        violations(r#"{"prefixItems": [false]}"#, "[1]").list.len(),
        1
    );
    let draft7 =
        r#"{"$schema": "http://json-schema.org/draft-07/schema#", "prefixItems": [false]}"#;
    assert!(
        compile(draft7)
            .expect("compiles")
            .validate(&doc("[1]"))
            .is_ok()
    );
}

#[test]
fn load_reads_strictly_parses_and_names_the_file() {
    let dir = std::env::temp_dir().join(format!("airlock-schema-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let big = format!(r#"{{"description": "{}"}}"#, "x".repeat(MAX_SCHEMA_BYTES));
    let cases = [
        ("good.json", Some(r#"{"type": "string"}"#), "Ok"),
        ("missing.json", None, "Io"),
        (
            "dup.json",
            Some(r#"{"type": "string", "type": "integer"}"#),
            "DuplicateKey",
        ),
        ("big.json", Some(&big), "TooLarge"),
        ("bad.json", Some(r#"{"type": 12}"#), "Invalid"),
    ];
    for (name, contents, expected) in cases {
        let path = dir.join(name);
        if let Some(text) = contents {
            std::fs::write(&path, text).expect("write");
        }
        let shown = path.display().to_string();
        match Schema::load(&path) {
            Ok(schema) => assert_eq!((expected, schema.origin()), ("Ok", shown.as_str())),
            Err(error) => {
                assert!(format!("{error:?}").contains(expected), "{name}: {error:?}");
                assert!(error.to_string().contains(&shown), "{error}");
            }
        }
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn schema_is_shareable_across_threads() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<Schema>();
    shareable::<Violations>();
}

#[test]
fn an_unknown_format_is_named_without_advice_airlock_cannot_follow() {
    let schema = serde_json::json!({"properties": {"id": {"format": "hubspot-id"}}});
    let Err(error) = Schema::compile("schemas/in.json", &schema) else {
        panic!("an unknown format compiled");
    };
    let error = error.to_string();
    assert!(
        error.contains("\"hubspot-id\" is not a format Airlock knows")
            && error.contains("/properties/id/format")
            && !error.contains("configuration"),
        "{error}"
    );
}
