//! Whole manifests through [`LoadedManifest::parse`]: the happy path, serialization, and the
//! table of invalid manifests with the position and key each error must report.

mod error_cases;
mod load;

use std::time::Duration;

use super::*;
use error_cases::error_cases;

const PATH: &str = "integrations/acme/airlock.toml";

/// The error tests rely on this fixture's line numbers.
const VALID: &str = r#"[integration]
id = "acme/contact-mapper"
version = "0.1.0"
description = "Maps CRM contacts to the Acme schema."
component = "../target/wasm32-wasip2/release/contact_mapper.wasm"

[integration.build]
command = "cargo build --release --target wasm32-wasip2"

[publisher]
name = "Acme Integrations"
support = "mailto:support@acme.example"
privacy-policy = "https://acme.example/privacy"

[limits]
memory = "64 MiB"
timeout = "10s"
output = "1 MiB"

[config]
schema = "schemas/config.json"

[actions.map-contact]
description = "Map one contact."
input = "schemas/map-contact.in.json"
output = "schemas/map-contact.out.json"
"#;

fn parse(text: &str) -> Result<LoadedManifest, ManifestError> {
    LoadedManifest::parse(Path::new(PATH), text)
}

/// `VALID` with the first occurrence of `from` replaced by `to` (which must exist).
fn valid_with(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "fixture has no {from:?}");
    VALID.replacen(from, to, 1)
}

fn parse_err(text: &str) -> (usize, usize, String) {
    match parse(text) {
        Err(ManifestError::Parse {
            path,
            line,
            column,
            message,
        }) => {
            assert_eq!(path, Path::new(PATH));
            (line, column, message)
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn an_action_declares_how_it_is_queued_retried_scheduled_and_delivered() {
    let plain = parse(VALID).expect("valid manifest");
    let action = plain.manifest.action("map-contact").expect("declared");
    assert_eq!(action.attempts(10), DEFAULT_ATTEMPTS);
    assert!(action.retryable.is_empty() && !action.schedulable && !action.answers_webhooks());
    assert!(plain.manifest.action("map").is_none());

    let text = format!(
        "{VALID}max-attempts = 20\nretryable = [\"rate-limited\", \"upstream\"]\n\
         schedulable = true\n[actions.map-contact.webhook]\nmode = \"sync\"\n"
    );
    let loaded = parse(&text).expect("valid manifest");
    let action = loaded.manifest.action("map-contact").expect("declared");
    assert_eq!(action.attempts(100), 20);
    assert_eq!(action.attempts(5), 5, "the operator's ceiling bounds it");
    assert_eq!(action.retryable[1].as_str(), "upstream");
    assert!(action.schedulable && action.answers_webhooks());

    for (bad, says) in [
        ("max-attempts = 0", "must be 1 to 100"),
        ("max-attempts = 101", "must be 1 to 100"),
        ("retryable = [\"Rate Limited\"]", "invalid error code"),
        (
            "[actions.map-contact.webhook]\nmode = \"later\"",
            "unknown variant `later`",
        ),
    ] {
        let (_, _, message) = parse_err(&format!("{VALID}{bad}\n"));
        assert!(message.contains(says), "{bad}: {message}");
    }
}

#[test]
fn valid_manifest_parses_into_typed_fields() {
    let loaded = parse(VALID).expect("valid manifest");
    let m = &loaded.manifest;
    assert_eq!(m.integration.id.publisher(), "acme");
    assert_eq!(m.integration.id.name(), "contact-mapper");
    assert_eq!(m.integration.version, semver::Version::new(0, 1, 0));
    assert_eq!(
        m.integration.build.as_ref().map(|b| b.command.as_str()),
        Some("cargo build --release --target wasm32-wasip2")
    );
    assert_eq!(
        m.publisher.support,
        SupportContact::Email("support@acme.example".into())
    );
    assert_eq!(
        m.publisher.privacy_policy.as_str(),
        "https://acme.example/privacy"
    );
    assert_eq!(m.limits.memory, Some(ByteSize(64 * 1024 * 1024)));
    assert_eq!(
        m.limits.timeout,
        Some(HumanDuration(Duration::from_secs(10)))
    );
    assert_eq!(m.limits.output, Some(ByteSize(1024 * 1024)));
    let names: Vec<&str> = m.actions.keys().map(ActionName::as_str).collect();
    assert_eq!(names, ["map-contact"]);
    assert_eq!(loaded.dir, Path::new("integrations/acme"));
    assert_eq!(
        loaded.resolve(&m.integration.component),
        Path::new("integrations/acme/../target/wasm32-wasip2/release/contact_mapper.wasm")
    );
}

#[test]
fn valid_manifest_round_trips_through_toml() {
    let first = parse(VALID).expect("valid manifest").manifest;
    let text = toml::to_string(&first).expect("serialize");
    assert!(
        text.contains("privacy-policy = \"https://acme.example/privacy\""),
        "{text}"
    );
    assert!(text.contains("memory = \"64 MiB\""), "{text}");
    let second = parse(&text).expect("re-parse serialized manifest").manifest;
    assert_eq!(first, second);
}

#[test]
fn minimal_manifest_defaults_optional_sections() {
    let text = r#"
[integration]
id = "a/b"
version = "1.0.0-beta.1"
description = "x"
component = "b.wasm"
[publisher]
name = "A"
support = "https://a.example/help"
privacy-policy = "https://a.example/privacy"
[actions.run]
description = "Run."
input = "in.json"
output = "out.json"
"#;
    let m = parse(text).expect("minimal manifest").manifest;
    assert_eq!(m.limits, ManifestLimits::default());
    assert!(m.config.is_none() && m.integration.build.is_none());
    assert!(matches!(m.publisher.support, SupportContact::Url(_)));
    let round = parse(&toml::to_string(&m).expect("serialize")).expect("re-parse");
    assert_eq!(round.manifest, m);
}

#[test]
fn manifest_without_parent_directory_resolves_against_dot() {
    let loaded = LoadedManifest::parse(Path::new("airlock.toml"), VALID).expect("valid");
    assert_eq!(loaded.dir, Path::new("."));
}

#[test]
fn invalid_manifests_report_line_column_and_key() {
    for (name, text, line, column, needles) in error_cases() {
        let (got_line, got_column, message) = parse_err(&text);
        assert_eq!(
            (got_line, got_column),
            (line, column),
            "{name}: wrong position for {message:?}"
        );
        for needle in needles {
            assert!(
                message.contains(needle),
                "{name}: message {message:?} lacks {needle:?}"
            );
        }
        assert!(
            !message.contains('\n'),
            "{name}: multi-line message {message:?}"
        );
    }
}

#[test]
fn parse_error_display_leads_with_file_line_column() {
    let err = parse(&valid_with("memory = ", "memroy = ")).expect_err("unknown key");
    assert_eq!(
        err.to_string(),
        "integrations/acme/airlock.toml:16:1: unknown field `memroy`, expected one of `memory`, `timeout`, `output`, `host-memory` (in `limits`)"
    );
}

#[test]
fn error_messages_escape_control_characters() {
    let text = valid_with("[limits]\n", "[limits]\n\"mem\\u001b[31m\" = 1\n");
    let (_, _, message) = parse_err(&text);
    assert!(!message.chars().any(char::is_control), "{message:?}");
    assert!(message.contains("\\u{1b}"), "{message:?}");
}

#[test]
fn component_must_name_a_wasm_file() {
    for (component, ok) in [
        ("x.wasm", true),
        ("../target/release/x.wasm", true),
        (".wasm", false),
        ("dir/.wasm", false),
        ("x.WASM", false),
        ("x.wasm.bak", false),
        ("x", false),
    ] {
        let text = valid_with(
            "../target/wasm32-wasip2/release/contact_mapper.wasm",
            component,
        );
        assert_eq!(parse(&text).is_ok(), ok, "{component:?}");
    }
}

#[test]
fn long_description_is_rejected_at_its_value() {
    let long = "x".repeat(MAX_DESCRIPTION_CHARS + 1);
    let text = valid_with("Maps CRM contacts to the Acme schema.", &long);
    let (line, column, message) = parse_err(&text);
    assert_eq!((line, column), (4, 15));
    assert!(message.contains("at most 500"), "{message}");
    let exact = "é".repeat(MAX_DESCRIPTION_CHARS);
    parse(&valid_with("Maps CRM contacts to the Acme schema.", &exact))
        .expect("500 multi-byte characters are allowed");
}

#[test]
fn manifest_serializes_with_kebab_case_keys() {
    let m = parse(VALID).expect("valid").manifest;
    let value = toml::Value::try_from(&m).expect("to value");
    let publisher = value.get("publisher").expect("publisher");
    assert!(publisher.get("privacy-policy").is_some());
    assert_eq!(
        value
            .get("limits")
            .and_then(|l| l.get("timeout"))
            .and_then(toml::Value::as_str),
        Some("10s")
    );
    assert_eq!(
        value
            .get("integration")
            .and_then(|i| i.get("version"))
            .and_then(toml::Value::as_str),
        Some("0.1.0")
    );
}
