//! Strict JSON text parsing for everything that crosses the Airlock boundary.
//!
//! `serde_json::from_str` is lenient in one way that matters here: an object with a repeated key
//! silently keeps the last value. Two parsers that disagree on which duplicate wins let an
//! attacker show one value to the validator and another to the consumer, so every untrusted JSON
//! text goes through [`parse_strict`], which rejects duplicates, caps the size before any parsing
//! work, rejects trailing characters and relies on serde_json's nesting limit (127 nested
//! containers) so deep input fails cleanly instead of exhausting the stack.
//!
//! Errors never quote the input text: sizes, positions, serde_json's fixed syntax messages and,
//! for duplicates, the object's JSON pointer and the key (keys are structure, not data).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};

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

/// Parses JSON text from an untrusted source.
///
/// Use this instead of `serde_json::from_str` for any text Airlock did not write itself: it
/// refuses texts over `limit` bytes without looking at them, refuses duplicate object keys (so
/// every later reader sees the same document the validator saw) and trailing characters.
pub fn parse_strict(text: &str, limit: usize) -> Result<Value, JsonError> {
    if text.len() > limit {
        return Err(JsonError::TooLarge {
            size: text.len(),
            limit,
        });
    }
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = StrictValue {
        path: &Path::Root,
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|error| match duplicate.into_inner() {
        Some(found) => found,
        None => syntax_error(&error),
    })
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

/// Where a value sits in the document, as a chain of borrowed segments: nothing is allocated
/// unless a duplicate key needs its pointer rendered.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(parent, key) => {
                write!(f, "{parent}/{}", key.replace('~', "~0").replace('/', "~1"))
            }
            Path::Index(parent, index) => write!(f, "{parent}/{index}"),
        }
    }
}

/// Deserializes one `Value`, recording the first duplicate key in `duplicate`.
#[derive(Clone, Copy)]
struct StrictValue<'a> {
    path: &'a Path<'a>,
    duplicate: &'a RefCell<Option<JsonError>>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json never produces NaN or infinities from text, so this is never `Null`.
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = Path::Index(self.path, items.len());
            let seed = StrictValue {
                path: &path,
                duplicate: self.duplicate,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            // One lookup per key: the vacant entry is where the value goes.
            let slot = match map.entry(key) {
                Entry::Vacant(slot) => slot,
                Entry::Occupied(taken) => {
                    *self.duplicate.borrow_mut() = Some(JsonError::DuplicateKey {
                        pointer: self.path.to_string(),
                        key: taken.key().clone(),
                    });
                    return Err(de::Error::custom("duplicate key"));
                }
            };
            let path = Path::Key(self.path, slot.key());
            let value = access.next_value_seed(StrictValue {
                path: &path,
                duplicate: self.duplicate,
            })?;
            slot.insert(value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
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
