//! An action's output as the guest wrote it: JSON text that passed the output schema.
//!
//! The host validates the output where it lies (docs/benchmarks.md) and hands it on as text, so
//! a caller that forwards it (the server's response) neither builds a tree nor prints one again,
//! and the guest's numbers reach the client digit for digit.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// Strict JSON text that an action returned and its output schema accepted.
#[derive(Clone, PartialEq, Eq)]
pub struct Output(String);

impl Output {
    /// `text` the caller has parsed strictly and validated.
    pub(crate) fn validated(text: String) -> Self {
        Self(text)
    }

    /// A probe's answer, which no schema judges: the guest's text as a JSON string.
    pub(crate) fn quoted(text: &str) -> Self {
        Self(Value::from(text).to_string())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The output as a tree, for a caller that reads into it.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).expect("an output is strict JSON the host has parsed")
    }
}

/// Written into a serde_json document as it is, not as a string holding JSON.
impl Serialize for Output {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Output({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_is_written_as_the_guest_wrote_it() {
        let text = r#"{"x":1.50,"big":12345678901234567890123,"s":"\u00e9\n"}"#;
        let output = Output::validated(text.into());
        #[derive(Serialize)]
        struct Response<'a> {
            output: &'a Output,
        }
        let written =
            serde_json::to_string(&Response { output: &output }).expect("an output is written");
        assert_eq!(written, format!(r#"{{"output":{text}}}"#));
        // Into a tree, it is the same tree as the text's.
        let tree = serde_json::json!({ "output": output });
        assert_eq!(tree["output"], output.to_value());
        assert_eq!(tree["output"]["s"], "é\n");
    }

    #[test]
    fn a_probe_answer_is_a_json_string() {
        let answer = Output::quoted("unknown \"action\"\n");
        assert_eq!(answer.as_str(), r#""unknown \"action\"\n""#);
        assert_eq!(answer.to_value(), Value::from("unknown \"action\"\n"));
    }
}
