//! Strict JSON text parsing for everything that crosses the Airlock boundary.
//!
//! `serde_json::from_str` is lenient in one way that matters here: an object with a repeated key
//! silently keeps the last value. Two parsers that disagree on which duplicate wins let an
//! attacker show one value to the validator and another to the consumer, so every untrusted JSON
//! text goes through [`Document::parse`] (or [`parse_strict`], which builds a `Value` from it):
//! it rejects duplicates, caps the size before any parsing work, rejects trailing characters and
//! relies on serde_json's nesting limit (127 nested containers) so deep input fails cleanly
//! instead of exhausting the stack.
//!
//! # Layout
//! - this module: [`JsonError`], [`parse_strict`].
//! - [`document`]: [`Document`], a parsed text kept flat, which the schema validator reads in place.
//!
//! Errors never quote the input text: sizes, positions, serde_json's fixed syntax messages and,
//! for duplicates, the object's JSON pointer and the key (keys are structure, not data).

pub mod document;

use serde_json::Value;

pub use document::{Cursor, Document, Item};

/// Why untrusted JSON text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The text is larger than the caller's limit; checked before parsing starts.
    #[error("JSON text is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The text is not one well-formed JSON value (includes trailing characters and nesting
    /// deeper than 127 containers). `message` is serde_json's fixed description, never input text.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// An object repeats a key. `pointer` is the RFC 6901 pointer of the object (`""` is the
    /// root, shown as `/`).
    #[error("duplicate key {key:?} in the object at {}", display_pointer(pointer))]
    DuplicateKey { pointer: String, key: String },
}

/// Parses JSON text from an untrusted source into a `Value`.
///
/// Use this (or [`Document::parse`], which it builds on) instead of `serde_json::from_str` for
/// any text Airlock did not write itself: it refuses texts over `limit` bytes without looking at
/// them, duplicate object keys (so every later reader sees the same document the validator saw)
/// and trailing characters.
pub fn parse_strict(text: &str, limit: usize) -> Result<Value, JsonError> {
    Document::parse(text, limit).map(|document| document.to_value())
}

/// Shows a JSON pointer in a message: the root (`""`) as `/`, control characters escaped so a
/// key cannot forge extra log lines.
pub(crate) fn display_pointer(pointer: &str) -> String {
    if pointer.is_empty() {
        "/".to_owned()
    } else {
        pointer.escape_debug().to_string()
    }
}

fn syntax_error(error: &serde_json::Error) -> JsonError {
    let (line, column) = (error.line(), error.column());
    let full = error.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    JsonError::Syntax {
        line,
        column,
        message,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    const LIMIT: usize = 1 << 20;

    #[test]
    fn well_formed_documents_parse_like_serde_json() {
        let cases = [
            "null",
            "true",
            "-12",
            "18446744073709551615",
            "1.5e3",
            r#""caf\u00e9 ☕""#,
            "[]",
            "{}",
            r#"{"a": [1, {"b": null}], "c": {"d": "e"}, "a~/b": 1}"#,
            " \n\t{\"k\": [[], [[]]]} \n",
        ];
        for text in cases {
            let expected: Value = serde_json::from_str(text).expect("reference parse");
            assert_eq!(parse_strict(text, LIMIT), Ok(expected), "{text}");
        }
    }

    #[test]
    fn duplicate_key_is_rejected_with_its_pointer() {
        let cases = [
            (r#"{"a": 1, "a": 2}"#, "", "a"),
            (r#"{"x": {"b": 1, "c": 2, "b": 3}}"#, "/x", "b"),
            (r#"{"x": [0, {"k": 1, "k": 1}]}"#, "/x/1", "k"),
            (r#"{"a/b": {"~": {"z": 1, "z": 1}}}"#, "/a~1b/~0", "z"),
            (r#"[{"": 0, "": 0}]"#, "/0", ""),
            // Same key once decoded: escapes must not smuggle a duplicate past the check.
            (r#"{"role": "user", "r\u006fle": "admin"}"#, "", "role"),
        ];
        for (text, pointer, key) in cases {
            let expected = JsonError::DuplicateKey {
                pointer: pointer.to_owned(),
                key: key.to_owned(),
            };
            assert_eq!(parse_strict(text, LIMIT), Err(expected), "{text}");
        }
    }

    /// An object of `n` members `k0`..`k{n-1}`, each holding its index, in the order given.
    fn members(order: impl Iterator<Item = usize>) -> String {
        let members: Vec<String> = order.map(|i| format!("\"k{i}\": {i}")).collect();
        format!("{{{}}}", members.join(", "))
    }

    #[test]
    fn members_are_found_by_name_in_small_and_large_objects() {
        // 16 members are scanned; 17 and more are found through the sorted index.
        for n in [0, 1, 16, 17, 300] {
            let text = members((0..n).rev());
            let document = Document::parse(&text, LIMIT).expect("parses");
            let root = document.root();
            for i in 0..n {
                let found = root.get(&format!("k{i}")).map(|member| member.to_value());
                assert_eq!(found, Some(Value::from(i)), "k{i} of {n}");
            }
            assert!(root.get("k").is_none() && root.get(&format!("k{n}")).is_none());
            let names: Vec<&str> = root.members().map(|(name, _)| name).collect();
            let expected: Vec<String> = (0..n).rev().map(|i| format!("k{i}")).collect();
            assert_eq!(names, expected, "members in document order");
        }
    }

    #[test]
    fn duplicates_in_large_objects_are_found_where_they_are() {
        for n in [16, 17, 40] {
            // The last member repeats the first, spelled with an escape.
            let text =
                members(0..n).replace(&format!("\"k{}\": {}", n - 1, n - 1), "\"\\u006b0\": 1");
            let nested = format!(r#"{{"outer": [{text}]}}"#);
            let expected = JsonError::DuplicateKey {
                pointer: "/outer/0".to_owned(),
                key: "k0".to_owned(),
            };
            assert_eq!(
                Document::parse(&nested, LIMIT),
                Err(expected),
                "{n} members"
            );
        }
    }

    #[test]
    fn containers_hold_their_elements_and_strings_without_escapes_are_borrowed() {
        let text = r#"[[1, [2, 3]], {"a": {"b": []}, "c": "plain"}, "esc\u00e9", 4.5, null, true]"#;
        let document = Document::parse(text, LIMIT).expect("parses");
        let elements: Vec<Cursor<'_>> = document.root().elements().collect();
        assert_eq!(elements.len(), 6);
        assert_eq!(elements[0].elements().count(), 2);
        assert_eq!(elements[1].members().count(), 2);
        let plain = elements[1].get("c").expect("c");
        assert!(matches!(plain.item(), Item::String(Cow::Borrowed("plain"))));
        assert!(matches!(elements[2].item(), Item::String(Cow::Owned(s)) if s == "esc\u{e9}"));
        let reference: Value = serde_json::from_str(text).expect("reference parse");
        for (element, expected) in elements.iter().zip(reference.as_array().expect("array")) {
            assert_eq!(&element.to_value(), expected);
        }
        assert!(
            document.root().get("a").is_none(),
            "an array has no members"
        );
    }

    #[test]
    fn duplicate_key_message_names_object_and_key_but_no_values() {
        let error = parse_strict(r#"{"user": {"pw": "SECRET-1", "pw": "SECRET-2"}}"#, LIMIT)
            .expect_err("duplicate");
        let message = error.to_string();
        assert_eq!(message, r#"duplicate key "pw" in the object at /user"#);
        let root = parse_strict(r#"{"k\n": 1, "k\n": 2}"#, LIMIT).expect_err("duplicate");
        assert_eq!(
            root.to_string(),
            r#"duplicate key "k\n" in the object at /"#
        );
    }

    #[test]
    fn oversized_text_is_refused_before_parsing() {
        // Not even JSON: the size check must fire first.
        let text = "x".repeat(11);
        let cases = [(10, true), (11, false), (12, false)];
        for (limit, refused) in cases {
            let result = parse_strict(&text, limit);
            if refused {
                assert_eq!(result, Err(JsonError::TooLarge { size: 11, limit }));
                let message = result.expect_err("too large").to_string();
                assert!(message.contains("11 bytes") && message.contains("10 bytes"));
            } else {
                assert!(matches!(result, Err(JsonError::Syntax { .. })));
            }
        }
    }

    #[test]
    fn syntax_errors_carry_position_and_no_input() {
        let cases = [
            ("", 1, 0, "EOF while parsing a value"),
            (r#"{"a": 1} {"b": 2}"#, 1, 10, "trailing characters"),
            ("[1, 2,]", 1, 7, "trailing comma"),
            ("{\"a\":\n SECRET-CANARY}", 2, 2, "expected value"),
            (r#"{"a" 1}"#, 1, 6, "expected `:`"),
            ("[1] x", 1, 5, "trailing characters"),
            ("NaN", 1, 1, "expected value"),
        ];
        for (text, line, column, message) in cases {
            let expected = JsonError::Syntax {
                line,
                column,
                message: message.to_owned(),
            };
            let error = parse_strict(text, LIMIT).expect_err(text);
            assert_eq!(error, expected, "{text}");
            assert!(!error.to_string().contains("SECRET"), "{error}");
        }
    }

    #[test]
    fn nesting_beyond_serde_json_limit_is_a_clean_syntax_error() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        // serde_json admits 127 nested containers; the 128th is refused.
        assert!(parse_strict(&nested(127), LIMIT).is_ok());
        let objects = format!("{}1{}", r#"{"a":"#.repeat(127), "}".repeat(127));
        assert!(parse_strict(&objects, LIMIT).is_ok());
        for text in [nested(128), nested(100_000)] {
            match parse_strict(&text, LIMIT) {
                Err(JsonError::Syntax { message, .. }) => {
                    assert_eq!(message, "recursion limit exceeded");
                }
                other => panic!("expected recursion error, got {other:?}"),
            }
        }
    }
}
