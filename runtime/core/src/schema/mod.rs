//! Compiled JSON Schemas for every input, output and config crossing the Airlock boundary.
//!
//! jsonschema's defaults suit trusted schemas, not ours (security catalogue, section IV), so
//! [`Schema::compile`] always builds with:
//! - a retriever that refuses every URI: a `$ref` (or `$schema`) outside the document fails to
//!   compile with [`SchemaError::ExternalRef`]; nothing is ever read from disk or the network;
//! - the linear-time `regex` engine for `pattern`/`patternProperties` (no ReDoS); patterns it
//!   cannot compile (look-around, backreferences) fail to compile instead of being skipped;
//! - `format` as an assertion in every draft, and unknown formats refused, so `format: email`
//!   (or a typo of it) never silently means nothing;
//! - the draft named by `$schema`, or 2020-12 without one; the schema must pass its meta-schema.
//!
//! Violations never carry instance values, which may be customer data: each names the instance
//! location, the keyword and the constraint as the *schema* states it. The instance location
//! holds object keys, which may be customer data too: it is for the caller's own error; the
//! audit trail records the schema location instead (docs/audit.md).
//!
//! Instances are validated as [`Document`]s, read in place; no `serde_json::Value` is built.
//!
//! # Layout
//! - this module: [`Schema`], loading and compiling with those options.
//! - [`instance`]: how the validator reads a [`Document`].
//! - [`violation`]: [`Violations`], what a failed validation reports, from the schema side.

mod instance;
mod violation;

use std::error::Error;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use jsonschema::error::ValidationErrorKind;
use jsonschema::{PatternOptions, ReferencingError, Retrieve, Uri, ValidationError, Validator};
use serde_json::Value;

pub use violation::{Violation, Violations};

use crate::json::{self, Document, JsonError, display_pointer};
use instance::Flat;

/// Largest schema file accepted: schemas are small, and reading stops here.
const MAX_SCHEMA_BYTES: usize = 1 << 20;

/// A schema compiled with Airlock's safe options, ready to validate many instances.
#[derive(Clone)]
pub struct Schema {
    validator: Validator<Flat>,
    origin: String,
}

/// Why a schema could not be loaded or compiled. Every message names the file (or origin).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file could not be read (or is not UTF-8).
    #[error("cannot read schema file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is too large, or not strict JSON (see [`json::parse_strict`]).
    #[error("schema file {} is not strict JSON: {source}", path.display())]
    Json { path: PathBuf, source: JsonError },
    /// Not a valid schema for its draft, or a `pattern` the linear-time engine cannot compile.
    #[error("schema {origin} is invalid: {reason}")]
    Invalid { origin: String, reason: String },
    /// The schema points outside itself; Airlock schemas must be self-contained.
    #[error("schema {origin} refers to {uri:?} outside itself; external schemas are never fetched")]
    ExternalRef { origin: String, uri: String },
}

impl Schema {
    /// Reads, strictly parses (json::parse_strict, cap 1 MiB) and compiles a schema file.
    ///
    /// Schema files come with integrations, so they get the same duplicate-key and size checks
    /// as any other untrusted JSON.
    pub fn load(path: &Path) -> Result<Schema, SchemaError> {
        let io = |source| SchemaError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size > MAX_SCHEMA_BYTES as u64 {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            let limit = MAX_SCHEMA_BYTES;
            return Err(SchemaError::Json {
                path: path.to_path_buf(),
                source: JsonError::TooLarge { size, limit },
            });
        }
        // Read at most one byte past the cap, in case the file grew or its size was not known.
        let mut bytes = Vec::new();
        let mut capped = file.take(MAX_SCHEMA_BYTES as u64 + 1);
        capped.read_to_end(&mut bytes).map_err(io)?;
        Self::parse(path, bytes)
    }

    /// Strictly parses and compiles schema file bytes already in memory (from a bundle);
    /// `path` names them in errors.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Schema, SchemaError> {
        Self::compile(&path.display().to_string(), &Self::read(path, bytes)?)
    }

    /// Strictly parses schema file bytes without compiling them, for a schema compiled later
    /// ([`Schema::compile`]); `path` names them in errors.
    pub fn read(path: &Path, bytes: Vec<u8>) -> Result<Value, SchemaError> {
        let text = String::from_utf8(bytes).map_err(|error| SchemaError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
        })?;
        json::parse_strict(&text, MAX_SCHEMA_BYTES).map_err(|source| SchemaError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Compiles an already parsed schema; `origin` names it in errors.
    pub fn compile(origin: &str, schema: &Value) -> Result<Schema, SchemaError> {
        compile_with(origin, schema, RefuseRetrieval)
    }

    /// Where this schema came from (the file path for [`Schema::load`]).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Validates an instance; on failure returns every violation (cap at 16, note if more).
    pub fn validate(&self, instance: &Document<'_>) -> Result<(), Violations> {
        // jsonschema collects all errors eagerly; the boolean check is much cheaper when valid.
        if self.validator.is_valid(instance.root()) {
            return Ok(());
        }
        Err(Violations::of(self.validator.iter_errors(instance.root())))
    }
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Refuses every URI, so compiling a schema never touches the disk or the network.
struct RefuseRetrieval;

impl Retrieve for RefuseRetrieval {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn Error + Send + Sync>> {
        Err(format!("retrieving {uri} refused: schemas must be self-contained").into())
    }
}

fn compile_with(
    origin: &str,
    schema: &Value,
    retriever: impl Retrieve + 'static,
) -> Result<Schema, SchemaError> {
    let validator = jsonschema::options_for::<Flat>()
        .with_retriever(retriever)
        .with_pattern_options(PatternOptions::regex())
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .build(schema)
        .map_err(|error| build_error(origin, &error))?;
    Ok(Schema {
        validator,
        origin: origin.to_owned(),
    })
}

/// The format an "Unknown format: 'NAME'. …" compile error names.
fn unknown_format(message: &str) -> Option<&str> {
    message
        .strip_prefix("Unknown format: '")
        .and_then(|rest| rest.split_once('\''))
        .map(|(format, _)| format)
}

/// Explains a build failure. Quoting jsonschema here is fine: its "instance" is the schema.
fn build_error(origin: &str, error: &ValidationError<'_>) -> SchemaError {
    let origin = origin.to_owned();
    let at = display_pointer(error.instance_path().as_str());
    let reason = match error.kind() {
        ValidationErrorKind::Referencing(ReferencingError::Unretrievable { uri, .. })
        | ValidationErrorKind::Referencing(ReferencingError::UnknownSpecification {
            specification: uri,
        }) => {
            let uri = uri.clone();
            return SchemaError::ExternalRef { origin, uri };
        }
        ValidationErrorKind::Format { format } if format == "regex" => format!(
            "at {at}: {} is not a pattern the linear-time regex engine accepts \
             (no look-around or backreferences)",
            error.instance()
        ),
        // jsonschema's own wording advises a setting Airlock does not have.
        ValidationErrorKind::Custom { message, .. }
            if let Some(format) = unknown_format(message) =>
        {
            format!(
                "at {}: {format:?} is not a format Airlock knows (date, date-time, time, \
                 duration, email, hostname, ipv4, ipv6, uri, uri-reference, uuid, regex, …); \
                 remove it, or check the value with `pattern`",
                display_pointer(error.schema_path().as_str())
            )
        }
        _ => format!("at {at}: {error}"),
    };
    SchemaError::Invalid { origin, reason }
}

#[cfg(test)]
mod tests;
