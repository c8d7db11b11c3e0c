//! Guest-side support for `airlock:integration` components.
//!
//! The WIT bindings are generated once, here, so that every connector shares one [`Error`] type
//! and the few helpers below; a connector implements [`Guest`] and names its type with
//! [`export!`]. A whole connector entry point then reads:
//!
//! ```ignore
//! struct Mapper;
//!
//! impl airlock_guest::Guest for Mapper {
//!     fn invoke(action: String, input: String) -> Result<String, airlock_guest::Error> {
//!         match action.as_str() {
//!             "map-contact" => airlock_guest::handle(&input, map_contact),
//!             other => Err(airlock_guest::Error::unknown_action(other)),
//!         }
//!     }
//! }
//!
//! airlock_guest::export!(Mapper);
//! ```
//!
//! Connectors that call HTTP APIs use [`http`], a small blocking client over the world's
//! `wasi:http/outgoing-handler` import (the host judges every request against the manifest's
//! egress rules and injects credentials itself).

use std::fmt::Display;

use serde::{Serialize, de::DeserializeOwned};

pub mod http;

/// Generated bindings for the `integration` world (`wit/` at the repository root).
///
/// Public only because [`export!`] expands in the connector's crate and must reach them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "integration",
        pub_export_macro: true,
        default_bindings_module: "airlock_guest::bindings",
        // The world imports wasi:http, which pulls in wasi:io and wasi:clocks types.
        generate_all,
    });
}

pub use bindings::airlock::integration::kv;
pub use bindings::airlock::integration::log::Level;
pub use bindings::airlock::integration::types::Error;
pub use bindings::export;
pub use bindings::exports::airlock::integration::handler::Guest;

impl Error {
    /// Builds an error. `code` is a stable class (lowercase letters, digits, dashes) because the
    /// host reports and counts it; detail belongs in `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The input breaks a rule of the action that its schema cannot express.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new("invalid-input", message)
    }

    /// The host asked for an action this component does not implement.
    pub fn unknown_action(action: &str) -> Self {
        Self::new("unknown-action", format!("no action named {action:?}"))
    }
}

/// Parses an action's input JSON.
///
/// The host has already checked `input` against the action's input schema, so a failure here
/// means the Rust type and the schema disagree; it still comes back as `invalid-input` rather
/// than a trap, so the caller sees which field was refused.
pub fn parse_input<T: DeserializeOwned>(input: &str) -> Result<T, Error> {
    serde_json::from_str(input).map_err(|e| Error::invalid_input(e.to_string()))
}

/// Serializes an action's output as JSON (which the host then checks against the output schema).
pub fn to_output<T: Serialize>(output: &T) -> Result<String, Error> {
    serde_json::to_string(output).map_err(|e| Error::new("internal", e.to_string()))
}

/// Runs a typed action: parses `input`, calls `action`, serializes what it returns. This is the
/// whole body of a typical `match` arm in [`Guest::invoke`].
pub fn handle<I, O>(
    input: &str,
    action: impl FnOnce(I) -> Result<O, Error>,
) -> Result<String, Error>
where
    I: DeserializeOwned,
    O: Serialize,
{
    to_output(&action(parse_input(input)?)?)
}

/// Reads the installation's config as `T`.
///
/// The host validated it against the manifest's config schema, so a failure means schema and
/// type disagree: reported as `invalid-config`, which points at the connector, not the caller.
pub fn config<T: DeserializeOwned>() -> Result<T, Error> {
    let json = bindings::airlock::integration::config::get();
    serde_json::from_str(&json).map_err(|e| Error::new("invalid-config", e.to_string()))
}

/// Logs one line with structured fields, e.g. `log(Level::Info, "mapped", &[("tags", &3)])`.
///
/// Fields take any `Display` so counts, flags and ids go in without formatting noise. The text is
/// shown to whoever ran the action: log ids and counts, never customer data such as emails.
pub fn log(level: Level, message: &str, fields: &[(&str, &dyn Display)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.to_string()))
        .collect();
    bindings::airlock::integration::log::log(level, message, &fields);
}
