//! What a failed validation reports: each violation by the instance location, the schema
//! location, the keyword and the constraint as the *schema* states it, never an instance value.

use std::error::Error;
use std::fmt;

use jsonschema::ValidationError;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use crate::json::display_pointer;

/// Most violations reported for one instance; the rest are summarised as `truncated`.
const MAX_VIOLATIONS: usize = 16;

/// One way an instance fails its schema, safe to log and to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// RFC 6901 pointer to the failing part of the instance; `""` is the root (shown as `/`).
    /// Its segments are the instance's keys: for the caller only, never for the audit trail.
    pub pointer: String,
    /// RFC 6901 pointer to the failing keyword in the schema, without `$ref` traversals
    /// (JSON Schema's keyword location): made of the schema's own names only.
    pub location: String,
    /// The schema keyword that failed (`type`, `required`, `format`, …).
    pub keyword: String,
    /// The constraint as the schema states it; never a value from the instance.
    pub detail: String,
}

/// Every violation of one instance (at most 16; `truncated` says more were found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations {
    /// In jsonschema's evaluation order.
    pub list: Vec<Violation>,
    /// More violations were found than `list` holds.
    pub truncated: bool,
}
impl Violations {
    /// The first [`MAX_VIOLATIONS`] of `errors`, and whether more followed.
    pub(super) fn of<'a>(mut errors: impl Iterator<Item = ValidationError<'a>>) -> Self {
        let list = errors
            .by_ref()
            .take(MAX_VIOLATIONS)
            .map(|error| violation(&error))
            .collect();
        let truncated = errors.next().is_some();
        Self { list, truncated }
    }
}

fn violation(error: &ValidationError<'_>) -> Violation {
    let kind = error.kind();
    // jsonschema reports e.g. a lone `additionalProperties: false` as a `false` subschema that
    // failed; name the keyword holding it (unless that segment is a property or `$defs` name).
    let mut segments = error.schema_path().as_str().rsplit('/');
    let holder = segments.next().unwrap_or_default();
    let holder = match segments.next() {
        Some("properties" | "patternProperties" | "$defs" | "definitions") => "",
        _ => holder,
    };
    let (keyword, detail) = match (kind, holder) {
        (ValidationErrorKind::FalseSchema, "additionalProperties") => {
            (holder, "no additional properties allowed".to_owned())
        }
        (ValidationErrorKind::FalseSchema, "unevaluatedProperties") => {
            (holder, "no unevaluated properties allowed".to_owned())
        }
        (ValidationErrorKind::FalseSchema, "items" | "additionalItems" | "unevaluatedItems") => {
            (holder, "no additional items allowed".to_owned())
        }
        (ValidationErrorKind::FalseSchema, "propertyNames") => {
            (holder, "no properties allowed".to_owned())
        }
        _ => (kind.keyword(), detail(kind)),
    };
    Violation {
        pointer: error.instance_path().as_str().to_owned(),
        location: error.schema_path().as_str().to_owned(),
        keyword: keyword.to_owned(),
        detail,
    }
}

/// Describes a failed constraint from the schema side only. Anything not special-cased gets a
/// generic line: jsonschema's own messages quote the instance and must not be used.
fn detail(kind: &ValidationErrorKind) -> String {
    use ValidationErrorKind as K;
    match kind {
        K::AdditionalItems { limit } => format!("at most {limit} items allowed"),
        K::AdditionalProperties { .. } => "no additional properties allowed".to_owned(),
        K::UnevaluatedProperties { .. } => "no unevaluated properties allowed".to_owned(),
        K::UnevaluatedItems { .. } => "no unevaluated items allowed".to_owned(),
        K::AnyOf { .. } => "must match at least one schema in `anyOf`".to_owned(),
        K::OneOfNotValid { .. } => "must match exactly one schema in `oneOf`, matches none".into(),
        K::OneOfMultipleValid { .. } => "must match exactly one schema in `oneOf`".to_owned(),
        K::Not { .. } => "must not match the `not` schema".to_owned(),
        K::Constant { expected_value } => format!("must equal {}", brief(expected_value)),
        K::Enum { options } => format!("must be one of {}", brief(options)),
        K::Contains => "must contain an item matching `contains`".to_owned(),
        K::ContentEncoding { content_encoding } => format!("must be {content_encoding:?} encoded"),
        K::ContentMediaType { content_media_type } => {
            format!("must be of media type {content_media_type:?}")
        }
        K::FalseSchema => "no value allowed here".to_owned(),
        K::Format { format } => format!("must match format {format:?}"),
        K::Pattern { pattern } => format!("must match pattern {pattern:?}"),
        K::MaxItems { limit } => format!("must have at most {limit} items"),
        K::MinItems { limit } => format!("must have at least {limit} items"),
        K::MaxLength { limit } => format!("length must be at most {limit}"),
        K::MinLength { limit } => format!("length must be at least {limit}"),
        K::MaxProperties { limit } => format!("must have at most {limit} properties"),
        K::MinProperties { limit } => format!("must have at least {limit} properties"),
        K::Maximum { limit } => format!("must be at most {limit}"),
        K::Minimum { limit } => format!("must be at least {limit}"),
        K::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        K::ExclusiveMinimum { limit } => format!("must be greater than {limit}"),
        K::MultipleOf { multiple_of } => format!("must be a multiple of {multiple_of}"),
        K::PropertyNames { error } => format!("property names: {}", detail(error.kind())),
        K::Required { property } => match property.as_str() {
            Some(name) => format!("missing required property {name:?}"),
            None => format!("missing required property {}", brief(property)),
        },
        K::Type { kind } => match kind {
            TypeKind::Single(one) => format!("expected type {one}"),
            TypeKind::Multiple(set) => {
                let names: Vec<String> = set.iter().map(|t| t.to_string()).collect();
                format!("expected one of types {}", names.join(", "))
            }
        },
        K::UniqueItems => "items must be unique".to_owned(),
        other => format!("fails `{}`", other.keyword()),
    }
}

/// A schema value for a message, cut short so a large `enum` cannot flood the log.
fn brief(value: &Value) -> String {
    const MAX_CHARS: usize = 80;
    let text = value.to_string();
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

impl fmt::Display for Violations {
    /// One line per violation: `/contact/email: must match format "email" (format)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, v) in self.list.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(
                f,
                "{}: {} ({})",
                display_pointer(&v.pointer),
                v.detail,
                v.keyword
            )?;
        }
        if self.truncated {
            write!(
                f,
                "\n… more violations not shown (first {MAX_VIOLATIONS} listed)"
            )?;
        }
        Ok(())
    }
}

impl Error for Violations {}
